"""The Redis bus's awaited PUBLISH commands (RPC requests and replies), sent in pipelines.

A call's request and its reply each need Redis's answer: the request's number of
receivers tells whether the target still listens, and a failed reply is logged. Sent one
by one, every PUBLISH pays a write and a read of its own (with coredis it also paid its
whole per-command path: ~150-300 µs of CPU here; the link now sends PUBLISH on its own lean
connection, :meth:`~lcx.cluster.redis_link.RedisLink.publish`).
:class:`Publisher` sends a call at once, from its caller's task, when nothing else is being
sent; the calls made while a send is in flight queue, and one task then sends them all as
one pipeline (up to :data:`BATCH` commands, one round trip) and hands each caller its own
answer. A lone call costs one round trip; under load the calls share one.

A caller cancelled before its command was taken withdraws it (a request whose caller gave
up is not published); once taken, it is sent and its answer dropped. When the batch
fails, every caller in it gets the error (:class:`~lcx.cluster.bus.BusUnavailable` or
:class:`~lcx.cluster.bus.BusError`: whether Redis received it is unknown, as for a single
command); when the bus stops, queued callers get ``BusUnavailable`` at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio

from lcx.cluster.bus import BusError, BusUnavailable
from lcx.cluster.redis_link import RedisLink

__all__ = ["BATCH", "Publisher"]

BATCH = 256
"""The most commands in one pipeline."""


@dataclass(eq=False, slots=True)
class _Publish:
    """One queued PUBLISH and what its caller waits for."""

    channel: str
    data: bytes
    done: trio.Event = field(default_factory=trio.Event)
    receivers: int = 0
    error: BusError | None = None
    taken: bool = False
    abandoned: bool = False


class Publisher:
    """PUBLISH commands whose callers await Redis's answer, pipelined by :meth:`run`."""

    def __init__(self) -> None:
        self._queue: deque[_Publish] = deque()
        self._wake = trio.Event()
        self._in_flight: list[_Publish] = []
        self._link: RedisLink | None = None
        self._sending = False
        self.batches = 0
        """Pipelines sent so far."""
        self.sent = 0
        """Commands sent so far."""

    async def publish(self, channel: str, data: bytes) -> int:
        """Publish ``data`` on ``channel``; the number of subscribers that received it.

        Raises:
            BusUnavailable: Redis cannot be reached, or the bus stopped first.
            BusError: Redis refused the command.
        """
        link = self._link
        if link is not None and not self._sending and not self._queue:
            return await self._send_one(link, channel, data)
        item = _Publish(channel, data)
        self._queue.append(item)
        if not self._sending:
            self._wake.set()
        try:
            await item.done.wait()
        except BaseException:
            if not item.taken:
                item.abandoned = True
            raise
        if item.error is not None:
            raise item.error
        return item.receivers

    async def run(self, link: RedisLink) -> None:
        """Send over ``link`` until cancelled: lone calls directly, queued ones in pipelines."""
        self._link = link
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    batch = self._take()
                    if batch:
                        await self._send(link, batch)
        finally:
            self._link = None
            self._fail(self._in_flight, BusUnavailable("the bus stopped"))
            self._in_flight = []

    async def _send_one(self, link: RedisLink, channel: str, data: bytes) -> int:
        self._sending = True
        try:
            (receivers,) = await link.publish("publish", [(channel, data)])
        finally:
            self._sending = False
            if self._queue:
                self._wake.set()
        self.batches += 1
        self.sent += 1
        return receivers

    def close(self, reason: str) -> None:
        """Fail every queued command with ``BusUnavailable(reason)`` (the bus stopped)."""
        queued = list(self._queue)
        self._queue.clear()
        self._fail(queued, BusUnavailable(reason))

    def _take(self) -> list[_Publish]:
        batch: list[_Publish] = []
        while self._queue and len(batch) < BATCH:
            item = self._queue.popleft()
            if not item.abandoned:
                item.taken = True
                batch.append(item)
        return batch

    async def _send(self, link: RedisLink, batch: list[_Publish]) -> None:
        self._in_flight = batch
        self._sending = True
        try:
            counts = await link.publish(
                "publish", [(item.channel, item.data) for item in batch])
        except BusError as exc:
            self._fail(batch, exc)
            return
        finally:
            self._in_flight = []
            self._sending = False
        self.batches += 1
        self.sent += len(batch)
        for item, count in zip(batch, counts, strict=True):
            item.receivers = count
            item.done.set()

    @staticmethod
    def _fail(items: list[_Publish], error: BusError) -> None:
        for item in items:
            if not item.done.is_set():
                item.error = error
                item.done.set()
