"""The timer service: one task fires many keyed deadlines, in order, once each; arming a
key again replaces its timer and a cancelled one never fires."""

from __future__ import annotations

import trio
import trio.testing

from lcx.runtime import TimerService


async def started(nursery: trio.Nursery) -> TimerService:
    timers = TimerService()
    await nursery.start(timers.run)
    return timers


async def test_deadlines_fire_in_order_once_each(nursery: trio.Nursery,
                                                 autojump_clock: trio.testing.MockClock
                                                 ) -> None:
    """Armed out of order, they fire in deadline order, each exactly once, at its time."""
    timers = await started(nursery)
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    for key, delay in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        timers.arm(key, delay, lambda key=key: fired.append((key, trio.current_time())))
    assert len(timers) == 3
    await trio.sleep(60)
    assert [(key, round(at - start)) for key, at in fired] == [("a", 10), ("b", 20), ("c", 30)]
    assert len(timers) == 0
    assert timers.fired == 3


async def test_arming_again_replaces_and_cancel_forgets(nursery: trio.Nursery,
                                                        autojump_clock: trio.testing.MockClock
                                                        ) -> None:
    """A key has at most one timer: the last one armed; a cancelled timer never fires."""
    timers = await started(nursery)
    fired: list[str] = []
    timers.arm("k", 10.0, lambda: fired.append("first"))
    timers.arm("k", 5.0, lambda: fired.append("second"))  # earlier than the first
    timers.arm("j", 1.0, lambda: fired.append("j"))
    timers.cancel("j")
    assert not timers.armed("j")
    await trio.sleep(4)
    assert fired == []
    assert timers.armed("k")
    await trio.sleep(20)
    assert fired == ["second"]


async def test_an_earlier_deadline_armed_while_waiting_wakes_the_service(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """The service waits for its earliest deadline; a new, earlier one is not late."""
    timers = await started(nursery)
    fired: list[float] = []
    start = trio.current_time()
    timers.arm("late", 100.0, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(1)
    timers.arm("soon", 2.0, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(10)
    assert [round(at) for at in fired] == [3]


async def test_many_keys_and_a_failing_callback(nursery: trio.Nursery,
                                                autojump_clock: trio.testing.MockClock
                                                ) -> None:
    """10,000 timers replaced many times fire once each; a callback that raises is logged
    and does not stop the others."""
    timers = await started(nursery)
    fired: list[int] = []
    for round_no in range(5):
        for index in range(10_000):
            timers.arm(f"k{index}", 10.0 + index / 1000 + round_no,
                       lambda index=index: fired.append(index))

    def broken() -> None:
        raise RuntimeError("callback bug")

    timers.arm("broken", 1.0, broken)
    await trio.sleep(30)
    assert sorted(fired) == list(range(10_000))
    assert len(timers) == 0


async def test_pushing_a_deadline_later_keeps_one_heap_entry(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """Re-armed later a thousand times (an inactivity limit moved by every message), a key
    adds no heap entry, does not fire at the old deadline and fires once at the last one."""
    timers = await started(nursery)
    fired: list[float] = []
    start = trio.current_time()
    timers.arm("k", 10.0, lambda: fired.append(-1.0))
    for step in range(1000):
        timers.arm("k", 10.0 + step / 100, lambda: fired.append(trio.current_time() - start))
    assert len(timers._heap) == 1
    await trio.sleep(25)
    assert [round(at, 2) for at in fired] == [19.99]
    assert timers.fired == 1
