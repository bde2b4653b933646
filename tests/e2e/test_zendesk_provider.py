"""A bot hands a user over to Zendesk agents (Sunshine Conversations): the customer's messages
go to Zendesk, the agents' come back by polling and by webhook, once each."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_env import JWT_SECRET, WEBHOOK_SECRET
from fakes.bot import FakeBot, open_fake_bot
from fakes.zendesk import FakeSunshine, open_fake_sunshine
from support.lcx_process import LcxProcess, basic_config
from support.waiting import eventually

from lcx.auth import mint_token


def zendesk_tenant(sunshine: FakeSunshine, bot_url: str, *, poll_seconds: float) -> str:
    """A tenant z1 whose humans answer in Zendesk."""
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
poll_interval_seconds = {poll_seconds}
"""


@dataclass
class ZendeskEnv:
    lcx: LcxProcess
    bot: FakeBot
    sunshine: FakeSunshine
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

    async def conversation(self) -> str:
        """The Zendesk conversation lcx opened for the request."""
        await eventually(lambda: len(self.sunshine.conversations) == 1, timeout=10)
        return next(iter(self.sunshine.conversations))


@pytest.fixture
async def zendesk_env(tmp_path: Path) -> AsyncIterator[ZendeskEnv]:
    async with open_fake_bot(WEBHOOK_SECRET) as bot, open_fake_sunshine() as sunshine:
        config = basic_config(tmp_path, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400
""" + zendesk_tenant(sunshine, bot.url, poll_seconds=0.2))
        lcx = LcxProcess(tmp_path, config)
        await trio.to_thread.run_sync(lcx.start)
        sunshine.webhook_url = f"{lcx.url}/events/zendesk"
        token = mint_token(JWT_SECRET, sub="bot-1", org="o1", scopes="bot")
        try:
            async with httpx.AsyncClient(base_url=lcx.url, timeout=10, headers={
                    "Authorization": f"Bearer {token}"}) as http:
                yield ZendeskEnv(lcx, bot, sunshine, http)
        finally:
            await trio.to_thread.run_sync(lcx.kill)


async def test_bot_to_zendesk_agent_and_back(zendesk_env: ZendeskEnv) -> None:
    """The request opens a Zendesk conversation handed to the agents; the customer's
    message reaches Zendesk; the agent's answer comes back by polling (BEGIN, MESSAGE)."""
    env = zendesk_env
    created = await env.http.post("/requests", json={"tenantId": "z1", "subHandle": "u-z",
                                                      "subscriber": {"name": "Ada"}})
    assert created.status_code == 201, created.text
    conversation = await env.conversation()
    await eventually(lambda: env.sunshine.control_passes(conversation), timeout=10)
    sent = await env.http.post("/messages", json={
        "tenantId": "z1", "subHandle": "u-z", "id": "zm-1", "text": "hello Zendesk"})
    assert sent.status_code == 202
    await eventually(lambda: env.sunshine.user_messages(conversation) == ["hello Zendesk"],
                     timeout=10)
    env.sunshine.agent_says(conversation, "Hi Ada, Zoe here")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    assert env.events("CONVERSATION_BEGIN")[0]["data"]["agent"]["name"] == "Zoe"
    assert env.events("MESSAGE")[0]["data"]["text"] == "Hi Ada, Zoe here"


async def test_message_seen_by_webhook_and_poll_counts_once(zendesk_env: ZendeskEnv) -> None:
    """An agent message delivered by webhook (twice) and found by the poll reaches the
    bot once."""
    env = zendesk_env
    created = await env.http.post("/requests", json={"tenantId": "z1", "subHandle": "u-d"})
    assert created.status_code == 201
    conversation = await env.conversation()
    env.sunshine.agent_says(conversation, "first")
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    second = env.sunshine.agent_says(conversation, "second")
    assert await env.sunshine.emit_message_webhook(conversation, second) == 200
    assert await env.sunshine.emit_message_webhook(conversation, second) == 200
    await eventually(lambda: len(env.events("MESSAGE")) >= 2, timeout=10)
    await trio.sleep(1.0)  # several more polls find it again: still once
    assert [e["data"]["text"] for e in env.events("MESSAGE")] == ["first", "second"]


async def test_zendesk_down_costs_one_poll_per_interval(zendesk_env: ZendeskEnv) -> None:
    """While Zendesk answers 503 the poller tries once per interval, then catches up.
    (The outage is kept shorter than the circuit breaker's threshold of 5 failures: past
    it, polls stop for the 30 s cooldown, tested in tests/unit/test_edge_policy.py.)"""
    env = zendesk_env
    await env.http.post("/requests", json={"tenantId": "z1", "subHandle": "u-down"})
    conversation = await env.conversation()
    await eventually(lambda: env.sunshine.gets >= 1, timeout=10)
    env.sunshine.fail_next("/messages", 503, times=1000)
    env.sunshine.agent_says(conversation, "during the outage")
    before = env.sunshine.gets
    await trio.sleep(0.3)
    assert env.sunshine.gets - before <= 3  # 0.2 s interval: at most 2 in 0.3 s (+1 slack)
    env.sunshine.clear_failures()
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    assert env.events("MESSAGE")[0]["data"]["text"] == "during the outage"
    metrics = (await env.http.get("/metrics")).text
    assert 'lcx_edge_circuit_open{account="zendesk:app-1"}' in metrics
    failed = re.search(r'lcx_tenant_polls_total\{outcome="failed"\} (\d+)', metrics)
    assert failed is not None
    assert int(failed.group(1)) >= 1
