"""An actor waits on its mailbox itself: no cancel scope per wait, the same semantics.

A waiting reader gets the next envelope handed over (it takes no room, as with a memory
channel's waiting receiver), wakes at its idle deadline, on a stop, or with EndOfChannel
when the mailbox closes; a cancelled wait loses nothing; the deadline keeper holds about
one entry per waiting mailbox however many messages went through.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from lcx.runtime import Actor, KeyedSupervisor, Mailbox
from lcx.runtime.mailbox import Envelope, reader_deadlines


async def test_a_waiting_reader_gets_the_envelope_handed_over() -> None:
    mailbox = Mailbox(1)
    got: list[Envelope | None] = []

    async def read() -> None:
        got.append(await mailbox.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.put_nowait(Envelope("first"))
        mailbox.put_nowait(Envelope("second"))  # room: the first never took any
    assert [e.message for e in got if e is not None] == ["first"]
    assert mailbox.depth == 1
    taken = mailbox.take()
    assert taken is not None
    assert taken.message == "second"


async def test_the_wait_ends_at_its_deadline_or_when_interrupted(
        autojump_clock: trio.testing.MockClock) -> None:
    mailbox = Mailbox(4)
    start = trio.current_time()
    assert await mailbox.wait(start + 3) is None
    assert trio.current_time() - start == pytest.approx(3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.wait, math.inf)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.interrupt()
    assert trio.current_time() - start == pytest.approx(3)


async def test_a_closed_mailbox_ends_the_wait_and_a_cancelled_one_loses_nothing() -> None:
    mailbox = Mailbox(4)
    with trio.move_on_after(0.01):
        await mailbox.wait()
    mailbox.put_nowait(Envelope("kept"))  # nobody waits any more: it is queued
    taken = mailbox.take()
    assert taken is not None
    assert taken.message == "kept"
    async with trio.open_nursery() as nursery:
        async def read() -> None:
            with pytest.raises(trio.EndOfChannel):
                await mailbox.wait()
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()


class Echo(Actor):
    """Answers each message with itself."""

    async def receive(self, message: object) -> object:
        return message


async def test_an_actor_passivates_at_its_idle_deadline_after_many_messages(
        autojump_clock: trio.testing.MockClock) -> None:
    async def activate(key: str) -> Actor:
        return Echo()

    sup = KeyedSupervisor("echo", activate, idle_seconds=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for n in range(300):  # 30 s of messages, one every 0.1 s
            assert await sup.ask("k", n) == n
            await trio.sleep(0.1)
        assert len(reader_deadlines()) <= 2  # about one entry per waiting mailbox
        await trio.sleep(4.9)
        assert sup.get("k") is not None
        await trio.sleep(0.2)
        assert sup.get("k") is None  # passivated at 5 s without a message
        sup.request_stop()


async def test_senders_waiting_for_room_move_in_in_turn_or_fail_on_close() -> None:
    from lcx.errors import MailboxClosed

    mailbox = Mailbox(1)
    mailbox.put_nowait(Envelope(0))
    failed: list[int] = []

    async def send(n: int) -> None:
        try:
            await mailbox.put(Envelope(n))
        except MailboxClosed:
            failed.append(n)

    async with trio.open_nursery() as nursery:
        for n in (1, 2, 3):
            nursery.start_soon(send, n)
            await trio.testing.wait_all_tasks_blocked()
        assert not mailbox.offer(Envelope("jumps"))  # full while senders wait
        taken = [mailbox.take(), mailbox.take()]
        assert [e.message for e in taken if e is not None] == [0, 1]
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert failed == [3]  # 2 had moved in (and was dropped by the close), 3 still waited
    with pytest.raises(trio.EndOfChannel):
        mailbox.take()
