"""Providers that end, type and recover like the real ones, through a real ``lcx serve``:
a Zendesk agent closing the ticket ends the conversation (webhook or poll), the agent's
typing reaches the bot, a Cisco agent leaving ends the chat, an ended chat is polled no
more, every configured edge answers HEAD, and a 4 s outage costs about a second after
the provider is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_env import JWT_SECRET, WEBHOOK_SECRET
from fakes.bot import FakeBot, open_fake_bot
from fakes.cisco import FakeCcp, open_fake_ccp
from fakes.zendesk import FakeSunshine, open_fake_sunshine
from support.lcx_process import LcxProcess, basic_config
from support.waiting import eventually

from lcx.auth import mint_token

POLL = 0.3
"""The poll interval of both providers (seconds)."""


def tenants(sunshine: FakeSunshine, ccp: FakeCcp, bot_url: str) -> str:
    """Tenant z1 answered in Zendesk, tenant c1 in Cisco CCP."""
    config = sunshine.config()
    return f"""
[[tenants]]
id = "z1"
organization_id = "o1"
provider = "zendesk"
default_user_group = "support"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"

[tenants.zendesk]
api_url = "{config.api_url}"
app_id = "{config.app_id}"
key_id = "{config.key_id}"
key_secret = "{config.key_secret}"
webhook_api_key = "{config.webhook_api_key}"
poll_interval_seconds = {POLL}

[[tenants]]
id = "c1"
organization_id = "o1"
provider = "cisco"
default_user_group = "support"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"

[tenants.cisco]
api_url = "{ccp.base_url}"
feed_ref_url = "{ccp.base_url}/ccp-webapp/ccp/feed/100000"
poll_interval_seconds = {POLL}
"""


@dataclass
class Env:
    lcx: LcxProcess
    bot: FakeBot
    sunshine: FakeSunshine
    ccp: FakeCcp
    http: httpx.AsyncClient

    def events(self, kind: str) -> list[dict[str, Any]]:
        seen: set[str] = set()
        found = []
        for received in self.bot.received:
            event = received.event
            if received.status < 300 and event["type"] == kind and event["id"] not in seen:
                seen.add(event["id"])
                found.append(event)
        return found

    async def request(self, tenant: str, sub_handle: str) -> None:
        created = await self.http.post("/requests", json={"tenantId": tenant,
                                                          "subHandle": sub_handle})
        assert created.status_code == 201, created.text

    async def zendesk_conversation(self) -> str:
        await eventually(lambda: len(self.sunshine.conversations) == 1, timeout=10)
        return next(iter(self.sunshine.conversations))

    async def cisco_chat(self) -> str:
        await eventually(lambda: len(self.ccp.chats) == 1, timeout=10)
        return next(iter(self.ccp.chats))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_fake_bot(WEBHOOK_SECRET) as bot, open_fake_sunshine() as sunshine, \
            open_fake_ccp() as ccp:
        config = basic_config(tmp_path, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400
""" + tenants(sunshine, ccp, bot.url))
        lcx = LcxProcess(tmp_path, config)
        await trio.to_thread.run_sync(lcx.start)
        sunshine.webhook_url = f"{lcx.url}/events/zendesk"
        token = mint_token(JWT_SECRET, sub="bot-1", org="o1", scopes="bot")
        try:
            async with httpx.AsyncClient(base_url=lcx.url, timeout=10, headers={
                    "Authorization": f"Bearer {token}"}) as http:
                yield Env(lcx, bot, sunshine, ccp, http)
        finally:
            await trio.to_thread.run_sync(lcx.kill)


@pytest.mark.parametrize("release", [False, True])
async def test_zendesk_agent_closing_the_ticket_ends_by_webhook(env: Env,
                                                                release: bool) -> None:
    """passControl back to lcx (or releaseControl): CONVERSATION_END by the provider,
    long before any inactivity timeout."""
    await env.request("z1", "u-close")
    conversation = await env.zendesk_conversation()
    env.sunshine.agent_says(conversation, "Hi, Zoe here")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    assert await env.sunshine.agent_closes_ticket(conversation, release=release) == 200
    await eventually(lambda: env.events("CONVERSATION_END"), timeout=10)
    assert env.events("CONVERSATION_END")[0]["data"]["endedBy"] == "provider"


async def test_zendesk_agent_closing_the_ticket_ends_by_poll(env: Env) -> None:
    """With webhooks off, the poll sees the workspace let go and ends the conversation."""
    await env.request("z1", "u-poll")
    conversation = await env.zendesk_conversation()
    env.sunshine.agent_says(conversation, "Hi")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    await env.sunshine.agent_closes_ticket(conversation, webhook=False)
    await eventually(lambda: env.events("CONVERSATION_END"), timeout=10)
    assert env.events("CONVERSATION_END")[0]["data"]["endedBy"] == "provider"


async def test_zendesk_agent_typing_reaches_the_bot(env: Env) -> None:
    """typing:start / typing:stop by the agent → CONVERSATION_TYPING true / false."""
    await env.request("z1", "u-type")
    conversation = await env.zendesk_conversation()
    env.sunshine.agent_says(conversation, "Hi")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    assert await env.sunshine.agent_typing(conversation, True) == 200
    assert await env.sunshine.agent_typing(conversation, False) == 200
    await eventually(lambda: len(env.events("CONVERSATION_TYPING")) == 2, timeout=10)
    assert [e["data"]["typing"] for e in env.events("CONVERSATION_TYPING")] == [True, False]


async def test_cisco_agent_leaving_ends_the_chat_and_its_polling(env: Env) -> None:
    """PresenceEvent left of the only agent: CONVERSATION_END by the provider
    (endOnLastLeave), and the chat is not polled any more."""
    await env.request("c1", "u-left")
    chat = await env.cisco_chat()
    env.ccp.agent_joins(chat)
    await eventually(lambda: env.events("CONVERSATION_BEGIN"), timeout=10)
    env.ccp.agent_leaves(chat)
    await eventually(lambda: env.events("CONVERSATION_END"), timeout=10)
    assert env.events("CONVERSATION_END")[0]["data"]["endedBy"] == "provider"
    await trio.sleep(POLL)
    polls = env.ccp.polls(chat)
    await trio.sleep(3 * POLL)
    assert env.ccp.polls(chat) == polls


async def test_a_chat_the_bot_ended_is_polled_no_more(env: Env) -> None:
    """The bot ends the session: lcx leaves the chat and stops polling it at once."""
    await env.request("c1", "u-end")
    chat = await env.cisco_chat()
    env.ccp.agent_joins(chat)
    await eventually(lambda: env.events("CONVERSATION_BEGIN"), timeout=10)
    ended = await env.http.delete("/sessions/tenants/c1/subscribers/u-end")
    assert ended.status_code < 300, ended.text
    await eventually(lambda: env.ccp.left(chat), timeout=10)
    polls = env.ccp.polls(chat)
    await trio.sleep(3 * POLL)
    assert env.ccp.polls(chat) - polls <= 1  # at most one already on its way


async def test_every_configured_edge_answers_head(env: Env) -> None:
    """HEAD /events/<alias>: 200 for Zendesk and for Cisco (which never pushes), 404
    for an edge no tenant uses and for an unknown alias."""
    async with httpx.AsyncClient(base_url=env.lcx.url) as http:
        assert (await http.head("/events/zendesk")).status_code == 200
        assert (await http.head("/events/cisco")).status_code == 200
        assert (await http.head("/events/genesys")).status_code == 404
        assert (await http.head("/events/nope")).status_code == 404


async def test_a_four_second_outage_costs_about_a_second(env: Env) -> None:
    """Sunshine answers 500 to everything for 4 s while the agent writes: the message
    reaches the bot within about two poll intervals plus the first cooldown (1 s) of
    the breaker after Sunshine is back, not 30 s later."""
    await env.request("z1", "u-outage")
    conversation = await env.zendesk_conversation()
    env.sunshine.agent_says(conversation, "before")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    env.sunshine.fail_next("", 500, times=100_000)
    env.sunshine.agent_says(conversation, "during the outage")
    await trio.sleep(4.0)
    env.sunshine.clear_failures()
    back = trio.current_time()
    await eventually(lambda: len(env.events("MESSAGE")) == 2, timeout=30)
    late = trio.current_time() - back
    assert late < 1.0 + 3 * POLL, late
    assert env.events("MESSAGE")[1]["data"]["text"] == "during the outage"
