"""The Redis bus's one coredis client, its Lua scripts, and the mapping of its errors.

:func:`open_link` enters one ``coredis.Redis`` (and so its connection pool) for the whole
life of a bus; every command goes through :meth:`RedisLink.call`, which bounds it by the
link's command timeout and maps what coredis raises onto the bus error tree::

    coredis ConnectionError, TimeoutError,   ->  BusUnavailable   (retry later)
    OSError, TryAgain / ClusterDown,
    ReadOnly (failover), a command timeout
    any other RedisError (OOM, WRONGTYPE...) ->  BusError         (surfaced, not swallowed)

A command that times out invalidates every pooled connection: a silent (half-open)
connection must not be handed out again; the next command connects afresh.

PUBLISH, the bus's hot command (RPC requests and replies, topic messages), bypasses coredis:
:meth:`RedisLink.publish` sends a batch on the link's own :class:`~lcx.cluster.resp.
RespConnection` (see :mod:`lcx.cluster.resp` for why), with the same timeout, error mapping
and health tracking. The publishes whose answer nobody reads (topic messages, RPC replies:
pub/sub is at-most-once anyway) go out through :meth:`RedisLink.publish_unanswered` on a
second such connection with Redis's replies turned off: a write each, no read, no wake-up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import coredis
import hiredis
import trio
from coredis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.retry import ConstantRetryPolicy

from lcx.cluster.bus import BusError, BusUnavailable
from lcx.cluster.resp import RespBroken, RespConnection, RespTarget, parse_url

log = logging.getLogger("lcx.cluster")

T = TypeVar("T")
Client = coredis.Redis[bytes]

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, TimeoutError, OSError, TryAgainError, ClusterDownError,
    ReadOnlyError,
)
SCRIPTS = ("acquire", "renew", "release", "heartbeat")
_UNAVAILABLE_REPLIES = (b"LOADING", b"READONLY", b"TRYAGAIN", b"CLUSTERDOWN", b"MASTERDOWN",
                        b"BUSY")
"""Error replies that mean "Redis cannot serve now" (BusUnavailable), not "refused"."""


def load_script(name: str) -> str:
    """The source of ``lcx/cluster/lua/<name>.lua``."""
    return resources.files("lcx.cluster").joinpath(f"lua/{name}.lua").read_text("utf-8")


class RedisLink:
    """A connected client plus its scripts; tracks whether Redis answers (``healthy``)."""

    def __init__(self, client: Client, *, timeout: float, name: str,
                 target: RespTarget | None = None,
                 watchers: trio.Nursery | None = None) -> None:
        """``watchers`` runs the watch of the unanswered connection (:meth:`publish_unanswered`
        needs it)."""
        self.client = client
        self.timeout = timeout
        self.name = name
        self.target = target or RespTarget()
        """Where :meth:`publish` (and the bus's subscriber) connect."""
        self.healthy = True
        self.scripts = {script: client.register_script(load_script(script))
                        for script in SCRIPTS}
        self._publishing: RespConnection | None = None
        self._publish_lock = trio.Lock()
        self._unanswered: RespConnection | None = None
        self._unanswered_lock = trio.Lock()
        self._watchers = watchers

    async def publish(self, what: str, items: list[tuple[str, bytes]]) -> list[int]:
        """PUBLISH each (channel, data) of ``items`` in one pipeline; each one's number of
        receivers. Within the command timeout, on the link's own connection (opened when
        needed; one immediate retry on a fresh one when a reused connection turns out to
        be dead, as for coredis's commands).

        Raises:
            BusUnavailable: Redis cannot be reached, or did not answer in time.
            BusError: Redis refused a command of the batch.
        """
        commands = [(b"PUBLISH", channel, data) for channel, data in items]
        async with self._publish_lock:
            for attempt in (1, 2):
                reused = self._publishing is not None and not self._publishing.broken
                try:
                    with trio.fail_after(self.timeout):
                        if not reused:
                            self._publishing = await RespConnection.connect(
                                self.target, name=self.name)
                        assert self._publishing is not None
                        replies = await self._publishing.execute(commands)
                    break
                except trio.TooSlowError as exc:
                    await self._drop_publishing()
                    self.client.connection_pool.disconnect()
                    raise self._down(f"redis did not answer {what} within "
                                     f"{self.timeout:g}s") from exc
                except RespBroken as exc:
                    await self._drop_publishing()
                    if attempt == 1 and reused:
                        continue
                    raise self._down(f"redis unavailable during {what}: {exc}") from exc
        counts: list[int] = []
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                if message.encode().startswith(_UNAVAILABLE_REPLIES):
                    raise self._down(f"redis unavailable during {what}: {message}")
                raise BusError(f"redis refused {what}: {message}")
            counts.append(int(reply))
        self._up()
        return counts

    async def publish_unanswered(self, what: str, items: list[tuple[str, bytes]]) -> None:
        """PUBLISH each (channel, data) of ``items`` in one write, without waiting for (or
        ever reading) Redis's answers: on the link's connection whose replies are off
        (opened when needed, within the command timeout).

        Returns once the batch is written, not received: what Redis refuses, or what a
        connection that died unnoticed swallows, is lost without a trace (the bus's
        heartbeats tell whether Redis answers). A write that fails drops the connection;
        the next batch opens a fresh one, and so does the batch after Redis closed the
        connection (a watch task notices the close at once, as nothing else reads it).

        Raises:
            BusUnavailable: the connection could not be opened, or the write failed or did
                not finish within the command timeout.
        """
        commands = [(b"PUBLISH", channel, data) for channel, data in items]
        async with self._unanswered_lock:
            try:
                with trio.fail_after(self.timeout):
                    if self._unanswered is None or self._unanswered.broken:
                        assert self._watchers is not None, "publish_unanswered needs watchers"
                        self._unanswered = await RespConnection.connect(
                            self.target, name=self.name, replies=False)
                        self._watchers.start_soon(self._unanswered.wait_closed)
                    await self._unanswered.send(commands)
            except trio.TooSlowError as exc:
                await self._drop_unanswered()
                raise self._down(f"redis did not take {what} within "
                                 f"{self.timeout:g}s") from exc
            except RespBroken as exc:
                await self._drop_unanswered()
                raise self._down(f"redis unavailable during {what}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the link's own connections (coredis's pool closes with its client)."""
        await self._drop_publishing()
        await self._drop_unanswered()

    async def _drop_publishing(self) -> None:
        if self._publishing is not None:
            await self._publishing.aclose()
            self._publishing = None

    async def _drop_unanswered(self) -> None:
        if self._unanswered is not None:
            await self._unanswered.aclose()
            self._unanswered = None

    async def call(self, what: str, op: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``op(client)`` within the command timeout.

        Raises:
            BusUnavailable: Redis cannot be reached, or did not answer in time.
            BusError: Redis refused the command.
        """
        try:
            with trio.fail_after(self.timeout):
                result = await op(self.client)
        except trio.TooSlowError as exc:
            self.client.connection_pool.disconnect()
            await self._drop_publishing()
            await self._drop_unanswered()
            raise self._down(f"redis did not answer {what} within {self.timeout:g}s") from exc
        except _UNAVAILABLE as exc:
            raise self._down(f"redis unavailable during {what}: {exc}") from exc
        except RedisError as exc:
            raise BusError(f"redis refused {what}: {exc}") from exc
        self._up()
        return result

    def _up(self) -> None:
        if not self.healthy:
            log.info("redis reachable again", extra={"bus": self.name})
            self.healthy = True

    async def script(self, name: str, keys: list[str], args: list[str | int | bytes]) -> Any:
        """Run the Lua script ``name`` (loaded on first use, reloaded after a restart)."""
        script = self.scripts[name]
        return await self.call(name, lambda _client: script(keys=keys, args=args))

    def _down(self, message: str) -> BusUnavailable:
        if self.healthy:
            log.warning(message, extra={"bus": self.name})
            self.healthy = False
        return BusUnavailable(message)


@asynccontextmanager
async def open_link(url: str, *, timeout: float, name: str) -> AsyncIterator[RedisLink]:
    """Enter one coredis client for ``url`` and yield its link; the pool closes on exit.

    No command is sent here: an unreachable Redis is noticed by the first command.
    """
    client: Client = coredis.Redis.from_url(
        url, decode_responses=False, stream_timeout=timeout, connect_timeout=timeout,
        client_name=name,
        # one immediate retry on a fresh connection (a pooled one may have been killed);
        # longer outages are the bus's business (heartbeat backoff), not a hidden wait here
        retry_policy=ConstantRetryPolicy((RedisConnectionError,), retries=1, delay=0.0),
    )
    async with client, trio.open_nursery() as watchers:
        link = RedisLink(client, timeout=timeout, name=name, target=parse_url(url),
                         watchers=watchers)
        try:
            yield link
        finally:
            await link.aclose()
            watchers.cancel_scope.cancel()
