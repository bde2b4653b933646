"""Virtual actors: activation on first message, races, passivation, reactivation, isolation."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
from runtime_helpers import Crash, Echo, Journal

from lcx.errors import MailboxClosed
from lcx.runtime import Actor, Backoff, Intensity, KeyedSupervisor, Registry


class Counter(Actor):
    """A virtual actor whose state (a count) is loaded from and saved to a fake store."""

    def __init__(self, key: str, store: dict[str, int], journal: Journal) -> None:
        self.key = key
        self.store = store
        self.journal = journal
        self.count = store.get(key, 0)

    async def receive(self, message: object) -> object:
        if message == "crash":
            raise Crash("boom")
        if message == "incr":
            self.count += 1
            self.store[self.key] = self.count
        return self.count

    async def on_stop(self) -> None:
        self.journal.write(f"passivated {self.key}")


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def store() -> dict[str, int]:
    return {}


def counters(store: dict[str, int], journal: Journal, **options: object) -> KeyedSupervisor:
    async def activate(key: str) -> Actor:
        journal.write(f"load {key}")
        await trio.lowlevel.checkpoint()  # loading is I/O: let other tasks run meanwhile
        return Counter(key, store, journal)

    return KeyedSupervisor("counter", activate, **options)  # type: ignore[arg-type]


async def test_first_message_activates_the_actor(nursery: trio.Nursery, store: dict[str, int],
                                                 journal: Journal) -> None:
    """ask on an unknown key activates its actor, which loads its state first."""
    store["k"] = 41
    sup = counters(store, journal)
    await nursery.start(sup.run)
    assert await sup.ask("k", "incr") == 42
    assert journal.names() == ["load k"]
    assert sup.live_keys() == ["k"]


async def test_concurrent_first_messages_create_one_actor(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal) -> None:
    """Many simultaneous first messages for one key activate exactly one actor."""
    sup = counters(store, journal)
    await nursery.start(sup.run)
    async with trio.open_nursery() as burst:
        for _ in range(50):
            burst.start_soon(sup.ask, "k", "incr")
    assert journal.names() == ["load k"]
    assert store["k"] == 50
    assert sup.activations == 1


async def test_idle_actor_passivates_and_reactivates(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal,
        autojump_clock: trio.testing.MockClock) -> None:
    """After idle_seconds without messages the actor stops; the next message reloads it."""
    registry = Registry()
    sup = counters(store, journal, idle_seconds=30, registry=registry)
    await nursery.start(sup.run)
    await sup.ask("k", "incr")
    await trio.sleep(29)
    assert sup.live_keys() == ["k"]
    await sup.ask("k", "incr")
    await trio.sleep(31)
    assert sup.live_keys() == []
    assert registry.snapshot().actors_by_kind == {}
    assert await sup.ask("k", "incr") == 3
    assert journal.names() == ["load k", "passivated k", "load k"]
    assert [round(t) for t in journal.times("passivated k")] == [59]


async def test_stale_ref_after_passivation_is_refused_and_key_send_reactivates(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal,
        autojump_clock: trio.testing.MockClock) -> None:
    """A ref kept past passivation refuses messages; addressing by key never loses one."""
    sup = counters(store, journal, idle_seconds=10)
    await nursery.start(sup.run)
    old = await sup.get_or_spawn("k")
    await sup.ask("k", "incr")
    await trio.sleep(11)
    with pytest.raises(MailboxClosed):
        await old.send("incr")
    await sup.send("k", "incr")
    assert await sup.ask("k", "get") == 2


async def test_crash_restarts_only_that_key_with_its_mailbox(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal,
        autojump_clock: trio.testing.MockClock) -> None:
    """A crash restarts that key's actor (queued messages kept); other keys are untouched."""
    sup = counters(store, journal, backoff=Backoff(initial_seconds=1))
    await nursery.start(sup.run)
    await sup.ask("other", "incr")
    ref = await sup.get_or_spawn("k")
    ref.tell("crash")
    ref.tell("incr")
    assert await sup.ask("k", "get") == 1
    assert journal.names().count("load other") == 1
    assert journal.names().count("load k") == 2


async def test_poison_key_is_given_up_without_hurting_siblings(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal,
        autojump_clock: trio.testing.MockClock) -> None:
    """A key that keeps crashing is given up after its intensity; siblings keep serving."""
    registry = Registry()
    sup = counters(store, journal, intensity=Intensity(max_restarts=2, period_seconds=60),
                   backoff=Backoff(initial_seconds=0.1), registry=registry)
    await nursery.start(sup.run)
    await sup.ask("healthy", "incr")
    ref = await sup.get_or_spawn("poison")
    for _ in range(3):
        with pytest.raises(Crash):
            await ref.ask("crash")
    await trio.testing.wait_all_tasks_blocked()
    assert not ref.alive
    assert sup.live_keys() == ["healthy"]
    assert await sup.ask("healthy", "incr") == 2
    assert registry.snapshot().crashes_by_kind == {"counter": 3}


async def test_actor_that_stops_itself_with_messages_waiting_is_reactivated(
        nursery: trio.Nursery, journal: Journal) -> None:
    """A self-stop never drops messages that were already queued behind it."""
    async def activate(key: str) -> Actor:
        journal.write(f"load {key}")
        return Echo(key, journal)

    sup = KeyedSupervisor("echo", activate)
    await nursery.start(sup.run)
    ref = await sup.get_or_spawn("e")
    ref.tell("stop")
    ref.tell("after")
    assert await sup.ask("e", ("echo", "ok")) == "ok"
    assert "e got after" in journal.names()


async def test_stop_passivates_every_actor(nursery: trio.Nursery, store: dict[str, int],
                                           journal: Journal) -> None:
    """request_stop stops every live actor gracefully and refuses new activations."""
    sup = counters(store, journal)
    await nursery.start(sup.run)
    for key in "abc":
        await sup.ask(key, "incr")
    sup.request_stop()
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(w for w in journal.names() if w.startswith("passivated")) == [
        "passivated a", "passivated b", "passivated c"]
    with pytest.raises(MailboxClosed):
        await sup.ask("a", "incr")


async def test_post_delivers_without_waiting_and_activates(
        nursery: trio.Nursery, store: dict[str, int], journal: Journal) -> None:
    """post never waits: it tells a live actor, or activates one in the background."""
    sup = counters(store, journal, mailbox_size=1)
    await nursery.start(sup.run)
    sup.post("k", "incr")
    assert journal.names() == []  # nothing ran yet: post returned at once
    await trio.testing.wait_all_tasks_blocked()
    assert store["k"] == 1
    for _ in range(5):
        sup.post("k", "incr")  # the mailbox holds one: the rest wait in the background
    await trio.testing.wait_all_tasks_blocked()
    assert store["k"] == 6
    sup.request_stop()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(MailboxClosed):
        sup.post("k", "incr")
