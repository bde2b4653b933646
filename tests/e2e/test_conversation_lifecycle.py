"""Missed requests, transfers, RESUME after a dropped socket, and shutdown with 1012."""

from __future__ import annotations

import signal

import trio
from e2e_env import Env
from support.agent_client import agent_connection
from support.waiting import eventually


async def test_request_not_accepted_in_time_is_missed(env: Env) -> None:
    """Past requestTimeoutSeconds the request is missed: the bot gets REQUEST_MISSED and
    agents are told; the subscriber can open a new request."""
    await env.put_settings(requestTimeoutSeconds=1)
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-miss")
        missed = await alice.notification("request_missed", timeout=5,
                                          requestId=created["id"])
        assert missed["data"]["kind"] == "request_missed"
    received = await env.bot.wait_for(1)
    event = received[0].event
    assert event["type"] == "REQUEST_MISSED"
    assert event["requestId"] == created["id"]
    assert event["data"]["waitedSeconds"] >= 1
    state = await env.http.get("/subscribers/u-miss/livechat-state", params={"tenantId": "t1"})
    assert state.json()["state"] == "ended"
    await env.create_request("u-miss")


async def test_transfer_to_a_group_requeues_and_another_agent_takes_it(env: Env) -> None:
    """TRANSFER to a user group re-queues the conversation; an agent of that group accepts
    it and the log continues; the bot hears TRANSFER_REQUEST and a new BEGIN."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice, \
            agent_connection(env.url, env.agent_token("bob", groups=("g2",))) as bob:
        created = await env.create_request("u-tr")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        await alice.call(None, {"conversationId": conversation_id, "text": "moving you"},
                         kind="message")
        moved = await alice.call("TRANSFER", {"conversationId": conversation_id,
                                              "toUserGroupId": "g2"})
        assert moved["type"] == "ack", moved
        await bob.notification("request_created", requestId=created["id"])
        taken = await bob.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        assert taken["type"] == "ack", taken
        assert taken["data"]["conversationId"] == conversation_id
        assert [m["text"] for m in taken["data"]["messages"]] == ["moving you"]
        reply = await bob.call(None, {"conversationId": conversation_id, "text": "bob here"},
                               kind="message")
        assert reply["data"]["seq"] == 2
        denied = await alice.call(None, {"conversationId": conversation_id, "text": "me?"},
                                  kind="message")
        assert denied["data"]["code"] == "forbidden"
    await env.bot.wait_for(5)
    types = [e["type"] for e in env.bot.events_for(conversation_id)]
    assert types == ["CONVERSATION_BEGIN", "MESSAGE", "TRANSFER_REQUEST",
                     "CONVERSATION_BEGIN", "MESSAGE"]


async def test_resume_replays_what_a_dropped_socket_missed(env: Env) -> None:
    """After a reconnect, RESUME with the last seen seq re-sends every later message, in
    order; one agent's other tab kept getting them live."""
    token = env.agent_token("alice")
    async with agent_connection(env.url, token) as tab:
        async with agent_connection(env.url, token) as first:
            created = await env.create_request("u-res")
            accepted = await first.call("REQUEST_ACCEPT", {"requestId": created["id"]})
            conversation_id = accepted["data"]["conversationId"]
            await env.post_message("u-res", "r-1", "one")
            await first.wait_for(lambda f: f["type"] == "message")
        for index, text in enumerate(["two", "three", "four"], start=2):
            response = await env.post_message("u-res", f"r-{index}", text)
            assert response.status_code == 202
        await tab.wait_for(lambda f: f["type"] == "message" and f["data"]["seq"] == 4)
        assert [m["seq"] for m in tab.messages(conversation_id)] == [1, 2, 3, 4]
        async with agent_connection(env.url, token) as again:
            resumed = await again.call("RESUME", {"conversations": {conversation_id: 1}})
            assert resumed["data"] == {"conversations": {conversation_id: 3}}
            assert [m["text"] for m in again.messages(conversation_id)] == [
                "two", "three", "four"]


async def test_sigterm_closes_agent_sockets_with_1012(env: Env) -> None:
    """On SIGTERM the server closes agent sockets with 1012 and exits 0."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        env.lcx.send_signal(signal.SIGTERM)
        await eventually(lambda: alice.closed_code is not None, timeout=10)
        assert alice.closed_code == 1012
    assert await trio.to_thread.run_sync(env.lcx.wait, 10) == 0


async def test_transfer_to_an_agent_hands_the_conversation_over(env: Env) -> None:
    """TRANSFER toAgentId hands the conversation to a connected colleague, who gets its
    history; the first agent is out and the bot hears TRANSFER_REQUEST."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice, \
            agent_connection(env.url, env.agent_token("bob")) as bob:
        created = await env.create_request("u-hand")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        await env.post_message("u-hand", "h-1", "can bob help?")
        refused = await alice.call("TRANSFER", {"conversationId": conversation_id,
                                                "toAgentId": "nobody"})
        assert refused["data"]["code"] == "conflict"
        handed = await alice.call("TRANSFER", {"conversationId": conversation_id,
                                               "toAgentId": "bob"})
        assert handed["type"] == "ack", handed
        note = await bob.notification("conversation_transferred",
                                      conversationId=conversation_id)
        assert [m["text"] for m in note["data"]["messages"]] == ["can bob help?"]
        reply = await bob.call(None, {"conversationId": conversation_id, "text": "bob here"},
                               kind="message")
        assert reply["type"] == "ack", reply
        gone = await alice.call(None, {"conversationId": conversation_id, "text": "me?"},
                                kind="message")
        assert gone["data"]["code"] == "forbidden"
    await env.bot.wait_for(3)
    transfer = env.bot.events_for(conversation_id)[1]
    assert transfer["type"] == "TRANSFER_REQUEST"
    assert transfer["data"]["toAgentId"] == "bob"
