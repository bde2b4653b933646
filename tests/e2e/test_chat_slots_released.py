"""A chat slot reserved for a step that then fails is given back at once, so the agent
can take the next chat (not after the 10 s self-repair)."""

from __future__ import annotations

from e2e_env import Env
from support.agent_client import agent_connection


async def test_a_refused_agent_initiated_request_gives_its_slot_back(env: Env) -> None:
    """REQUEST_CREATE for a subscriber who already has an open request is refused; the
    agent, at its one-chat limit, can still accept a waiting request right after."""
    await env.put_settings(maxConcurrentChats=1)
    await env.create_request("busy")
    waiting = await env.create_request("waiting")
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        refused = await alice.call("REQUEST_CREATE", {"tenantId": "t1", "subHandle": "busy"})
        assert refused["event"] == "ERROR", refused
        assert refused["data"]["code"] == "conflict", refused
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": waiting["id"]})
        assert accepted["type"] == "ack", accepted

