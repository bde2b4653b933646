"""The bounded outbound queue of one agent websocket (its session's ``FrameSink``).

A socket may hold at most ``ws.max_queued_frames`` frames and ``ws.max_queued_bytes``
bytes not yet handed to the connection, and all the sockets of an instance together at
most ``ws.max_queued_bytes_total`` (defaults :data:`MAX_QUEUED_BYTES`,
:data:`MAX_QUEUED_BYTES_TOTAL`); a frame that does not fit is refused and the
socket is cut off (4008). Replies to the client's own frames never cut it: the reader
waits for room (:meth:`SocketSink.wait_room`) before it takes the next frame, so a
client that sends faster than it reads is slowed down, not disconnected.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import msgspec
import trio

__all__ = ["MAX_QUEUED_BYTES", "MAX_QUEUED_BYTES_TOTAL", "QueueBudget", "SocketSink",
           "instance_budget"]

MAX_QUEUED_BYTES = 1024 * 1024
"""Bytes one socket may have queued (a frame larger than this alone is queued only on an
empty queue: the ``REQUEST_ACCEPT`` ack carries every queued message)."""
MAX_QUEUED_BYTES_TOTAL = 64 * 1024 * 1024
"""Bytes all the sockets of one instance may have queued together."""


class QueueBudget:
    """Bytes queued on all the sockets of one instance, against one ceiling."""

    def __init__(self, limit: int = MAX_QUEUED_BYTES_TOTAL) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when over the ceiling."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        """Release bytes reserved by :meth:`take`."""
        self.used -= size


_budgets: weakref.WeakKeyDictionary[Any, QueueBudget] = weakref.WeakKeyDictionary()


def instance_budget(owner: Any) -> QueueBudget:
    """The one budget of ``owner`` (the instance's livechat domain, whose
    ``max_queued_bytes_total`` is its ceiling), made on first use."""
    budget = _budgets.get(owner)
    if budget is None:
        budget = _budgets[owner] = QueueBudget(
            getattr(owner, "max_queued_bytes_total", MAX_QUEUED_BYTES_TOTAL))
    return budget


class SocketSink:
    """The outbound queue of one websocket; see the module docstring.

    The session offers frames (:meth:`offer`, never waits); the socket's writer takes
    them (:meth:`next_frames`, a batch at a time); :meth:`release` gives back what is
    left when the socket closes. ``scope`` is cancelled by :meth:`cut`.
    """

    def __init__(self, capacity: int, *, max_bytes: int = MAX_QUEUED_BYTES,
                 budget: QueueBudget | None = None) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](math.inf)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.budget = budget if budget is not None else QueueBudget()
        self.frames = 0
        self.bytes = 0
        self.scope = trio.CancelScope()
        self.cut_reason: str | None = None
        self.going_away = False
        self._room = trio.Event()

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False when the client is too far behind (frames or bytes)."""
        size = len(frame)
        over = self.frames >= self.capacity or (
            self.frames > 0 and self.bytes + size > self.max_bytes)
        if over or not self.budget.take(size):
            return False
        try:
            self.send.send_nowait(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.budget.give_back(size)
            return True  # closing anyway
        self.frames += 1
        self.bytes += size
        return True

    def offer_json(self, frame: dict[str, Any]) -> None:
        """Queue a frame built here; cut the socket if it does not fit."""
        if not self.offer(msgspec.json.encode(frame)):
            self.cut("too many frames queued")

    def cut(self, reason: str) -> None:
        """Close the connection because the client cannot keep up."""
        self.cut_reason = reason
        self.scope.cancel()

    async def next_frame(self) -> bytes:
        """The oldest queued frame, waiting for one; its room is free again."""
        frame = await self.receive.receive()
        self._forget(frame)
        if self._has_room():
            self._room.set()
        return frame

    async def next_frames(self, max_bytes: int = 256 * 1024) -> list[bytes]:
        """The oldest queued frame, waiting for one, and those queued behind it (up to
        ``max_bytes`` in all) without waiting: one batch for one write."""
        frames = [await self.receive.receive()]
        size = len(frames[0])
        while size < max_bytes:
            try:
                frame = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            frames.append(frame)
            size += len(frame)
        for frame in frames:
            self._forget(frame)
        if self._has_room():
            self._room.set()
        return frames

    async def wait_room(self) -> None:
        """Wait until at most half the frames and bytes allowed are queued."""
        while not self._has_room():
            self._room = trio.Event()
            await self._room.wait()

    def release(self) -> None:
        """Stop queueing and give back the bytes of the frames never sent (idempotent)."""
        self.send.close()
        while True:
            try:
                self._forget(self.receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def _has_room(self) -> bool:
        return self.frames <= self.capacity // 2 and self.bytes <= self.max_bytes // 2

    def _forget(self, frame: bytes) -> None:
        self.frames -= 1
        self.bytes -= len(frame)
        self.budget.give_back(len(frame))
