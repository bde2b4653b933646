"""The Redis bus's outgoing fire-and-forget frames: a bounded queue and one writer task.

``put`` never blocks: it queues (channel, frame) or, when the queue is full, drops and
counts (pub/sub is at-most-once anyway). :meth:`Outbox.run` drains whatever is queued into
one write of up to 256 PUBLISH commands on the link's connection whose replies are off
(:meth:`~lcx.cluster.redis_link.RedisLink.publish_unanswered`): nobody reads how many
received them, so no answer is waited for. A batch that cannot be written is dropped and
counted, never retried (a retry would deliver stale hints late).
"""

from __future__ import annotations

import logging

import trio

from lcx.cluster.bus import BusError
from lcx.cluster.redis_frames import Frame, encode
from lcx.cluster.redis_link import RedisLink

log = logging.getLogger("lcx.cluster")

BATCH = 256


class Outbox:
    """Frames waiting to be published, at most ``size`` of them."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](size)
        self.dropped = 0

    @property
    def used(self) -> int:
        """Frames queued now."""
        return self._receive.statistics().current_buffer_used

    def put(self, channel: str, frame: Frame) -> bool:
        """Queue ``frame`` for ``channel``; False (and counted) when the queue is full."""
        if self.offer(channel, frame):
            return True
        self.dropped += 1
        return False

    def offer(self, channel: str, frame: Frame) -> bool:
        """Queue ``frame`` for ``channel`` if there is room; False (not counted) if not,
        for a caller that sends it another way then."""
        try:
            self._send.send_nowait((channel, encode(frame)))
        except trio.WouldBlock:
            return False
        return True

    async def run(self, link: RedisLink) -> None:
        """Publish queued frames in pipelined batches, forever."""
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await link.publish_unanswered("publish", batch)
            except BusError as exc:
                self.dropped += len(batch)
                log.debug("publish batch dropped: %s", exc)
