"""The ask deadline keeper wakes for asks still waiting, not once per answered ask.

Answered asks leave their entries in the keeper's heap; each wake drops the answered ones
in front of the first still waiting, so a stream of asks answered in time costs about one
wake of the keeper per timeout, while a late ask still fails at its own deadline.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from lcx.errors import AskTimeout
from lcx.runtime import Actor, KeyedSupervisor
from lcx.runtime.ask_deadlines import ask_deadlines


class Echo(Actor):
    """Answers each message with itself at once, or after 10 s when it is "late"."""

    async def receive(self, message: object) -> object:
        if message == "late":
            await trio.sleep(10)
        return message


class KeeperSteps(trio.abc.Instrument):
    """Counts the steps of the deadline keeper's task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == "lcx.ask_deadlines":
            self.steps += 1


async def test_answered_asks_cost_one_wake_per_timeout_not_one_per_ask(
        autojump_clock: trio.testing.MockClock) -> None:
    async def activate(key: str) -> Actor:
        return Echo()

    keeper = KeeperSteps()
    trio.lowlevel.add_instrument(keeper)
    sup = KeyedSupervisor("echo", activate, idle_seconds=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for n in range(200):  # 200 asks over 20 s, each answered at once, timeout 1 s
            assert await sup.ask("k", n, timeout=1) == n
            await trio.sleep(0.1)
        await trio.sleep(2)
        assert len(ask_deadlines()) == 0  # nothing answered is kept past its deadline
        sup.request_stop()
    trio.lowlevel.remove_instrument(keeper)
    assert keeper.steps <= 25  # about one wake per second of asks; it was 200


async def test_a_late_ask_among_answered_ones_fails_at_its_own_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    async def activate(key: str) -> Actor:
        return Echo()

    sup = KeyedSupervisor("echo", activate, idle_seconds=None)
    failed_after: list[float] = []

    async def late() -> None:
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await sup.ask("slow", "late", timeout=3)
        failed_after.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for n in range(10):
            assert await sup.ask("k", n, timeout=1) == n
        nursery.start_soon(late)
        for n in range(30):
            assert await sup.ask("k", n, timeout=1) == n
            await trio.sleep(0.2)
        sup.request_stop()
    assert failed_after == [pytest.approx(3.0)]
