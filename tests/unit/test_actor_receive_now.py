"""A post that an idle actor can handle at once (``Actor.receive_now``) is handled on the
poster's task, in order with what goes through its mailbox: never while a message is
queued, handed or being handled, never for an ask; a failure there is logged, not raised."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from lcx.runtime import Actor, KeyedSupervisor


class Recorder(Actor):
    """Handles ``("now", x)`` at once when it can, anything else through its mailbox;
    ``("slow", x)`` waits a while in ``receive``."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    def receive_now(self, message: object) -> bool:
        if isinstance(message, tuple) and message[0] == "now":
            if message[1] == "boom":
                raise RuntimeError("boom")
            self.seen.append(("at once", message[1]))
            return True
        return False

    async def receive(self, message: object) -> object:
        if isinstance(message, tuple) and message[0] == "slow":
            await trio.sleep(1)
        self.seen.append(("mailbox", message[1] if isinstance(message, tuple) else message))
        return "answer"


async def _recorders(nursery: trio.Nursery, seen: list[object]) -> KeyedSupervisor:
    async def activate(key: str) -> Actor:
        return Recorder(seen)

    sup = KeyedSupervisor("recorder", activate, mailbox_size=8)
    await nursery.start(sup.run)
    return sup


async def test_an_idle_actor_handles_a_post_before_post_returns(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    seen: list[object] = []
    sup = await _recorders(nursery, seen)
    assert await sup.ask("k", ("mailbox", 0)) == "answer"  # live, then waiting
    await trio.testing.wait_all_tasks_blocked()  # the actor waits again
    sup.post("k", ("now", 1))
    assert seen == [("mailbox", 0), ("at once", 1)]


async def test_a_post_behind_queued_messages_waits_its_turn(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    """While the actor handles a message, or one is queued or handed to it, a post it
    could take at once goes through the mailbox, after them."""
    seen: list[object] = []
    sup = await _recorders(nursery, seen)
    await sup.ask("k", ("mailbox", 0))
    await trio.testing.wait_all_tasks_blocked()  # the actor waits again
    sup.post("k", ("slow", 1))  # handed to the waiting actor, not run yet
    sup.post("k", ("now", 2))
    sup.post("k", ("other", 3))
    sup.post("k", ("now", 4))
    await trio.sleep(0.5)  # the actor is inside the slow one
    sup.post("k", ("now", 5))
    await trio.sleep(5)
    assert seen == [("mailbox", 0), ("mailbox", 1), ("mailbox", 2), ("mailbox", 3),
                    ("mailbox", 4), ("mailbox", 5)]
    sup.post("k", ("now", 6))  # idle again
    assert seen[-1] == ("at once", 6)


async def test_an_ask_always_goes_through_the_mailbox(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    seen: list[object] = []
    sup = await _recorders(nursery, seen)
    await sup.ask("k", ("mailbox", 0))
    await trio.testing.wait_all_tasks_blocked()  # the actor waits again
    assert await sup.ask("k", ("now", 1)) == "answer"
    assert seen == [("mailbox", 0), ("mailbox", 1)]


async def test_a_failure_at_once_is_logged_and_the_actor_carries_on(
        nursery: trio.Nursery, autojump_clock: object,
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[object] = []
    sup = await _recorders(nursery, seen)
    await sup.ask("k", ("mailbox", 0))
    await trio.testing.wait_all_tasks_blocked()  # the actor waits again
    sup.post("k", ("now", "boom"))
    assert "message handled at once failed" in caplog.text
    assert await sup.ask("k", ("mailbox", 1)) == "answer"
    assert seen == [("mailbox", 0), ("mailbox", 1)]
