"""Three real ``lcx serve`` instances on one private Redis and one PostgreSQL schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from fakes.bot import FakeBot, open_fake_bot
from support.lcx_process import LcxProcess
from support.postgres import scratch_schema
from support.redis import RedisServer, private_redis
from support.waiting import eventually

from lcx.auth import mint_token
from lcx.cluster.placement import owner_of

JWT_SECRET = "cluster-jwt-secret-with-more-than-32-bytes"
WEBHOOK_SECRET = "cluster-webhook-secret"
HEARTBEAT_MS = 200
LEASE_MS = 1200
NAMES = ("a", "b", "c")


def instance_config(workdir: Path, name: str, redis_url: str, store_url: str,
                    bot_url: str, extra: str = "") -> str:
    """The config of one instance of the test cluster."""
    return f"""
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout_seconds = 8

[store]
url = "{store_url}"

[cluster]
redis_url = "{redis_url}"
instance_id = "{name}"
heartbeat_ms = {HEARTBEAT_MS}
lease_ms = {LEASE_MS}

[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400

[attachments]
dir = "{workdir}/attachments"

[[tenants]]
id = "t1"
organization_id = "o1"
default_user_group = "g1"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"
{extra}"""


def token(sub: str, scope: str, **claims: Any) -> str:
    """A token of organization o1."""
    return mint_token(JWT_SECRET, sub=sub, org="o1", scopes=scope, **claims)


@dataclass
class Cluster:
    """The running instances, their Redis and the fake bot."""

    instances: dict[str, LcxProcess]
    redis: RedisServer
    bot: FakeBot
    http: httpx.AsyncClient
    alive: set[str] = field(default_factory=set)

    def url(self, name: str) -> str:
        return self.instances[name].url

    def owner(self, kind: str, key: str) -> str:
        """Which live instance owns an actor, by the same rule the instances use."""
        owner = owner_of(f"{kind}:{key}", sorted(self.alive))
        assert owner is not None
        return owner

    async def status(self, name: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.url(name)}/cluster", headers={
            "Authorization": f"Bearer {token('ops', 'service')}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_members(self, expected: set[str], timeout: float = 10.0) -> None:
        """Wait until every live instance sees exactly ``expected`` as members."""
        views: dict[str, set[str]] = {}

        async def refresh() -> None:
            for name in self.alive:
                views[name] = {m["instanceId"] for m in (await self.status(name))["members"]}

        with trio.fail_after(timeout):
            while True:
                await refresh()
                if all(view == expected for view in views.values()):
                    return
                await trio.sleep(0.1)

    async def bot_post(self, name: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """A bot API call to instance ``name``."""
        return await self.http.post(f"{self.url(name)}{path}", json=body, headers={
            "Authorization": f"Bearer {token('bot-1', 'bot')}"})

    async def create_request(self, name: str, sub_handle: str) -> dict[str, Any]:
        response = await self.bot_post(name, "/requests",
                                       {"tenantId": "t1", "subHandle": sub_handle})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def post_message(self, name: str, sub_handle: str, message_id: str,
                           text: str) -> httpx.Response:
        return await self.bot_post(name, "/messages", {
            "tenantId": "t1", "subHandle": sub_handle, "id": message_id, "text": text})

    async def kill(self, name: str) -> None:
        """kill -9 one instance."""
        self.alive.discard(name)
        await trio.to_thread.run_sync(self.instances[name].kill)

    async def restart(self, name: str) -> None:
        """Start a killed instance again (same config; it listens on a new port)."""
        await trio.to_thread.run_sync(self.instances[name].start)
        self.alive.add(name)

    async def transcript(self, name: str, conversation_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.url(name)}/organizations/o1/livechat-messages",
            params={"conversationId": conversation_id},
            headers={"Authorization": f"Bearer {token('sue', 'supervisor')}"})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@asynccontextmanager
async def running_cluster(tmp_path: Path, names: tuple[str, ...] = NAMES,
                          extra: Callable[[str], str] | None = None, *,
                          store_url: str | None = None,
                          redis_link: Callable[[RedisServer, str], Awaitable[str]] | None
                          = None) -> AsyncIterator[Cluster]:
    """Start Redis, the bot and the instances (``extra(bot_url)``: more config, e.g.
    tenants pointing at fake providers); kill everything on exit.

    ``store_url`` replaces the scratch schema of the shared PostgreSQL (e.g. a private
    server the test restarts); ``await redis_link(redis, name)`` gives the Redis URL of
    instance ``name`` (e.g. through a proxy that can cut it).
    """
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(private_redis())
        if store_url is None:
            store_url = stack.enter_context(scratch_schema())
        bot = await stack.enter_async_context(open_fake_bot(WEBHOOK_SECRET))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        instances: dict[str, LcxProcess] = {}
        for name in names:
            workdir = tmp_path / name
            workdir.mkdir(parents=True)
            redis_url = redis.url if redis_link is None else await redis_link(redis, name)
            process = LcxProcess(workdir, instance_config(
                workdir, name, redis_url, store_url, bot.url, extra(bot.url) if extra else ""),
                name=name)
            instances[name] = process
            stack.callback(process.kill)
        async with trio.open_nursery() as nursery:
            for process in instances.values():
                nursery.start_soon(trio.to_thread.run_sync, process.start)
        cluster = Cluster(instances, redis, bot, http, alive=set(names))
        await cluster.wait_members(set(names))
        yield cluster


async def settled(check: Any, timeout: float = 10.0) -> None:
    """Wait for a condition that depends on other processes."""
    await eventually(check, timeout=timeout)
