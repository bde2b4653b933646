"""Real Redis for the tests: where it is, skip-or-fail, unique namespaces, admin, a private
server that can be killed and restarted.

- ``LCX_TEST_REDIS_URL`` names the shared Redis (default ``redis://127.0.0.1:6379/15``:
  db 15, so the tests never touch an application's db 0).
- When it cannot be reached the test is skipped with the reason, unless
  ``LCX_REQUIRE_SERVICES=1`` (CI), which makes it a failure.
- Each test uses its own namespace (:func:`unique_namespace`) and deletes its keys after
  (:func:`delete_namespace`), so tests can share one Redis and run concurrently.
- :class:`RedisServer` runs a private ``redis-server`` (no persistence) on a free port for
  the tests that stop Redis and start it again.

Real sockets mean real time: never combine these with ``MockClock`` (autojump treats a
socket wait as idle and jumps the clock).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import coredis
import pytest
import trio

from support.waiting import eventually

REDIS_URL_ENV = "LCX_TEST_REDIS_URL"
REQUIRE_ENV = "LCX_REQUIRE_SERVICES"
DEFAULT_URL = "redis://127.0.0.1:6379/15"


def redis_url() -> str:
    """The Redis the tests use."""
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_URL


def services_required() -> bool:
    """Whether a missing service is a failure (CI) rather than a skip."""
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{reason} (and {REQUIRE_ENV}=1)")
    pytest.skip(reason)


def reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether something answers a Redis PING at ``url`` (a blocking check, for setup)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                      timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def require_redis() -> str:
    """The shared Redis URL; skips (or fails) the test when Redis is not reachable."""
    url = redis_url()
    if not reachable(url):
        unavailable(f"Redis is not reachable at {url} (set {REDIS_URL_ENV})")
    return url


def unique_namespace(prefix: str = "lcx-test") -> str:
    """A key namespace no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


@asynccontextmanager
async def open_admin(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """A separate client for the test's own commands (inspection, CLIENT KILL...)."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, stream_timeout=2.0,
                                                          connect_timeout=2.0)
    async with client:
        yield client


async def delete_namespace(url: str, namespace: str) -> int:
    """Delete every key of ``namespace``; the number deleted."""
    async with open_admin(url) as admin:
        keys = [key async for key in admin.scan_iter(match=f"{namespace}:*", count=500)]
        return await admin.delete(keys) if keys else 0


async def client_ids(admin: coredis.Redis[bytes], name_prefix: str,
                     *, pubsub: bool | None = None) -> list[int]:
    """Ids of the connections whose CLIENT SETNAME starts with ``name_prefix`` (only the
    pub/sub ones, or only the others, when ``pubsub`` says so)."""
    ids = []
    for client in await admin.client_list():
        name = str(client.get("name") or "")
        flags = str(client.get("flags") or "")
        is_pubsub = "P" in flags or int(str(client.get("sub") or 0)) > 0
        if name.startswith(name_prefix) and (pubsub is None or pubsub == is_pubsub):
            ids.append(int(str(client["id"])))
    return ids


async def kill_clients(admin: coredis.Redis[bytes], name_prefix: str,
                       *, pubsub: bool | None = None) -> int:
    """CLIENT KILL the matching connections (see :func:`client_ids`); how many."""
    killed = 0
    for client_id in await client_ids(admin, name_prefix, pubsub=pubsub):
        killed += int(await admin.client_kill(identifier=client_id))
    return killed


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` without persistence that a test may stop and restart
    (same port: clients reconnect to an empty Redis, as after a restart without AOF/RDB)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self._binary = binary or "redis-server"
        self._nursery = nursery
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: trio.Process | None = None

    async def start(self) -> None:
        """Start the server and wait until it answers."""
        command = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self._process = await self._nursery.start(
            functools.partial(trio.run_process, command, check=False))
        await eventually(lambda: reachable(self.url, timeout=0.1), timeout=5.0)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for ``kill -STOP`` / ``-CONT``)."""
        return None if self._process is None else self._process.pid

    async def stop(self) -> None:
        """Kill the server (no save) and wait until it is gone."""
        if self._process is not None:
            self._process.kill()
            await self._process.wait()
            self._process = None
        await eventually(lambda: not reachable(self.url, timeout=0.1), timeout=5.0)


@asynccontextmanager
async def private_redis() -> AsyncIterator[RedisServer]:
    """A started :class:`RedisServer`, killed on exit."""
    async with trio.open_nursery() as nursery:
        server = RedisServer(nursery)
        await server.start()
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                await server.stop()
