"""OTP strategies (one_for_one, one_for_all, rest_for_one) and restart types."""

from __future__ import annotations

import pytest
import trio
from runtime_helpers import Journal, echo_child

from lcx.runtime import ActorRef, Backoff, Restart, Strategy, Supervisor

NO_BACKOFF = Backoff(initial_seconds=0.0)


async def started(nursery: trio.Nursery, supervisor: Supervisor) -> Supervisor:
    await nursery.start(supervisor.run)
    return supervisor


def ref(supervisor: Supervisor, child_id: str) -> ActorRef:
    spec = next(s for s in supervisor._specs if s.id == child_id)
    assert spec.ref is not None
    return spec.ref


def starts(journal: Journal) -> list[str]:
    return [w for w in journal.names() if w.startswith(("start", "stop"))]


async def crash_and_settle(supervisor: Supervisor, child_id: str) -> None:
    ref(supervisor, child_id).tell("crash")
    await trio.testing.wait_all_tasks_blocked()


@pytest.fixture
def journal() -> Journal:
    return Journal()


def three(journal: Journal, strategy: Strategy) -> Supervisor:
    return Supervisor("s", [echo_child(n, journal) for n in "abc"], strategy=strategy,
                      backoff=NO_BACKOFF)


async def test_children_start_in_order(nursery: trio.Nursery, journal: Journal) -> None:
    """Children start in the order of their specs."""
    await started(nursery, three(journal, Strategy.ONE_FOR_ONE))
    assert starts(journal) == ["start a", "start b", "start c"]


async def test_one_for_one_restarts_only_the_crashed_child(
        nursery: trio.Nursery, journal: Journal) -> None:
    """one_for_one: only the crashed child is restarted; its siblings keep running."""
    sup = await started(nursery, three(journal, Strategy.ONE_FOR_ONE))
    await crash_and_settle(sup, "b")
    assert starts(journal)[3:] == ["start b"]
    assert [c.restarts for c in sup.which_children()] == [0, 1, 0]
    assert all(c.running for c in sup.which_children())


async def test_one_for_all_restarts_every_child(nursery: trio.Nursery,
                                                journal: Journal) -> None:
    """one_for_all: the others stop in reverse order, then all start again in order."""
    sup = await started(nursery, three(journal, Strategy.ONE_FOR_ALL))
    await crash_and_settle(sup, "b")
    assert starts(journal)[3:] == ["stop c", "stop a", "start a", "start b", "start c"]
    assert all(c.running for c in sup.which_children())


async def test_rest_for_one_restarts_the_child_and_those_after_it(
        nursery: trio.Nursery, journal: Journal) -> None:
    """rest_for_one: children started after the crashed one stop, then restart in order."""
    sup = await started(nursery, three(journal, Strategy.REST_FOR_ONE))
    await crash_and_settle(sup, "b")
    assert starts(journal)[3:] == ["stop c", "start b", "start c"]


async def test_rest_for_one_with_the_last_child_restarts_only_it(
        nursery: trio.Nursery, journal: Journal) -> None:
    """rest_for_one on the last child behaves like one_for_one."""
    sup = await started(nursery, three(journal, Strategy.REST_FOR_ONE))
    await crash_and_settle(sup, "c")
    assert starts(journal)[3:] == ["start c"]


@pytest.mark.parametrize(("restart", "after_crash", "after_normal_exit"), [
    (Restart.PERMANENT, True, True),
    (Restart.TRANSIENT, True, False),
    (Restart.TEMPORARY, False, False),
])
async def test_restart_types(nursery: trio.Nursery, journal: Journal, restart: Restart,
                             after_crash: bool, after_normal_exit: bool) -> None:
    """permanent always restarts; transient only after a crash; temporary never."""
    sup = await started(nursery, Supervisor(
        "s", [echo_child("x", journal, restart=restart),
              echo_child("y", journal, restart=restart)], backoff=NO_BACKOFF))
    await crash_and_settle(sup, "x")
    ref(sup, "y").tell("stop")
    await trio.testing.wait_all_tasks_blocked()
    assert (journal.names().count("start x") == 2) is after_crash
    assert (journal.names().count("start y") == 2) is after_normal_exit
    expected_children = {"x": after_crash, "y": after_normal_exit}
    if restart is Restart.TEMPORARY:
        assert sup.which_children() == []
    else:
        assert {c.id: c.running for c in sup.which_children()} == expected_children


async def test_temporary_siblings_are_not_restarted_by_one_for_all(
        nursery: trio.Nursery, journal: Journal) -> None:
    """one_for_all stops a temporary sibling and forgets it instead of restarting it."""
    sup = await started(nursery, Supervisor("s", [
        echo_child("a", journal), echo_child("t", journal, restart=Restart.TEMPORARY),
        echo_child("c", journal)], strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF))
    temporary = ref(sup, "t")
    await crash_and_settle(sup, "a")
    assert [c.id for c in sup.which_children()] == ["a", "c"]
    assert journal.names().count("start t") == 1
    assert not temporary.alive


async def test_start_child_adds_a_running_child(nursery: trio.Nursery,
                                                journal: Journal) -> None:
    """start_child adds a child at run time and returns once it is started."""
    sup = await started(nursery, three(journal, Strategy.ONE_FOR_ONE))
    await sup.start_child(echo_child("d", journal))
    assert await ref(sup, "d").ask(("echo", "hi")) == "hi"
    with pytest.raises(ValueError, match="already has"):
        await sup.start_child(echo_child("d", journal))


async def test_nested_supervisor_restarts_under_its_parent(
        nursery: trio.Nursery, journal: Journal, autojump_clock: trio.testing.MockClock
) -> None:
    """A child supervisor that gives up is restarted by its parent, children and all."""
    from lcx.runtime import Intensity, supervisor_child
    inner = Supervisor("inner", [echo_child("a", journal)], backoff=NO_BACKOFF,
                       intensity=Intensity(max_restarts=0, period_seconds=5))
    outer = await started(nursery, Supervisor("outer", [supervisor_child(inner)],
                                              backoff=NO_BACKOFF))
    await crash_and_settle(inner, "a")
    assert journal.names().count("start a") == 2
    assert outer.which_children()[0].restarts == 1
    assert await ref(inner, "a").ask(("echo", 1)) == 1
