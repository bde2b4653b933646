"""Broadcasts wait in the flush loop and reach each socket at its next round: the frames
of several broadcasts (and a socket's own frames between them) arrive in the order they
were offered, in one write per socket; a broadcast's frames are framed once, the same
bytes queued on every socket; a socket that follows the loop after a broadcast was made
does not get it; and the slow-consumer bound still holds in bytes and frames."""

from __future__ import annotations

from collections.abc import Iterable

import trio
import trio.testing

from lcx.api.socket_sink import MAX_QUEUED_BYTES, Audience, FlushLoop, QueueBudget, SocketSink
from lcx.api.ws_wire import WireWriter, text_frame


class FakeWire(WireWriter):
    """A direct writer that records each write (as one bytes object) instead of writing;
    ``owed`` says the kernel took nothing yet (a client that does not read)."""

    direct = True  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(fast=False)
        self.written: list[bytes] = []
        self.stuck = False

    @property
    def owed(self) -> bool:
        return self.stuck

    def write_framed_now(self, data: bytes, frames: int) -> bool:
        self.written.append(data)
        self.writes += 1
        self.frames += frames
        return True


class Sinks:
    """An audience of fixed sinks (as the socket directory's agents are)."""

    def __init__(self, sinks: list[SocketSink]) -> None:
        self.members = sinks
        self.cut: list[SocketSink] = []

    def same(self, other: Audience) -> bool:
        return other is self

    def sinks(self) -> Iterable[SocketSink]:
        return self.members

    def refused(self, sink: SocketSink) -> None:
        self.cut.append(sink)
        sink.cut("too many frames queued")


def _sink(loop: FlushLoop, *, capacity: int = 1000, max_bytes: int = MAX_QUEUED_BYTES,
          budget: QueueBudget | None = None) -> tuple[SocketSink, FakeWire]:
    sink = SocketSink(capacity, max_bytes=max_bytes, budget=budget)
    wire = FakeWire()
    sink.attach_writer(wire, loop)
    sink.follow(loop)
    return sink, wire


async def test_frames_queued_before_a_round_go_in_order_in_one_write() -> None:
    """Two broadcasts, a socket's own frame, a third broadcast: the first socket gets all
    four in that order, the other the three broadcasts; one write each."""
    loop = FlushLoop()
    (first, first_wire), (second, second_wire) = _sink(loop), _sink(loop)
    audience = Sinks([first, second])
    loop.broadcast(audience, b'{"n":1}')
    loop.broadcast(audience, b'{"n":2}')
    assert first.frames == 0  # the sender did not wait for the sockets
    assert loop.waiting
    assert first.offer(b'{"own":1}')  # settles the broadcasts before it first
    loop.broadcast(audience, b'{"n":3}')
    await trio.testing.wait_all_tasks_blocked()
    assert first_wire.written == [b"".join(text_frame(f) for f in (
        b'{"n":1}', b'{"n":2}', b'{"own":1}', b'{"n":3}'))]
    assert second_wire.written == [b"".join(text_frame(f) for f in (
        b'{"n":1}', b'{"n":2}', b'{"n":3}'))]
    assert (first_wire.frames, second_wire.frames) == (4, 3)
    assert loop.settled == 2  # the first two joined: one entry for both sockets
    assert first.frames == second.frames == 0
    assert first.budget.used == 0


async def test_a_broadcast_is_framed_once_for_every_socket() -> None:
    """Three sockets, ten broadcasts to them in one round: each socket queues the same
    bytes object (the ten frames joined), written once."""
    loop = FlushLoop()
    pairs = [_sink(loop) for _ in range(3)]
    audience = Sinks([sink for sink, _ in pairs])
    frames = [b'{"request":%d}' % n for n in range(10)]
    for frame in frames:
        loop.broadcast(audience, frame)
    loop.settle()
    entries = [sink._pending[0] for sink, _ in pairs]
    assert all(entry is entries[0] for entry in entries)
    assert entries[0] == (b"".join(map(text_frame, frames)), 10, sum(map(len, frames)))
    await trio.testing.wait_all_tasks_blocked()
    assert [wire.written for _, wire in pairs] == [[entries[0][0]]] * 3


async def test_a_socket_that_follows_later_does_not_get_earlier_broadcasts() -> None:
    """A socket attached after a broadcast was made (before the round) gets only the
    broadcasts made after it (a new agent is offered what waits by its queue instead)."""
    loop = FlushLoop()
    early, early_wire = _sink(loop)
    late = SocketSink(1000)
    late_wire = FakeWire()
    late.attach_writer(late_wire, loop)
    audience = Sinks([early, late])
    loop.broadcast(audience, b'{"n":1}')
    late.follow(loop)
    loop.broadcast(audience, b'{"n":2}')
    await trio.testing.wait_all_tasks_blocked()
    assert early_wire.written == [text_frame(b'{"n":1}') + text_frame(b'{"n":2}')]
    assert late_wire.written == [text_frame(b'{"n":2}')]


async def test_a_socket_that_does_not_read_is_cut_at_its_byte_bound() -> None:
    """While nothing can be written (the kernel holds the client's unread bytes), the
    rounds' broadcasts pile up on the socket until they would pass 1,000 bytes: it is
    cut; a reading socket in the same audience gets every frame and is not."""
    loop = FlushLoop()
    slow, slow_wire = _sink(loop, max_bytes=1000)
    fast, fast_wire = _sink(loop, max_bytes=1000)
    slow_wire.stuck = True
    audience = Sinks([slow, fast])
    frame = b'{"pad":"' + b"x" * 290 + b'"}'
    for _ in range(4):  # one per round: the first three fit (900 bytes), not the fourth
        loop.broadcast(audience, frame)
        await trio.testing.wait_all_tasks_blocked()
    assert audience.cut == [slow]
    assert slow.cut_reason == "too many frames queued"
    assert (slow.frames, slow.bytes) == (3, 3 * len(frame))
    assert slow_wire.written == []
    assert fast.cut_reason is None
    assert fast_wire.frames == 4


async def test_joined_broadcasts_past_the_bound_are_refused_even_on_an_empty_queue() -> None:
    """Only a single frame may exceed the byte bound (on an empty queue); four frames of
    a round joined into 1,200 bytes do not fit a 1,000-byte socket, nor eleven frames one
    of ten frames."""
    loop = FlushLoop()
    small_bytes, _ = _sink(loop, max_bytes=1000)
    few_frames, _ = _sink(loop, capacity=10)
    audience = Sinks([small_bytes, few_frames])
    for _ in range(4):
        loop.broadcast(audience, b"x" * 300)
    for _ in range(7):
        loop.broadcast(audience, b"y")
    loop.settle()
    assert audience.cut == [small_bytes, few_frames]
    alone, _ = _sink(loop, max_bytes=1000)
    assert alone.offer(b"z" * 5000)


async def test_the_instance_budget_bounds_broadcasts_too() -> None:
    """Two sockets sharing a 1,000-byte budget: a 600-byte broadcast fits on one only."""
    loop = FlushLoop()
    budget = QueueBudget(1000)
    first, first_wire = _sink(loop, budget=budget)
    second, second_wire = _sink(loop, budget=budget)
    first_wire.stuck = second_wire.stuck = True
    audience = Sinks([first, second])
    loop.broadcast(audience, b"b" * 600)
    loop.settle()
    assert audience.cut == [second]
    assert budget.used == 600
    first.release()
    assert budget.used == 0
