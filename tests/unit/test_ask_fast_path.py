"""The cheap ask: a one-shot reply slot, one deadline keeper, and a mailbox offered first.

What must not change with it: asks queue in order behind a full mailbox, a late answer
times out at the deadline (and is dropped), a cancelled asker enqueues nothing, an actor
whose mailbox is never empty still lets other tasks run.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from lcx.errors import AskTimeout
from lcx.runtime import Actor, ActorRef, KeyedSupervisor, Mailbox, Reply
from lcx.runtime.ask_deadlines import ask_deadlines


class Slow(Actor):
    """Answers each message with itself after ``delay`` seconds, noting the order."""

    def __init__(self, seen: list[object], delay: float) -> None:
        self.seen = seen
        self.delay = delay

    async def receive(self, message: object) -> object:
        await trio.sleep(self.delay)
        self.seen.append(message)
        return message


async def test_asks_behind_a_full_mailbox_are_served_in_the_order_they_came(
        autojump_clock: trio.testing.MockClock) -> None:
    """With a mailbox of 1 and ten asks at once, the actor reads them in arrival order,
    and an ask offered while others wait for room queues behind them."""
    seen: list[object] = []

    async def activate(key: str) -> Actor:
        return Slow(seen, 0.1)

    sup = KeyedSupervisor("slow", activate, mailbox_size=1, idle_seconds=None)
    answers: list[object] = []

    async def ask(n: int) -> None:
        answers.append(await sup.ask("k", n, timeout=60))

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        async with trio.open_nursery() as askers:
            for n in range(10):
                askers.start_soon(ask, n)
                await trio.testing.wait_all_tasks_blocked()
        sup.request_stop()
    assert seen == list(range(10))
    assert answers == list(range(10))


async def test_an_answer_later_than_the_timeout_fails_the_ask_and_is_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    """The deadline keeper fails the ask at its deadline; the actor's late answer goes
    nowhere and the next ask is answered normally."""
    seen: list[object] = []

    async def activate(key: str) -> Actor:
        return Slow(seen, 3.0)

    sup = KeyedSupervisor("slow", activate, idle_seconds=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        start = trio.current_time()
        with pytest.raises(AskTimeout, match=r"slow:k did not answer within 1s"):
            await sup.ask("k", "late", timeout=1)
        assert trio.current_time() - start == pytest.approx(1.0)
        assert await sup.ask("k", "next", timeout=10) == "next"
        assert seen == ["late", "next"]
        sup.request_stop()


async def test_asks_with_different_timeouts_each_time_out_at_their_own_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    """A shorter ask after a longer one wakes the keeper earlier."""
    ref = ActorRef("t", "idle", Mailbox(10))
    failed: dict[str, float] = {}

    async def ask(name: str, timeout: float) -> None:
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(name, timeout=timeout)
        failed[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "long", 10.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask, "short", 2.0)
    assert failed == {"long": pytest.approx(10.0), "short": pytest.approx(2.0)}


async def test_a_cancelled_asker_enqueues_nothing() -> None:
    """An ask made inside an already cancelled scope leaves the mailbox untouched."""
    ref = ActorRef("t", "idle", Mailbox(4))
    with trio.CancelScope() as scope:
        scope.cancel()
        await ref.ask("never", timeout=5)
    assert ref.mailbox.depth == 0


async def test_an_asker_cancelled_while_waiting_drops_the_later_answer() -> None:
    """Cancelled while it waits: the reply filled afterwards wakes nobody."""
    reply = Reply()
    with trio.move_on_after(0.01):
        await reply.wait()
    reply.resolve("late")
    assert reply.done


async def test_answered_asks_leave_the_keeper_once_their_deadline_passed(
        autojump_clock: trio.testing.MockClock) -> None:
    """The keeper holds at most the asks of the last ``timeout`` seconds."""
    seen: list[object] = []

    async def activate(key: str) -> Actor:
        return Slow(seen, 0.0)

    sup = KeyedSupervisor("fast", activate, idle_seconds=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for n in range(5):
            await sup.ask("k", n, timeout=1)
        assert len(ask_deadlines()) == 5
        await trio.sleep(2)
        assert len(ask_deadlines()) == 0
        sup.request_stop()


class Busy(Actor):
    """Counts messages and never waits while handling one."""

    def __init__(self, counted: list[int]) -> None:
        self.counted = counted

    async def receive(self, message: object) -> None:
        self.counted.append(1)


async def test_an_actor_with_a_full_mailbox_still_lets_other_tasks_run() -> None:
    """Messages taken without waiting are not taken forever without a yield."""
    counted: list[int] = []

    async def activate(key: str) -> Actor:
        return Busy(counted)

    sup = KeyedSupervisor("busy", activate, mailbox_size=1000, idle_seconds=None)
    progress: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.send("k", "first")
        ref = sup.get("k")
        assert ref is not None
        for _ in range(500):
            ref.tell("work")

        async def watcher() -> None:
            await trio.lowlevel.checkpoint()
            progress.append(len(counted))

        nursery.start_soon(watcher)
        while len(counted) < 501:
            await trio.lowlevel.checkpoint()
        sup.request_stop()
    assert progress
    assert progress[0] < 501
