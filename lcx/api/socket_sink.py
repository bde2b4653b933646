"""The bounded outbound queue of one agent websocket (its session's ``FrameSink``).

A socket may hold at most ``ws.max_queued_frames`` frames and ``ws.max_queued_bytes``
bytes not yet handed to the connection, and all the sockets of an instance together at
most ``ws.max_queued_bytes_total`` (defaults :data:`MAX_QUEUED_BYTES`,
:data:`MAX_QUEUED_BYTES_TOTAL`); a frame that does not fit is refused and the
socket is cut off (4008). Replies to the client's own frames never cut it: the reader
waits for room (:meth:`SocketSink.wait_room`) before it takes the next frame, so a
client that sends faster than it reads is slowed down, not disconnected.

Writing: a socket's frames are written by the instance's :class:`FlushLoop` (one task for
all sockets, one non-blocking write per socket and round) when its connection allows a
direct write (:attr:`~lcx.api.ws_wire.WireWriter.direct`); what the kernel does not take at
once stays pending on the connection and is sent by the socket's own writer task
(:meth:`SocketSink.send_owed`); the loop writes that socket again only once nothing is
pending, so at most one batch (:data:`MAX_BATCH_BYTES`) waits on the connection and frames
stay in order. Otherwise the writer task writes every batch itself (the public path).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec
import trio

from lcx.api.ws_wire import WireWriter, text_frame

__all__ = ["MAX_BATCH_BYTES", "MAX_QUEUED_BYTES", "MAX_QUEUED_BYTES_TOTAL", "Audience", "FlushLoop",
           "QueueBudget", "SocketSink", "WriteCounters", "instance_budget",
           "instance_flush_loop"]

log = logging.getLogger("lcx.ws")

MAX_QUEUED_BYTES = 1024 * 1024
"""Bytes one socket may have queued (a frame larger than this alone is queued only on an
empty queue: the ``REQUEST_ACCEPT`` ack carries every queued message)."""
MAX_QUEUED_BYTES_TOTAL = 64 * 1024 * 1024
"""Bytes all the sockets of one instance may have queued together."""
MAX_BATCH_BYTES = 256 * 1024
"""Bytes of frames taken off a queue for one write."""
COALESCE_AFTER_SECONDS = 0.0005
"""A flush round whose work took longer than this (a broadcast to many sockets) is
followed by a pause :data:`COALESCE_FACTOR` times as long (at most
:data:`COALESCE_MAX_SECONDS`): the frames offered meanwhile go out together, one write
per socket for several broadcasts, and the loop never takes more than about a third of
the CPU. Small rounds (a frame or two) never wait."""
COALESCE_MAX_SECONDS = 0.020
COALESCE_FACTOR = 2.0
"""The pause after a long round, as a multiple of the round's own work."""
SLICE_SECONDS = 0.002
"""A round yields to the other tasks after this much writing (then carries on)."""

_Entry = tuple[bytes, int, int]
"""A queued entry: ``(data, frames, size)`` (see :class:`SocketSink`)."""


class WriteCounters(Protocol):
    """Where writes to sockets are counted (the livechat domain's counters)."""

    ws_writes: int
    ws_frames_sent: int


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


class Audience(Protocol):
    """Who a broadcast (:meth:`FlushLoop.broadcast`) is for, resolved when it is delivered."""

    def same(self, other: Audience) -> bool:
        """Whether ``other`` names the same sockets (its frames may join this one's)."""

    def sinks(self) -> Iterable[SocketSink]:
        """The sockets to offer the frames to (those held now)."""

    def refused(self, sink: SocketSink) -> None:
        """``sink`` could not take the frames (too far behind): cut it."""


class _Broadcast:
    """Frames for one audience, offered in the loop's next round (or sooner)."""

    __slots__ = ("audience", "frames", "serial")

    def __init__(self, audience: Audience, frame: bytes, serial: int) -> None:
        self.audience = audience
        self.frames = [frame]
        self.serial = serial
        """The loop's count of broadcasts when this one was made: a socket that follows the
        loop since then (:attr:`SocketSink.since`) does not get it."""


class FlushLoop:
    """Writes the frames offered to the sinks of one instance, without a task per socket.

    A sink with a direct writer (:class:`~lcx.api.ws_wire.WireWriter`) marks itself here when
    it gets a frame; once the tasks that are runnable have run (a broadcast has offered its
    frame to every sink), this one system task writes each marked sink's pending frames
    with one non-blocking write. What the kernel does not take at once is left to that
    socket's writer task; the loop writes the socket again once it is all sent.

    A frame for many sockets (:meth:`broadcast`) is not offered to them by the caller: it
    waits here, and the frames of consecutive broadcasts to the same audience are framed
    and joined once and the same bytes queued on each socket at the start of the next
    round (:meth:`settle`). A socket's own frame, or a read of its queue, settles what waits
    first, so every socket sees its frames in the order they were offered. A round that
    took long (many sockets) is followed by a pause, in which the next round's frames
    gather: a socket gets one write per round whatever the rate of broadcasts, and the
    writes take at most about a third of the CPU. A round yields to other tasks every
    :data:`SLICE_SECONDS` of writing, so requests are not held behind it.
    """

    def __init__(self) -> None:
        self._marked: list[SocketSink] = []
        self._broadcasts: list[_Broadcast] = []
        self._task: trio.lowlevel.Task | None = None
        self._sleeping = False
        self.rounds = 0
        """Times the loop woke up and wrote (for tests and profiles)."""
        self.settled = 0
        """Broadcasts (joined frames of one audience) offered to their sockets."""
        self.serial = 0
        """Broadcasts made so far."""
        self._followed_at = -1
        """:attr:`serial` when a socket last began to follow the loop."""

    @property
    def waiting(self) -> bool:
        """Whether broadcasts wait to be offered to their sockets (:meth:`settle`)."""
        return bool(self._broadcasts)

    def mark(self, sink: SocketSink) -> None:
        """Write ``sink``'s pending frames soon (idempotent until they are written)."""
        if sink.marked:
            return
        sink.marked = True
        self._marked.append(sink)
        if not self._wake():
            self._marked.clear()  # the run is ending: the sockets are closing anyway
            sink.marked = False

    def broadcast(self, audience: Audience, frame: bytes) -> None:
        """Offer ``frame`` (UTF-8 JSON) to every socket of ``audience`` at the start of the
        next round, joined with the frames of the broadcasts to the same audience before it;
        a socket that cannot take them is then :meth:`Audience.refused`. Never waits."""
        self.serial += 1
        broadcasts = self._broadcasts
        if broadcasts and broadcasts[-1].serial > self._followed_at and \
                broadcasts[-1].audience.same(audience):
            broadcasts[-1].frames.append(frame)
            return
        broadcasts.append(_Broadcast(audience, frame, self.serial))
        if not self._wake():  # no loop to write (the run is ending): queue them now
            self.settle()

    def _wake(self) -> bool:
        """Start or wake the task; False when no task can run any more."""
        if self._task is None:
            try:
                self._task = trio.lowlevel.spawn_system_task(self._run, name="lcx-ws-flush")
            except RuntimeError:
                return False
        elif self._sleeping:
            self._sleeping = False
            trio.lowlevel.reschedule(self._task)
        return True

    def settle(self) -> None:
        """Offer every waiting broadcast to its sockets now (in order): the frames of one
        broadcast are framed and joined once, and each socket queues the same bytes."""
        while self._broadcasts:
            broadcasts, self._broadcasts = self._broadcasts, []
            for item in broadcasts:
                self.settled += 1
                try:
                    _deliver(item)
                except Exception:  # never let one audience stop the others' frames
                    log.exception("agent socket broadcast failed")

    @property
    def running(self) -> bool:
        """Whether the loop's task is alive (a mark will be written)."""
        return self._task is not None

    def _stopped(self, _: object) -> trio.lowlevel.Abort:
        self._sleeping = False
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _run(self) -> None:
        while True:
            if not self._marked and not self._broadcasts:
                self._sleeping = True
                await trio.lowlevel.wait_task_rescheduled(self._stopped)
            else:
                # let every task runnable now offer its frames first: one write for all
                await trio.lowlevel.cancel_shielded_checkpoint()
            self.rounds += 1
            began = time.perf_counter()
            self.settle()
            marked, self._marked = self._marked, []
            work = 0.0
            for index, sink in enumerate(marked):
                sink.marked = False
                try:
                    sink.flush()
                except Exception:  # never let one socket stop the others' writes
                    log.exception("agent socket write failed")
                    sink.cut("write failed")
                if index & 63 == 63 and time.perf_counter() - began > SLICE_SECONDS:
                    work += time.perf_counter() - began
                    # the sinks not written yet stay marked: what they get meanwhile
                    # goes out with this round
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    began = time.perf_counter()
            work += time.perf_counter() - began
            if work > COALESCE_AFTER_SECONDS:
                with trio.CancelScope(shield=True):
                    await trio.sleep(min(work * COALESCE_FACTOR, COALESCE_MAX_SECONDS))


def _deliver(item: _Broadcast) -> None:
    """Queue ``item``'s frames on each socket of its audience (one shared entry for the
    directly written ones), then cut those that could not take them."""
    frames = item.frames
    size = sum(map(len, frames))
    framed: _Entry | None = None
    plain: list[_Entry] | None = None
    refused: list[SocketSink] = []
    serial = item.serial
    for sink in item.audience.sinks():
        if sink.since >= serial:
            continue  # it began to follow after the broadcast was made
        if sink.framed:
            if framed is None:
                framed = (b"".join(map(text_frame, frames)) if len(frames) > 1
                          else text_frame(frames[0]), len(frames), size)
            if not sink.put(framed):
                refused.append(sink)
        else:
            if plain is None:
                plain = [(frame, 1, len(frame)) for frame in frames]
            for entry in plain:
                if not sink.put(entry):
                    refused.append(sink)
                    break
    for sink in refused:
        item.audience.refused(sink)


_loops: weakref.WeakKeyDictionary[Any, FlushLoop] = weakref.WeakKeyDictionary()


def instance_flush_loop(owner: Any) -> FlushLoop:
    """The one flush loop of ``owner`` (the instance's livechat domain), made on first use
    (its task starts with the first frame to write)."""
    loop = _loops.get(owner)
    if loop is None:
        loop = _loops[owner] = FlushLoop()
    return loop


class SocketSink:
    """The outbound queue of one websocket; see the module docstring.

    The session offers frames (:meth:`offer`, never waits). Once a writer is attached
    (:meth:`attach_writer`) they are written by the flush loop (:meth:`flush`) or by the
    socket's writer task (:meth:`wait_owed` then :meth:`send_owed`); without one, a reader
    takes them (:meth:`next_frames`, :meth:`take_nowait`). :meth:`release` gives back what
    is left when the socket closes. ``scope`` is cancelled by :meth:`cut`.

    Each queued entry is ``(data, frames, size)``: for a directly written socket
    (:attr:`framed`) ``data`` is websocket frames ready for the wire (a broadcast's entry is
    the same object on every socket), else one frame's JSON; ``size`` is its JSON bytes,
    which the bounds count.
    """

    __slots__ = ("_closed", "_counters", "_finishing", "_flushed", "_loop", "_pending",
                 "_room", "_settles", "_wire", "_work", "_writing", "budget", "bytes",
                 "capacity", "cut_reason", "framed", "frames", "going_away", "marked",
                 "max_bytes", "nursery", "scope", "since")
    # one per socket: no instance dict

    def __init__(self, capacity: int, *, max_bytes: int = MAX_QUEUED_BYTES,
                 budget: QueueBudget | None = None) -> None:
        self._pending: list[_Entry] = []
        """Entries not written yet, oldest first (a list: an empty deque costs 600 bytes
        more, per socket, and a round takes them all at once)."""
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.budget = budget if budget is not None else QueueBudget()
        self.frames = 0
        self.bytes = 0
        self.scope = trio.CancelScope()
        self.cut_reason: str | None = None
        self.going_away = False
        self.marked = False
        """Whether the flush loop will write this sink's frames in its next round."""
        self.framed = False
        """Whether queued entries are websocket frames (the flush loop writes them)."""
        self.since = -1
        """The broadcasts it takes are those its loop made after this count (:meth:`follow`)."""
        self._room: trio.Event | None = None
        self._work: trio.Event | None = None
        """Set for the writer task when it has something to send (:meth:`wait_owed`)."""
        self._flushed: trio.Event | None = None
        """Set when the flush loop has written this sink (:meth:`send_owed` waits)."""
        self._closed = False
        self._wire: WireWriter | None = None
        self._loop: FlushLoop | None = None
        self._settles: FlushLoop | None = None
        """The loop whose waiting broadcasts are settled before this sink's own frames."""
        self._counters: WriteCounters | None = None
        self._finishing = False
        self.nursery: trio.Nursery | None = None
        """Where a writer task is started when bytes are owed and no task waits for them
        (:meth:`wait_owed`): an idle socket then needs no writer task at all."""
        self._writing = False

    def attach_writer(self, wire: WireWriter, loop: FlushLoop | None = None,
                      counters: WriteCounters | None = None) -> None:
        """Write the frames through ``wire``: from ``loop`` when the wire allows direct
        writes, else from the socket's writer task. Writes are counted in ``counters``."""
        self._wire = wire
        self._loop = loop if wire.direct else None
        self._counters = counters
        if loop is not None:
            self._settles = loop
        if self._loop is not None and not self.framed:
            self.framed = True
            self._pending[:] = [(text_frame(data), count, size)
                                for data, count, size in self._pending]
        if self._pending and self._loop is not None:
            self._loop.mark(self)

    def follow(self, loop: FlushLoop) -> None:
        """Take ``loop``'s broadcasts made from now on (the socket directory's loop) and
        settle those waiting before this sink's own frames and reads, so that its frames
        stay in the order offered."""
        self._settles = loop
        self.since = loop._followed_at = loop.serial

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False when the client is too far behind (frames or bytes)."""
        self._settle_before()  # the broadcasts offered before this frame go first
        return self.put((text_frame(frame) if self.framed else frame, 1, len(frame)))

    def put(self, entry: _Entry) -> bool:
        """Queue an entry (``(data, frames, size)`` as :attr:`framed` says, see the class
        docstring) as it is; False when the client is too far behind. For the flush loop."""
        count, size = entry[1], entry[2]
        frames = self.frames
        if frames + count > self.capacity or (
                self.bytes + size > self.max_bytes and (frames > 0 or count > 1)):
            return False  # one frame larger than the bound is taken on an empty queue
        budget = self.budget
        if budget.used + size > budget.limit:
            return False
        if self._closed:
            return True  # closing anyway
        budget.used += size
        self._pending.append(entry)
        self.frames = frames + count
        self.bytes += size
        loop = self._loop
        if loop is not None:
            if not self.marked and not self._owed():  # else written once the owed are
                loop.mark(self)
        elif self._work is not None:
            self._work.set()
        return True

    def offer_json(self, frame: dict[str, Any]) -> None:
        """Queue a frame built here; cut the socket if it does not fit."""
        if not self.offer(msgspec.json.encode(frame)):
            self.cut("too many frames queued")

    def cut(self, reason: str) -> None:
        """Close the connection because the client cannot keep up."""
        self.cut_reason = reason
        self.scope.cancel()

    def flush(self) -> None:
        """Write the queued frames now, without waiting (only the flush loop calls it);
        what the kernel does not take is owed, and the writer task told
        (:meth:`wait_owed`)."""
        wire = self._wire
        if wire is None:
            return
        try:
            if wire.owed or self._finishing or self._closed:
                return  # the writer task sends what is pending first
            while self._pending:
                data, count = self._take_framed(MAX_BATCH_BYTES)
                self._count(count)
                if not wire.write_framed_now(data, count):
                    return
        finally:
            if self._flushed is not None:
                self._flushed.set()
            if wire.owed:
                if self._work is not None:
                    self._work.set()
                elif self.nursery is not None and not self._writing:
                    self._start_writer(self.nursery)

    async def wait_owed(self) -> None:
        """Wait until the writer task has something to send: bytes the flush loop could
        not write, or (without a flush loop) queued frames."""
        while not (self._owed() if self._loop is not None else self._queued()):
            self._work = trio.Event()
            await self._work.wait()
        self._work = None

    async def send_owed(self) -> None:
        """Carry on with what :meth:`wait_owed` waited for (nothing if there is nothing):
        the bytes the flush loop could not write (waiting for the socket to take them), or
        one batch of frames on the public path; queued frames are then written by the loop
        again."""
        wire = self._wire
        assert wire is not None, "attach_writer first"
        loop = self._loop
        if loop is None:
            if self._queued():
                frames = self._take(MAX_BATCH_BYTES)
                self._count(len(frames))
                await wire.write(frames)
            return
        if not wire.owed:
            return
        await wire.send_owed()
        self._flushed = trio.Event()
        loop.mark(self)  # starts the loop's task if no frame did yet
        if loop.running:
            await self._flushed.wait()
        self._flushed = None

    async def finish(self) -> None:
        """Stop writing: the frames still queued are not written. Bytes pending on the
        connection (maybe part of a frame) go out before its close frame: the connection
        keeps them in order, so nothing is waited for here."""
        self._finishing = True
        await trio.lowlevel.checkpoint()

    def write_owed_in(self, nursery: trio.Nursery) -> None:
        """Start a writer task in ``nursery`` whenever bytes are owed and no task waits for
        them (at once if some are owed already: a frame offered before the socket's
        nursery existed may have found the kernel's buffer full)."""
        self.nursery = nursery
        if self._owed() and not self._writing and self._work is None:
            self._start_writer(nursery)

    @property
    def direct(self) -> bool:
        """Whether the flush loop writes this socket (a writer task is needed only for
        what the kernel does not take)."""
        return self._loop is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._closed

    def _start_writer(self, nursery: trio.Nursery) -> None:
        self._writing = True
        try:
            nursery.start_soon(self._write_owed)
        except RuntimeError:  # the socket's handler is ending: finish() completes a frame
            self._writing = False

    async def _write_owed(self) -> None:
        try:
            while self._owed() and not self._closed:
                await self.send_owed()
        finally:
            self._writing = False

    def _owed(self) -> bool:
        wire = self._wire
        return wire is not None and bool(wire.owed)

    def _queued(self) -> bool:
        """Whether frames are queued, once the broadcasts offered before now are."""
        self._settle_before()
        return bool(self._pending)

    def _settle_before(self) -> None:
        """Offer the broadcasts waiting in the followed loop (made before now) first."""
        settles = self._settles
        if settles is not None and settles._broadcasts:
            settles.settle()

    async def next_frame(self) -> bytes:
        """The oldest queued frame, waiting for one; its room is free again."""
        return (await self.next_frames(1))[0]

    async def next_frames(self, max_bytes: int = MAX_BATCH_BYTES) -> list[bytes]:
        """The oldest queued frame, waiting for one, and those queued behind it (up to
        ``max_bytes`` in all) without waiting: one batch for one write."""
        while not self._queued():
            self._work = trio.Event()
            await self._work.wait()
        self._work = None
        return self._take(max_bytes)

    def take_nowait(self) -> bytes | None:
        """The oldest queued frame, or None when none is queued (its room is free)."""
        if not self._queued():
            return None
        return self._take(1)[0]

    async def wait_room(self) -> None:
        """Wait until at most half the frames and bytes allowed are queued."""
        while not self._has_room():
            self._room = trio.Event()
            await self._room.wait()

    def release(self) -> None:
        """Stop queueing and give back the bytes of the frames never sent (idempotent)."""
        self._closed = True
        pending = self._pending
        for _, count, size in pending:
            self.frames -= count
            self.bytes -= size
            self.budget.give_back(size)
        pending.clear()

    def _take(self, max_bytes: int) -> list[bytes]:
        """At least one queued entry's data, and those behind it up to ``max_bytes`` of
        JSON in all."""
        pending = self._pending
        if self.bytes <= max_bytes:
            taken = pending[:]
            pending.clear()
        else:
            end, size = 1, pending[0][2]
            while end < len(pending) and size + pending[end][2] <= max_bytes:
                size += pending[end][2]
                end += 1
            taken = pending[:end]
            del pending[:end]
        self._taken(sum(entry[1] for entry in taken), sum(entry[2] for entry in taken))
        return [entry[0] for entry in taken]

    def _take_framed(self, max_bytes: int) -> tuple[bytes, int]:
        """What :meth:`_take` takes, as one run of websocket frames and how many."""
        pending = self._pending
        if len(pending) == 1:
            data, count, size = pending.pop()
            self._taken(count, size)
            return data, count
        before = self.frames
        chunks = self._take(max_bytes)
        return b"".join(chunks), before - self.frames

    def _taken(self, count: int, size: int) -> None:
        self.frames -= count
        self.bytes -= size
        self.budget.used -= size
        if self._room is not None and self._has_room():
            self._room.set()

    def _count(self, frames: int) -> None:
        counters = self._counters
        if counters is not None:
            counters.ws_writes += 1
            counters.ws_frames_sent += frames

    def _has_room(self) -> bool:
        return self.frames <= self.capacity // 2 and self.bytes <= self.max_bytes // 2
