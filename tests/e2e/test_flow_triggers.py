"""Flow triggers: missed requests and finished conversations reach the event publisher."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from e2e_env import FLOW_TOKEN, ORG, Env
from support.agent_client import agent_connection
from support.waiting import eventually


@pytest.fixture
def env_options() -> dict[str, Any]:
    return {"publisher": True}


def flows(env: Env) -> list[tuple[str, dict[str, list[str]], dict[str, Any], str]]:
    """(trigger path, query, body, authorization) of every flow trigger received."""
    found = []
    for received in env.bot.received:
        parts = urlsplit(received.path)
        if parts.path.endswith("/connectors/flows:trigger"):
            found.append((parts.path, parse_qs(parts.query), received.event,
                          received.headers.get("authorization", "")))
    return found


async def test_missed_and_finished_fire_their_flows(env: Env) -> None:
    """REQUEST_MISSED and CONVERSATION_END are also posted to the publisher, with its
    bearer token and the trigger type, tenant and organization in the query."""
    await env.put_settings(requestTimeoutSeconds=1)
    missed = await env.create_request("u-flow-1")
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-flow-2")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        await alice.call("CONVERSATION_END",
                         {"conversationId": accepted["data"]["conversationId"]})
    await eventually(lambda: len(flows(env)) >= 2, timeout=10)
    triggers = {query["triggerType"][0]: (query, body, auth)
                for _, query, body, auth in flows(env)}
    query, body, auth = triggers["livechat-request-missed"]
    assert body["requestId"] == missed["id"]
    assert query["organizationId"] == [ORG]
    assert query["tenantId"] == ["t1"]
    assert auth == f"Bearer {FLOW_TOKEN}"
    query, body, auth = triggers["livechat-conversation-finished"]
    assert body["type"] == "CONVERSATION_END"
    assert body["requestId"] == created["id"]
