"""A bot hands a user over, an agent takes the chat, messages flow both ways, the bot hears
about everything in order, once per event id."""

from __future__ import annotations

from e2e_env import Env
from support.agent_client import agent_connection
from support.waiting import eventually_async


async def test_bot_to_agent_and_back(env: Env) -> None:
    """The whole happy path through the real server, a real websocket and a real bot."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-1", subscriber={"name": "Ada"},
                                           context={"transcript": [
                                               {"author": "user", "text": "I need a human"}]})
        assert created["status"] == "pending"
        assert created["position"] == 1
        assert created["conversationId"] is None
        offer = await alice.notification("request_created", requestId=created["id"])
        assert offer["data"]["subscriber"]["name"] == "Ada"

        queued = await env.post_message("u-1", "bm-1", "hello?")
        assert queued.status_code == 202
        assert queued.json()["seq"] == 1

        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        assert accepted["type"] == "ack", accepted
        conversation_id = accepted["data"]["conversationId"]
        assert [m["text"] for m in accepted["data"]["messages"]] == ["hello?"]

        mark = len(alice.frames)
        second = await env.post_message("u-1", "bm-2", "are you there?")
        assert second.json()["seq"] == 2
        frame = await alice.wait_for(lambda f: f["type"] == "message", start=mark)
        assert frame["data"]["text"] == "are you there?"
        assert frame["data"]["author"]["type"] == "subscriber"

        reply = await alice.call(None, {"conversationId": conversation_id, "text": "Hi Ada",
                                        "id": "a-1"}, kind="message")
        assert reply["type"] == "ack", reply
        assert reply["data"]["seq"] == 3
        typing = await alice.call("CONVERSATION_TYPING",
                                  {"conversationId": conversation_id, "typing": True})
        assert typing["type"] == "ack"
        ended = await alice.call("CONVERSATION_END", {"conversationId": conversation_id,
                                                      "reason": "resolved"})
        assert ended["type"] == "ack"

    received = await env.bot.wait_for(4)
    events = env.bot.events_for(conversation_id)
    assert [e["type"] for e in events] == ["CONVERSATION_BEGIN", "MESSAGE",
                                           "CONVERSATION_TYPING", "CONVERSATION_END"]
    assert events[0]["data"]["agent"] == {"id": "alice", "name": "Alice"}
    assert events[1]["data"]["text"] == "Hi Ada"
    assert events[1]["data"]["author"]["type"] == "agent"
    assert events[1]["seq"] == 3
    assert events[3]["data"]["endedBy"] == "agent"
    assert all(r.signature_valid for r in received)
    assert len({r.event_id for r in received}) == len(received)
    assert all(e["requestId"] == created["id"] and e["subHandle"] == "u-1" for e in events)

    state = await env.http.get("/subscribers/u-1/livechat-state", params={"tenantId": "t1"})
    assert state.json()["state"] == "ended"
    transcript = await env.transcript(conversation_id)
    assert [(m["seq"], m["text"]) for m in transcript] == [
        (1, "hello?"), (2, "are you there?"), (3, "Hi Ada")]
    async def delivered_counted() -> str | None:
        # the bot has the 4th event a moment before lcx has recorded its delivery
        text = (await env.http.get("/metrics")).text
        return text if 'lcx_deliveries_total{outcome="delivered"} 4.0' in text else None

    metrics = await eventually_async(delivered_counted, timeout=5)
    assert "lcx_requests_created_total 1.0" in metrics
    assert "lcx_messages_stored_total 3.0" in metrics


async def test_idempotent_resend_is_stored_once(env: Env) -> None:
    """The same bot message id sent twice answers the first result and is stored once."""
    await env.create_request("u-2")
    first = await env.post_message("u-2", "dup-1", "once")
    again = await env.post_message("u-2", "dup-1", "once")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    transcript = await env.transcript(first.json()["conversationId"])
    assert [m["text"] for m in transcript] == ["once"]


async def test_subscriber_ends_the_session_and_agents_hear_it(env: Env) -> None:
    """DELETE of the session ends the conversation; the agent gets CONVERSATION_END."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-3")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        response = await env.http.delete("/sessions/tenants/t1/subscribers/u-3")
        assert response.status_code == 204
        end = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_END")
        assert end["data"]["conversationId"] == conversation_id
        assert end["data"]["endedBy"] == "subscriber"
    again = await env.http.delete("/sessions/tenants/t1/subscribers/u-3")
    assert again.status_code == 404
