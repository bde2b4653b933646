"""Helpers of the channel tests: a real ``lcx serve`` with one channel tenant in front of
a fake of that channel, and an agent accepting, answering, and what it received."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
import trio
from fakes.bot import open_fake_bot
from support.agent_client import AgentClient
from support.lcx_process import LcxProcess, basic_config

from lcx.auth import mint_token

JWT_SECRET = "channels-jwt-secret-with-more-than-32-bytes"


class ChannelFake(Protocol):
    """What the environment needs of a channel's fake: its tenant settings and the URL it
    posts its webhooks to."""

    webhook_url: str

    def config(self) -> str:
        """The channel's ``[tenants.<channel>]`` table for this fake."""
        ...


F = TypeVar("F", bound=ChannelFake)


@dataclass
class ChannelEnv(Generic[F]):
    """A running lcx with one tenant of the channel, the channel's fake and a client."""

    lcx: LcxProcess
    fake: F
    http: httpx.AsyncClient

    def agent(self) -> str:
        """A token of agent Alice in the tenant's group."""
        return mint_token(JWT_SECRET, sub="alice", org="o1", scopes="agent", groups=["g1"],
                          name="Alice")


@asynccontextmanager
async def channel_env(tmp_path: Path, fake: F, *, tenant: str, channel: str,
                      spam_threshold: int) -> AsyncIterator[ChannelEnv[F]]:
    """Start lcx with tenant ``tenant`` of organization o1 on ``channel`` (bot events to a
    fake bot, fast delivery retries) and point the fake's webhooks at it."""
    async with open_fake_bot("bot-secret") as bot:
        config = basic_config(tmp_path, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400

[[tenants]]
id = "{tenant}"
organization_id = "o1"
channel = "{channel}"
default_user_group = "g1"
bot_events_url = "{bot.url}"
webhook_secret = "bot-secret"
{fake.config()}spam_threshold = {spam_threshold}
""")
        lcx = LcxProcess(tmp_path, config)
        await trio.to_thread.run_sync(lcx.start)
        fake.webhook_url = f"{lcx.url}/events/{channel}"
        try:
            async with httpx.AsyncClient(base_url=lcx.url, timeout=10) as http:
                yield ChannelEnv(lcx, fake, http)
        finally:
            await trio.to_thread.run_sync(lcx.kill)


async def accepted(alice: AgentClient) -> str:
    offer = await alice.notification("request_created", timeout=10)
    answer = await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
    return str(answer["data"]["conversationId"])


def received(alice: AgentClient, conversation_id: str) -> list[dict[str, Any]]:
    """The messages the agent has of a conversation: the history in the accept's ack,
    then the message frames (each message once)."""
    found: dict[str, dict[str, Any]] = {}
    for frame in alice.frames:
        data = frame.get("data")
        history = data.get("messages", []) if frame.get("type") == "ack" and \
            isinstance(data, dict) and data.get("conversationId") == conversation_id else []
        for message in [*history, *([data] if frame.get("type") == "message" else [])]:
            if message.get("conversationId") == conversation_id:
                found.setdefault(message["messageId"], message)
    return list(found.values())


def seen(alice: AgentClient, conversation_id: str) -> list[str]:
    """The texts of :func:`received`."""
    return [m.get("text") or "" for m in received(alice, conversation_id)]


async def answer(alice: AgentClient, conversation_id: str, text: str) -> None:
    ack = await alice.call(None, {"conversationId": conversation_id, "text": text},
                           kind="message")
    assert ack["type"] == "ack", ack
