"""Ordered shutdown: reverse start order, per-child timeout, then cancellation."""

from __future__ import annotations

import pytest
import trio
from runtime_helpers import Journal, echo_child, stubborn_child

from lcx.runtime import Supervisor


async def test_shutdown_stops_children_in_reverse_start_order(nursery: trio.Nursery) -> None:
    """request_stop stops c, then b, then a, and run returns."""
    journal = Journal()
    sup = Supervisor("s", [echo_child(n, journal) for n in "abc"])
    await nursery.start(sup.run)
    sup.request_stop()
    await trio.testing.wait_all_tasks_blocked()
    assert not sup.running
    assert [w for w in journal.names() if w.startswith("stop")] == ["stop c", "stop b", "stop a"]


async def test_child_that_ignores_cancellation_delays_the_next_one(
        autojump_clock: trio.testing.MockClock) -> None:
    """A child past its shutdown timeout is cancelled; while it lingers (shielded) the
    supervisor waits for it before stopping the child started before it."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("first", journal),
                           stubborn_child("slow", journal, linger=7, shutdown_timeout=3),
                           echo_child("last", journal)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        begun = trio.current_time()
        sup.request_stop()
    stops = [w for w in journal.names() if not w.startswith("start")]
    assert stops == ["stop last", "stopping slow", "cancelled slow", "stopped slow",
                     "stop first"]
    assert journal.times("cancelled slow")[0] - begun == pytest.approx(3)
    assert journal.times("stop first")[0] - begun == pytest.approx(10)


async def test_message_in_progress_finishes_before_a_graceful_stop(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """A graceful stop lets the current message finish and answers its ask."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("a", journal, shutdown_timeout=10)])
    await nursery.start(sup.run)
    ref = sup._specs[0].ref
    assert ref is not None
    answers: list[object] = []

    async def asker() -> None:
        answers.append(await ref.ask(("sleep", 4), timeout=20))

    nursery.start_soon(asker)
    await trio.testing.wait_all_tasks_blocked()
    sup.request_stop()
    await trio.sleep(5)
    assert answers == ["slept"]
    assert "stop a" in journal.names()


async def test_stop_before_start_returns_promptly() -> None:
    """A supervisor asked to stop before it runs starts nothing and returns."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("a", journal)])
    sup.request_stop()
    with trio.fail_after(1):
        await sup.run()
    assert journal.names() == []
