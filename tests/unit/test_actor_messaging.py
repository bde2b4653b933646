"""send / tell / ask on a supervised actor: answers, errors, timeouts, full and closed mailboxes."""

from __future__ import annotations

import pytest
import trio
from runtime_helpers import Crash, Journal, echo_child

from lcx.errors import ActorStopped, AskTimeout, Conflict, MailboxClosed, MailboxFull
from lcx.runtime import ActorRef, Mailbox, Registry, Restart, Supervisor


async def start(nursery: trio.Nursery, supervisor: Supervisor) -> Supervisor:
    await nursery.start(supervisor.run)
    return supervisor


def ref_of(supervisor: Supervisor, index: int = 0) -> ActorRef:
    ref = supervisor._specs[index].ref
    assert ref is not None
    return ref


async def test_ask_returns_the_actors_answer(nursery: trio.Nursery) -> None:
    """ask delivers a message and returns what receive returned."""
    sup = await start(nursery, Supervisor("s", [echo_child("a", Journal())]))
    assert await ref_of(sup).ask(("echo", 42)) == 42
    sup.request_stop()


async def test_send_and_tell_are_processed_in_order(nursery: trio.Nursery) -> None:
    """send and tell enqueue; the actor handles messages in the order they were sent."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    ref = ref_of(sup)
    await ref.send("one")
    ref.tell("two")
    await ref.send("three")
    assert await ref.ask("seen") == 4
    assert journal.names()[1:] == ["a got one", "a got two", "a got three"]
    sup.request_stop()


async def test_ask_raises_the_actors_bug_and_the_actor_restarts(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """A bug in receive reaches the asker as the same exception; the actor restarts."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    with pytest.raises(Crash, match="a crashed"):
        await ref_of(sup).ask("crash")
    assert await ref_of(sup).ask(("echo", "back")) == "back"
    assert journal.names().count("start a") == 2
    assert sup.which_children()[0].restarts == 1
    sup.request_stop()


async def test_expected_error_is_answered_without_a_crash(nursery: trio.Nursery) -> None:
    """An LcxError raised in receive reaches the asker and does not restart the actor."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    with pytest.raises(Conflict):
        await ref_of(sup).ask("refuse")
    assert await ref_of(sup).ask("seen") == 2
    assert journal.names().count("start a") == 1
    sup.request_stop()


async def test_ask_times_out_instead_of_hanging(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """An actor that takes too long makes ask raise AskTimeout at its deadline."""
    sup = await start(nursery, Supervisor("s", [echo_child("a", Journal())]))
    begun = trio.current_time()
    with pytest.raises(AskTimeout):
        await ref_of(sup).ask(("sleep", 60), timeout=2)
    assert trio.current_time() - begun == pytest.approx(2)
    sup.request_stop()


async def test_ask_timeout_covers_waiting_for_mailbox_room(
        autojump_clock: trio.testing.MockClock) -> None:
    """With a full mailbox and nobody reading, ask still fails at its deadline."""
    ref = ActorRef("t", "idle", Mailbox(1))
    ref.tell("fill")
    with pytest.raises(AskTimeout):
        await ref.ask("more", timeout=1)


async def test_tell_raises_mailbox_full_and_enqueues_nothing() -> None:
    """tell never blocks: on a full mailbox it raises MailboxFull and the depth is unchanged."""
    ref = ActorRef("t", "idle", Mailbox(2))
    ref.tell(1)
    ref.tell(2)
    with pytest.raises(MailboxFull):
        ref.tell(3)
    assert ref.mailbox.depth == 2


async def test_send_waits_for_room(nursery: trio.Nursery,
                                   autojump_clock: trio.testing.MockClock) -> None:
    """send applies backpressure: it returns only once the actor made room."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal, mailbox_size=1)]))
    ref = ref_of(sup)
    ref.tell(("sleep", 5))
    ref.tell("queued")
    begun = trio.current_time()
    await ref.send("late")
    assert trio.current_time() - begun >= 5
    sup.request_stop()


async def test_message_to_a_stopped_actor_fails_clearly(nursery: trio.Nursery) -> None:
    """After a temporary actor stops, send, tell and ask raise ActorStopped at once."""
    sup = await start(nursery, Supervisor(
        "s", [echo_child("a", Journal(), restart=Restart.TEMPORARY)]))
    ref = ref_of(sup)
    await ref.ask("stop")
    await trio.testing.wait_all_tasks_blocked()
    assert not ref.alive
    with pytest.raises(ActorStopped):
        await ref.send("x")
    with pytest.raises(ActorStopped):
        ref.tell("x")
    with pytest.raises(MailboxClosed):
        await ref.ask("x")
    sup.request_stop()


async def test_waiting_asks_fail_when_the_actor_stops_for_good(nursery: trio.Nursery) -> None:
    """Messages still queued when an actor stops for good fail their asks (no hang)."""
    sup = await start(nursery, Supervisor(
        "s", [echo_child("a", Journal(), restart=Restart.TEMPORARY)]))
    ref = ref_of(sup)
    outcomes: list[str] = []

    async def late_ask() -> None:
        try:
            await ref.ask(("echo", 1))
            outcomes.append("answered")
        except MailboxClosed:
            outcomes.append("closed")

    ref.tell("stop")
    nursery.start_soon(late_ask)
    await trio.testing.wait_all_tasks_blocked()
    assert outcomes == ["closed"]
    sup.request_stop()


async def test_mailbox_survives_a_restart(nursery: trio.Nursery,
                                          autojump_clock: trio.testing.MockClock) -> None:
    """Messages queued behind a crashing one are handled by the restarted actor."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    ref = ref_of(sup)
    ref.tell("crash")
    ref.tell("after")
    assert await ref.ask("seen") == 2
    assert "a got after" in journal.names()
    sup.request_stop()


async def test_registry_counts_live_actors_depth_and_restarts(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """The registry snapshot reports live actors and restarts by kind."""
    registry = Registry()
    journal = Journal()
    sup = await start(nursery, Supervisor(
        "s", [echo_child("a", journal), echo_child("b", journal)], registry=registry))
    ref_of(sup).tell("crash")
    await ref_of(sup).ask("seen")
    snapshot = registry.snapshot()
    assert snapshot.actors_by_kind == {"echo": 2}
    assert snapshot.restarts_by_kind == {"echo": 1}
    assert snapshot.crashes_by_kind == {"echo": 1}
    sup.request_stop()
    await trio.testing.wait_all_tasks_blocked()
    assert registry.snapshot().actors_by_kind == {}


async def test_timers_send_after_and_replace_by_key(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """send_after delivers later; a timer with the same key replaces the earlier one."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    ref = ref_of(sup)
    await ref.ask(("timer", 10, "first", "t"))
    await ref.ask(("timer", 20, "second", "t"))
    await ref.ask(("timer", 5, "other", None))
    await trio.sleep(30)
    assert [w for w in journal.names() if "got" in w] == ["a got other", "a got second"]
    assert journal.times("a got second") == [pytest.approx(20)]
    sup.request_stop()


async def test_aligned_timers_fall_due_together_on_the_next_multiple(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """With align, a deadline is rounded up to a multiple of align on the Trio clock, so
    timers set at different moments fire at the same instant (never early)."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    ref = ref_of(sup)
    await trio.sleep((0.03 - trio.current_time()) % 1)  # to 0.03 s past a whole second
    started = trio.current_time()
    await ref.ask(("aligned timer", 10, "first", 0.5))
    await trio.sleep(0.21)
    await ref.ask(("aligned timer", 10, "second", 0.5))
    await trio.sleep(0.3)
    await ref.ask(("aligned timer", 10, "third", 0.5))  # due at started + 10.54: later
    await trio.sleep(12)
    due = started - 0.03 + 10.5
    assert journal.times("a got first") == [pytest.approx(due)]
    assert journal.times("a got second") == [pytest.approx(due)]
    assert journal.times("a got third") == [pytest.approx(due + 0.5)]
    sup.request_stop()


async def test_a_timer_dies_with_the_incarnation_that_set_it(
        autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    """A crash ends the incarnation: its timers never reach the restarted actor."""
    journal = Journal()
    sup = await start(nursery, Supervisor("s", [echo_child("a", journal)]))
    ref = ref_of(sup)
    await ref.ask(("timer", 10, "keyed", "t"))
    await ref.ask(("timer", 10, "unkeyed", None))
    ref_of(sup).tell("crash")
    await ref_of(sup).ask("seen")  # the restarted incarnation answers
    await ref.ask(("timer", 15, "after", "t"))
    await trio.sleep(30)
    assert [w for w in journal.names() if "got" in w] == ["a got after"]
    sup.request_stop()
