"""Cisco CCP chats through lcx: one polling link per chat on exactly one instance; after
kill -9 of its instance the survivor resumes polling from the stored cursor."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_env import Cluster, running_cluster
from fakes.cisco import FakeCcp, open_fake_ccp
from support.waiting import eventually, eventually_async

pytestmark = pytest.mark.slow


def cisco_tenant(ccp: FakeCcp, bot_url: str) -> str:
    return f"""
[[tenants]]
id = "c1"
organization_id = "o1"
provider = "cisco"
default_user_group = "support"
bot_events_url = "{bot_url}"

[tenants.cisco]
api_url = "{ccp.base_url}"
feed_ref_url = "{ccp.base_url}/ccp-webapp/ccp/feed/100000"
poll_interval_seconds = 0.1
"""


def delivered(cluster: Cluster, kind: str) -> list[str]:
    seen: set[str] = set()
    found = []
    for received in cluster.bot.received:
        event = received.event
        if received.status < 300 and event["type"] == kind and event["id"] not in seen:
            seen.add(event["id"])
            found.append(event["data"].get("text") or event["type"])
    return found


async def test_cisco_chat_through_lcx_and_taken_over(tmp_path: Path) -> None:
    """Bot → Cisco agent → bot; chat_issue then chat_ok does not end the chat; after
    kill -9 of the polling instance every agent message arrives once, in order; the
    agent finishing the chat ends the conversation."""
    async with open_fake_ccp() as ccp, running_cluster(
            tmp_path, names=("a", "b"), extra=lambda bot_url: cisco_tenant(ccp, bot_url)
    ) as cluster:
        created = await cluster.bot_post("a", "/requests", {"tenantId": "c1",
                                                           "subHandle": "u-cisco"})
        assert created.status_code == 201, created.text
        await eventually(lambda: len(ccp.chats) == 1, timeout=10)
        chat_id = next(iter(ccp.chats))
        ccp.agent_joins(chat_id)
        await eventually(lambda: delivered(cluster, "CONVERSATION_BEGIN"), timeout=10)
        sent = await cluster.bot_post("b", "/messages", {
            "tenantId": "c1", "subHandle": "u-cisco", "id": "c-1", "text": "hello Cisco"})
        assert sent.status_code == 202
        await eventually(lambda: ccp.customer_messages(chat_id) == ["hello Cisco"], timeout=10)
        ccp.agent_says(chat_id, "one")
        ccp.issue(chat_id)
        ccp.ok(chat_id)
        await eventually(lambda: delivered(cluster, "MESSAGE") == ["one"], timeout=10)
        conversation_id = next(r.event["conversationId"] for r in cluster.bot.received
                               if r.event["type"] == "MESSAGE")
        await cluster.kill(cluster.owner("provider_link", conversation_id))
        ccp.agent_says(chat_id, "two")

        async def both() -> bool:
            return delivered(cluster, "MESSAGE") == ["one", "two"]

        await eventually_async(both, timeout=15)
        ccp.finish(chat_id)
        await eventually(lambda: delivered(cluster, "CONVERSATION_END"), timeout=15)
        assert delivered(cluster, "MESSAGE") == ["one", "two"]
