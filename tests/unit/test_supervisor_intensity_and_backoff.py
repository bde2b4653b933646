"""Restart intensity escalating to the parent, and exponential restart backoff."""

from __future__ import annotations

import itertools

import pytest
import trio
from runtime_helpers import FailingAtStart, Journal, echo_child, factory_of

from lcx.errors import RestartIntensityExceeded
from lcx.runtime import Backoff, Intensity, Supervisor, actor_child


async def test_crash_loop_follows_exponential_backoff(
        autojump_clock: trio.testing.MockClock) -> None:
    """Restart n waits initial * 2**(n-1), capped; the supervisor then gives up."""
    journal = Journal()
    sup = Supervisor("s", [actor_child("f", factory_of(FailingAtStart, journal))],
                     intensity=Intensity(max_restarts=5, period_seconds=100),
                     backoff=Backoff(initial_seconds=1, multiplier=2, maximum_seconds=6))
    with pytest.raises(RestartIntensityExceeded):
        await sup.run()
    attempts = journal.times("attempt")
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert gaps == [1, 2, 4, 6, 6]


async def test_intensity_exceeded_escalates_to_the_parent(
        autojump_clock: trio.testing.MockClock) -> None:
    """More than max_restarts in period_seconds makes the supervisor raise to its caller,
    after stopping its other children."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("ok", journal),
                           actor_child("f", factory_of(FailingAtStart, journal))],
                     intensity=Intensity(max_restarts=2, period_seconds=10),
                     backoff=Backoff(initial_seconds=0.5))
    with pytest.raises(RestartIntensityExceeded, match="more than 2 restarts") as info:
        await sup.run()
    assert journal.names().count("attempt") == 3
    assert "stop ok" in journal.names()
    assert info.value.__cause__ is not None


async def test_restarts_spread_over_time_stay_within_intensity(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """Crashes further apart than the period never exhaust the restart budget."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("a", journal)],
                     intensity=Intensity(max_restarts=1, period_seconds=5),
                     backoff=Backoff(initial_seconds=0))
    await nursery.start(sup.run)
    ref = sup._specs[0].ref
    assert ref is not None
    for _ in range(4):
        ref.tell("crash")
        await trio.sleep(6)
    assert sup.running
    assert sup.which_children()[0].restarts == 4
    sup.request_stop()


async def test_backoff_resets_after_a_long_healthy_run(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """A child that ran longer than reset_after_seconds restarts after the initial delay."""
    journal = Journal()
    sup = Supervisor("s", [echo_child("a", journal)],
                     intensity=Intensity(max_restarts=10, period_seconds=1000),
                     backoff=Backoff(initial_seconds=1, reset_after_seconds=50))
    await nursery.start(sup.run)
    ref = sup._specs[0].ref
    assert ref is not None
    ref.tell("crash")
    await ref.ask("seen")
    ref.tell("crash")
    await ref.ask("seen")
    await trio.sleep(60)
    ref.tell("crash")
    await ref.ask("seen")
    starts = journal.times("start a")
    assert [round(b - a) for a, b in itertools.pairwise(starts)] == [1, 2, 61]
    sup.request_stop()


def test_backoff_delay_is_capped_and_jittered_downwards() -> None:
    """Backoff.delay grows geometrically, stops at the cap, and jitter only shortens it."""
    plain = Backoff(initial_seconds=0.1, multiplier=2, maximum_seconds=1)
    assert [plain.delay(n) for n in range(6)] == [0, 0.1, 0.2, 0.4, 0.8, 1]
    jittered = Backoff(initial_seconds=1, maximum_seconds=1, jitter=0.5)
    assert all(0.5 <= jittered.delay(3) <= 1 for _ in range(100))
