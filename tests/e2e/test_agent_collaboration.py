"""Agent-initiated conversations, supervisors joining, read markers, flags, leaving, and
the inactivity timeout."""

from __future__ import annotations

from e2e_env import ORG, Env
from support.agent_client import agent_connection


async def test_agent_starts_a_conversation_with_request_create(env: Env) -> None:
    """REQUEST_CREATE opens an active conversation owned by the agent, answered by
    REQUEST_CREATE_ACK; the bot hears CONVERSATION_BEGIN."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        ack = await alice.call("REQUEST_CREATE", {"tenantId": "t1", "subHandle": "u-out"})
        assert ack["type"] == "ack", ack
        created = await alice.wait_for(lambda f: f.get("event") == "REQUEST_CREATE_ACK")
        conversation_id = created["data"]["conversationId"]
        sent = await alice.call(None, {"conversationId": conversation_id, "text": "hello!"},
                                kind="message")
        assert sent["data"]["seq"] == 1
    state = await env.http.get("/subscribers/u-out/livechat-state", params={"tenantId": "t1"})
    assert state.json()["state"] == "active"
    await env.bot.wait_for(2)
    assert [e["type"] for e in env.bot.events_for(conversation_id)] == [
        "CONVERSATION_BEGIN", "MESSAGE"]


async def test_supervisor_joins_reads_flags_and_agents_leave(env: Env) -> None:
    """A supervisor joins and gets messages; read markers and flags reach the others and
    are stored; when the last agent leaves the conversation ends (endOnLastLeave)."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice, \
            agent_connection(env.url, env.agent_token("sue", scope="supervisor")) as sue:
        created = await env.create_request("u-team")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        joined = await sue.call("CONVERSATION_JOIN", {"conversationId": conversation_id})
        assert joined["type"] == "ack", joined
        await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_JOIN")
        await env.post_message("u-team", "t-1", "both of you?")
        await sue.wait_for(lambda f: f["type"] == "message")
        await alice.call("CONVERSATION_READ", {"conversationId": conversation_id, "seq": 1})
        read = await sue.wait_for(lambda f: f.get("event") == "CONVERSATION_READ")
        assert read["data"]["seq"] == 1
        await sue.call("PARTICIPANT_FLAG", {"conversationId": conversation_id,
                                            "flag": "vip", "value": True})
        flag = await alice.wait_for(lambda f: f.get("event") == "PARTICIPANT_FLAG")
        assert flag["data"]["flag"] == "vip"
        detail = await env.http.get(f"/organizations/{ORG}/livechat-conversations/"
                                    f"{conversation_id}",
                                    headers=env.bearer(env.agent_token("sue",
                                                                       scope="supervisor")))
        body = detail.json()
        assert body["flags"]["vip"] is True
        assert body["flags"]["readMarkers"] == {"alice": 1}
        assert {p["id"] for p in body["participants"]} == {"alice", "sue"}
        assert (await alice.call("CONVERSATION_LEAVE",
                                 {"conversationId": conversation_id}))["type"] == "ack"
        assert (await sue.call("CONVERSATION_LEAVE",
                               {"conversationId": conversation_id}))["type"] == "ack"
    await env.bot.wait_for(2)
    end = env.bot.events_for(conversation_id)[-1]
    assert end["type"] == "CONVERSATION_END"
    assert end["data"]["reason"] == "last agent left"


async def test_idle_conversation_ends_after_the_inactivity_timeout(env: Env) -> None:
    """An active conversation without messages for inactivityTimeoutSeconds ends; the bot
    gets CONVERSATION_END by system with reason inactivity."""
    await env.put_settings(inactivityTimeoutSeconds=1)
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-idle")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        ended = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_END",
                                     timeout=5)
        assert ended["data"]["endedBy"] == "system"
    await env.bot.wait_for(2)
    end = env.bot.events_for(conversation_id)[-1]
    assert end["data"] == {"endedBy": "system", "reason": "inactivity"}
