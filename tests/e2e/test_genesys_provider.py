"""A bot hands a user over to a Genesys Cloud contact center: the same bot API and events
as with lcx's own agents, while the humans sit in Genesys (fake Genesys over loopback)."""

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
from fakes.genesys import FakeGenesys, open_fake_genesys
from support.lcx_process import LcxProcess, basic_config
from support.waiting import eventually

from lcx.auth import mint_token


def genesys_config(workdir: Path, bot_url: str, genesys: FakeGenesys) -> str:
    """An instance whose tenant g1 hands its users to the fake Genesys."""
    config = genesys.config()
    return basic_config(workdir, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400

[[tenants]]
id = "g1"
organization_id = "o1"
provider = "genesys"
default_user_group = "support"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"

[tenants.genesys]
api_url = "{config.api_url}"
login_url = "{config.login_url}"
client_id = "{config.client_id}"
client_secret = "{config.client_secret}"
organization_id = "{config.organization_id}"
deployment_id = "{config.deployment_id}"
queue_name = "{config.queue_name}"
""")


@dataclass
class GenesysEnv:
    lcx: LcxProcess
    bot: FakeBot
    genesys: FakeGenesys
    http: httpx.AsyncClient

    async def create(self, sub: str) -> dict[str, Any]:
        response = await self.http.post("/requests", json={
            "tenantId": "g1", "subHandle": sub, "subscriber": {"name": "Ada"}})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def chat_id(self, count: int = 1) -> str:
        """The id of the newest Genesys chat, once lcx's socket is connected to it."""
        await self.genesys.wait_until(lambda: len(self.genesys.chats) >= count)
        chat_id = list(self.genesys.chats)[count - 1]
        await self.genesys.wait_connected(chat_id)
        return chat_id

    def events(self, *types: str) -> list[dict[str, Any]]:
        seen: set[str] = set()
        found = []
        for received in self.bot.received:
            event = received.event
            if received.status < 300 and event["id"] not in seen and \
                    (not types or event["type"] in types):
                seen.add(event["id"])
                found.append(event)
        return found


@pytest.fixture
async def genesys_env(tmp_path: Path) -> AsyncIterator[GenesysEnv]:
    async with open_fake_bot(WEBHOOK_SECRET) as bot, \
            open_fake_genesys(heartbeat_seconds=1.0) as genesys:
        lcx = LcxProcess(tmp_path, genesys_config(tmp_path, bot.url, genesys))
        await trio.to_thread.run_sync(lcx.start)
        token = mint_token(JWT_SECRET, sub="bot-1", org="o1", scopes="bot")
        try:
            async with httpx.AsyncClient(base_url=lcx.url, timeout=10, headers={
                    "Authorization": f"Bearer {token}"}) as http:
                yield GenesysEnv(lcx, bot, genesys, http)
        finally:
            await trio.to_thread.run_sync(lcx.kill)


async def test_bot_to_genesys_agent_and_back(genesys_env: GenesysEnv) -> None:
    """Request → Genesys chat; the agent joins (CONVERSATION_BEGIN), messages flow both
    ways, typing reaches the bot, and the agent leaving ends the conversation."""
    env = genesys_env
    created = await env.create("u-gen")
    chat_id = await env.chat_id()
    body = env.genesys.chats[chat_id].request
    assert body["routingTarget"]["targetAddress"] == "Support"
    assert body["memberInfo"]["displayName"] == "Ada"
    env.genesys.agent_joins(chat_id, name="Gina")
    await eventually(lambda: env.events("CONVERSATION_BEGIN"), timeout=10)
    begin = env.events("CONVERSATION_BEGIN")[0]
    assert begin["requestId"] == created["id"]
    assert begin["data"]["agent"]["name"] == "Gina"
    sent = await env.http.post("/messages", json={
        "tenantId": "g1", "subHandle": "u-gen", "id": "m-1", "text": "hello Genesys"})
    assert sent.status_code == 202
    await eventually(lambda: "hello Genesys" in env.genesys.guest_messages(chat_id),
                     timeout=10)
    env.genesys.agent_says(chat_id, "Hi Ada, Gina here")
    env.genesys.agent_types(chat_id)
    await eventually(lambda: env.events("MESSAGE"), timeout=10)
    message = env.events("MESSAGE")[0]
    assert message["data"]["text"] == "Hi Ada, Gina here"
    assert message["data"]["author"]["type"] == "agent"
    await eventually(lambda: env.events("CONVERSATION_TYPING"), timeout=10)
    env.genesys.agent_leaves(chat_id)
    await eventually(lambda: env.events("CONVERSATION_END"), timeout=10)
    assert env.events("CONVERSATION_END")[0]["data"]["endedBy"] == "provider"
    state = await env.http.get("/subscribers/u-gen/livechat-state", params={"tenantId": "g1"})
    assert state.json()["state"] == "ended"
    assert env.genesys.guest_messages(chat_id) == ["hello Genesys"]


async def test_bot_ends_and_genesys_hears_it(genesys_env: GenesysEnv) -> None:
    """Ending the session from the bot side leaves the Genesys chat."""
    env = genesys_env
    await env.create("u-end")
    chat_id = await env.chat_id()
    env.genesys.agent_joins(chat_id)
    await eventually(lambda: env.events("CONVERSATION_BEGIN"), timeout=10)
    assert (await env.http.delete("/sessions/tenants/g1/subscribers/u-end")).status_code == 204
    await eventually(lambda: env.genesys.ended(chat_id), timeout=10)


async def test_genesys_outage_loses_and_repeats_nothing(genesys_env: GenesysEnv) -> None:
    """While Genesys answers 503 (then 429 with Retry-After) the customer's messages wait
    in the outbox; they then arrive once each, in order. A dropped event stream reconnects
    and the agent's messages sent meanwhile still reach the bot once."""
    env = genesys_env
    await env.create("u-out")
    chat_id = await env.chat_id()
    env.genesys.agent_joins(chat_id)
    await eventually(lambda: env.events("CONVERSATION_BEGIN"), timeout=10)
    env.genesys.fail_next("/messages", 503)
    env.genesys.fail_next("/messages", 429, {"Retry-After": "1"})
    for index in range(3):
        response = await env.http.post("/messages", json={
            "tenantId": "g1", "subHandle": "u-out", "id": f"o-{index}", "text": f"m{index}"})
        assert response.status_code == 202
    await eventually(lambda: len(env.genesys.guest_messages(chat_id)) >= 3, timeout=15)
    assert env.genesys.guest_messages(chat_id) == ["m0", "m1", "m2"]
    env.genesys.drop_sockets(chat_id)
    env.genesys.agent_says(chat_id, "while you were away")
    await eventually(lambda: env.genesys.connections(chat_id) >= 2, timeout=15)
    env.genesys.agent_says(chat_id, "and now")
    await eventually(lambda: len(env.events("MESSAGE")) >= 2, timeout=15)
    await trio.sleep(0.5)
    assert [e["data"]["text"] for e in env.events("MESSAGE")] == [
        "while you were away", "and now"]
