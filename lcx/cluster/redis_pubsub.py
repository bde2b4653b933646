"""The Redis bus's one pub/sub connection and its one reader task.

:meth:`Subscriber.run` keeps an instance's channels subscribed: it opens its own
:class:`~lcx.cluster.resp.RespConnection` (the lean one of the hot path: every message of
the bus arrives here), subscribes, reads until the connection breaks, and reconnects with
backoff, cut short when a heartbeat shows that Redis answers again; so we always know when
we are deaf. A silent connection is caught by a PING (after ``idle_probe`` seconds without
traffic) left unanswered for the command timeout.

The reader decodes every frame and hands it to ``dispatch``, which must not block; an
undecodable payload is counted and skipped. ``on_lost`` runs whenever the subscription
ends (pending RPCs cannot get their replies any more), ``on_resubscribed`` after each
reconnection (time to re-register at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from lcx.cluster.redis_frames import BadFrame, Frame, decode_frame
from lcx.cluster.redis_link import RedisLink
from lcx.cluster.resp import RespBroken, RespConnection
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
        self._heard = 0.0
        """When the connection last delivered anything (Trio clock)."""

    def redis_back(self) -> None:
        """Redis answers again: reconnect now rather than at the end of the backoff."""
        self._redis_back.set()

    async def run(self, link: RedisLink, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, then read and reconnect forever."""
        failures, started = 0, False
        while True:
            try:
                connection = await self._subscribe(link)
                try:
                    failures, self.subscribed = 0, True
                    if started:
                        self.reconnects += 1
                        log.info("bus re-subscribed")
                        self._on_resubscribed()
                    else:
                        started = True
                        task_status.started()
                    await self._read(connection, link.timeout)
                finally:
                    await connection.aclose()
            except* Exception as group:
                # the reader's nursery wraps errors in groups, and a close while cancelled
                # may raise beside the Cancelled: only the Cancelled may propagate
                # (except* re-raises it)
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

    async def _subscribe(self, link: RedisLink) -> RespConnection:
        """A connection subscribed to our channels, every subscription confirmed within the
        link's timeout."""
        with trio.fail_after(link.timeout):
            connection = await RespConnection.connect(link.target, name=link.name)
            try:
                await connection.send([(b"SUBSCRIBE", *self._channels)])
                for _ in self._channels:
                    reply = await connection.read()
                    if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                        raise RespBroken(f"redis answered SUBSCRIBE with {reply!r}")
            except BaseException:
                await connection.aclose()
                raise
        return connection

    async def _read(self, connection: RespConnection, timeout: float) -> None:
        """The one reader: decode and dispatch, never awaiting a handler; beside it, the
        prober that PINGs a silent connection."""
        self._heard = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._probe, connection, timeout)
            while True:
                reply = await connection.read()
                self._heard = trio.current_time()
                if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"):
                    continue  # a PING's pong, or a (un)subscribe confirmation
                try:
                    frame = decode_frame(reply[2])
                except BadFrame as exc:
                    self.bad_frames += 1
                    log.warning("%s", exc)
                    continue
                self._dispatch(frame)

    async def _probe(self, connection: RespConnection, timeout: float) -> None:
        """After ``idle_probe`` seconds without traffic, PING; no answer within ``timeout``:
        the connection is silent (half-open or Redis paused), so it is given up."""
        while True:
            await trio.sleep_until(self._heard + self._idle_probe)
            if trio.current_time() < self._heard + self._idle_probe:
                continue
            sent = trio.current_time()
            await connection.send([(b"PING",)])
            await trio.sleep(timeout)
            if self._heard < sent:
                raise RespBroken(f"redis did not answer a PING within {timeout:g}s")
