"""The Redis bus's one pub/sub connection and its one reader task.

:meth:`Subscriber.run` keeps an instance's channels subscribed: it opens a coredis pub/sub
on the shared client with coredis's own retry switched off (coredis would re-subscribe by
itself, verified, but then we could not tell when we were deaf), reads until the
connection breaks, and reconnects with backoff, cut short when a heartbeat shows that
Redis answers again. A silent connection is caught by coredis's keepalive PING (after
``idle_probe`` seconds without traffic) failing within the command timeout.

The reader decodes every frame and hands it to ``dispatch``, which must not block; an
undecodable payload is counted and skipped. ``on_lost`` runs whenever the subscription
ends (pending RPCs cannot get their replies any more), ``on_resubscribed`` after each
reconnection (time to re-register at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from coredis.patterns.pubsub import PubSub
from coredis.retry import NoRetryPolicy

from lcx.cluster.redis_frames import BadFrame, Frame, decode_frame
from lcx.cluster.redis_link import RedisLink
from lcx.runtime.policy import Backoff

log = logging.getLogger("lcx.cluster")


class Subscriber:
    """Keeps ``channels`` subscribed and feeds their frames to ``dispatch``."""

    def __init__(self, channels: list[str], dispatch: Callable[[Frame], None], *,
                 backoff: Backoff, idle_probe: float,
                 on_lost: Callable[[], None], on_resubscribed: Callable[[], None]) -> None:
        self._channels = channels
        self._dispatch = dispatch
        self._backoff = backoff
        self._idle_probe = idle_probe
        self._on_lost = on_lost
        self._on_resubscribed = on_resubscribed
        self._redis_back = trio.Event()
        self.subscribed = False
        self.reconnects = 0
        self.bad_frames = 0

    def redis_back(self) -> None:
        """Redis answers again: reconnect now rather than at the end of the backoff."""
        self._redis_back.set()

    async def run(self, link: RedisLink, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, then read and reconnect forever."""
        failures, started = 0, False
        while True:
            try:
                async with self._open(link) as pubsub:
                    failures, self.subscribed = 0, True
                    if started:
                        self.reconnects += 1
                        log.info("bus re-subscribed")
                        self._on_resubscribed()
                    else:
                        started = True
                        task_status.started()
                    await self._read(pubsub)
            except* Exception as group:
                # coredis raises connection errors wrapped in groups, and, when cancelled
                # mid-cleanup, a ClosedResourceError beside the Cancelled: only the
                # Cancelled may propagate (except* re-raises it)
                if failures == 0:
                    log.warning("bus subscription lost: %r", group.exceptions[0])
            finally:
                if self.subscribed:
                    self.subscribed = False
                    self._on_lost()
            failures += 1
            self._redis_back = trio.Event()
            with trio.move_on_after(self._backoff.delay(failures)):
                await self._redis_back.wait()

    def _open(self, link: RedisLink) -> PubSub[bytes]:
        return link.client.pubsub(
            channels=self._channels, ignore_subscribe_messages=True,
            retry_policy=NoRetryPolicy(), subscription_timeout=link.timeout,
            max_idle_seconds=self._idle_probe)

    async def _read(self, pubsub: PubSub[bytes]) -> None:
        """The one reader: decode and dispatch, never awaiting a handler."""
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue
            data = message["data"]
            try:
                frame = decode_frame(data if isinstance(data, bytes) else str(data).encode())
            except BadFrame as exc:
                self.bad_frames += 1
                log.warning("%s", exc)
                continue
            self._dispatch(frame)
