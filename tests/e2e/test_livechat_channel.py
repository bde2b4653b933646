"""A customer starts a chat in LiveChat: lcx's agents take it and answer back in LiveChat,
with verified, durable, deduplicated webhooks (fake LiveChat over loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from e2e_env import JWT_SECRET
from fakes.livechat import ApiFailure, FakeLiveChat, open_fake_livechat
from support.agent_client import agent_connection
from support.lcx_process import LcxProcess, basic_config
from support.waiting import eventually

from lcx.auth import mint_token


def livechat_config(workdir: Path, fake: FakeLiveChat) -> str:
    """An instance whose tenant lc1 takes its customers from the fake LiveChat."""
    return basic_config(workdir, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400

[[tenants]]
id = "lc1"
organization_id = "o1"
channel = "livechat"
default_user_group = "g1"

[tenants.livechat]
api_url = "{fake.api_url}"
account_id = "{fake.account_id}"
pat = "{fake.pat}"
organization_id = "{fake.organization_id}"
webhook_secret_key = "{fake.secret_key}"
requests_per_second = 10
""")


@dataclass
class LiveChatEnv:
    lcx: LcxProcess
    livechat: FakeLiveChat

    def agent_token(self, sub: str = "alice") -> str:
        return mint_token(JWT_SECRET, sub=sub, org="o1", scopes="agent", groups=["g1"],
                          name=sub.capitalize())


@pytest.fixture
async def livechat_env(tmp_path: Path) -> AsyncIterator[LiveChatEnv]:
    async with open_fake_livechat() as livechat:
        lcx = LcxProcess(tmp_path, livechat_config(tmp_path, livechat))
        await trio.to_thread.run_sync(lcx.start)
        livechat.webhook_url = f"{lcx.url}/events/livechat"
        try:
            yield LiveChatEnv(lcx, livechat)
        finally:
            await trio.to_thread.run_sync(lcx.kill)


async def test_livechat_customer_to_lcx_agent_and_back(livechat_env: LiveChatEnv) -> None:
    """incoming_chat queues a request; the agent accepts and sees the customer's messages;
    the agent's message, typing and the end go back through the Agent Chat API."""
    env = livechat_env
    async with agent_connection(env.lcx.url, env.agent_token()) as alice:
        chat = await env.livechat.start_chat(customer_name="Jane", text="I need help")
        offer = await alice.notification("request_created", timeout=10)
        assert offer["data"]["subscriber"]["name"] == "Jane"
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
        assert accepted["type"] == "ack", accepted
        conversation_id = accepted["data"]["conversationId"]
        queued = [m["text"] for m in accepted["data"]["messages"]]
        await env.livechat.customer_says(chat.id, "are you there?")
        frame = await alice.wait_for(lambda f: f["type"] == "message"
                                     and f["data"]["text"] == "are you there?", timeout=10)
        assert frame["data"]["author"]["type"] == "subscriber"
        # the chat's first message is applied right after the request: it is either among
        # the queued messages of the accept or arrives as a frame, once either way
        seen = queued + [m["text"] for m in alice.messages(conversation_id)]
        assert seen == ["I need help", "are you there?"]
        reply = await alice.call(None, {"conversationId": conversation_id,
                                        "text": "Hi Jane, Alice here"}, kind="message")
        assert reply["type"] == "ack", reply
        await alice.call("CONVERSATION_TYPING", {"conversationId": conversation_id,
                                                 "typing": True})
        await eventually(lambda: any(e.get("text") == "Hi Jane, Alice here"
                                     for e in env.livechat.events_sent(chat.id)), timeout=10)
        await eventually(lambda: env.livechat.typing(chat.id) == [True], timeout=10)
        await alice.call("CONVERSATION_END", {"conversationId": conversation_id})
        await eventually(lambda: env.livechat.deactivated(chat.id), timeout=10)


async def test_customer_closing_the_chat_ends_the_conversation(
        livechat_env: LiveChatEnv) -> None:
    """chat_deactivated from LiveChat ends the conversation; the agent hears it."""
    env = livechat_env
    async with agent_connection(env.lcx.url, env.agent_token()) as alice:
        chat = await env.livechat.start_chat()
        offer = await alice.notification("request_created", timeout=10)
        await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
        await env.livechat.deactivate(chat.id, by="customer")
        end = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_END", timeout=10)
        assert end["data"]["endedBy"] == "subscriber"


async def test_webhooks_are_verified_stored_and_applied_once(
        livechat_env: LiveChatEnv) -> None:
    """A wrong secret is 401 and changes nothing; a duplicated delivery is stored and
    applied once; HEAD answers 200 for a known alias and 404 otherwise."""
    env = livechat_env
    async with httpx.AsyncClient(base_url=env.lcx.url) as http:
        assert (await http.head("/events/livechat")).status_code == 200
        assert (await http.head("/events/nope")).status_code == 404
    async with agent_connection(env.lcx.url, env.agent_token()) as alice:
        env.livechat.wrong_secret = True
        refused = await env.livechat.start_chat(customer_name="Mallory")
        assert env.livechat.deliveries[-1].statuses == [401]
        await trio.sleep(0.5)
        assert not [f for f in alice.frames if f.get("event") == "NOTIFICATION"]
        env.livechat.wrong_secret = False
        env.livechat.duplicate = True
        chat = await env.livechat.start_chat(customer_name="Jane")
        offer = await alice.notification("request_created", timeout=10)
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
        conversation_id = accepted["data"]["conversationId"]
        await env.livechat.customer_says(chat.id, "only once")
        await alice.wait_for(lambda f: f["type"] == "message", timeout=10)
        await trio.sleep(0.5)
        assert [m["text"] for m in alice.messages(conversation_id)] == ["only once"]
        assert refused.id not in {f["data"].get("subHandle") for f in alice.frames
                                  if f.get("event") == "NOTIFICATION"}


async def test_livechat_outage_delivers_every_answer_once_in_order(
        livechat_env: LiveChatEnv) -> None:
    """While LiveChat refuses (too_many_requests, then internal), the agent's answers wait
    in the outbox; they then arrive once each, in order; /metrics shows the edges."""
    env = livechat_env
    async with agent_connection(env.lcx.url, env.agent_token()) as alice:
        chat = await env.livechat.start_chat(customer_name="Jane")
        offer = await alice.notification("request_created", timeout=10)
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
        conversation_id = accepted["data"]["conversationId"]
        env.livechat.fail(ApiFailure("too_many_requests", retry_after=1),
                          ApiFailure("internal"), action="send_event")
        for index in range(3):
            ack = await alice.call(None, {"conversationId": conversation_id,
                                          "text": f"answer {index}"}, kind="message")
            assert ack["type"] == "ack", ack
        await eventually(lambda: len(env.livechat.events_sent(chat.id)) >= 3, timeout=15)
        assert [e["text"] for e in env.livechat.events_sent(chat.id)] == [
            "answer 0", "answer 1", "answer 2"]
    async with httpx.AsyncClient(base_url=env.lcx.url) as http:
        metrics = (await http.get("/metrics")).text
    assert "lcx_edge_webhook_events_applied_total" in metrics
    assert 'lcx_edge_circuit_open{account="livechat:acc-1"} 0.0' in metrics
