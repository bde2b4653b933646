"""Posts to a virtual actor keep their order under backpressure, and what waits is bounded."""

from __future__ import annotations

import pytest
import trio

from lcx.errors import MailboxClosed
from lcx.runtime import Actor, KeyedSupervisor


class Slow(Actor):
    """Records what it receives, one checkpoint per message (so its mailbox fills up)."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def receive(self, message: object) -> object:
        await trio.sleep(0.01)
        self.seen.append(message)
        return None


def slow_actors(seen: list[object], **options: object) -> KeyedSupervisor:
    async def activate(key: str) -> Actor:
        return Slow(seen)

    return KeyedSupervisor("slow", activate, mailbox_size=2, **options)  # type: ignore[arg-type]


async def test_posts_beyond_a_full_mailbox_arrive_in_order(nursery: trio.Nursery,
                                                        autojump_clock: object) -> None:
    """A burst of posts larger than the mailbox reaches the actor in the order posted."""
    seen: list[object] = []
    sup = slow_actors(seen)
    await nursery.start(sup.run)
    for index in range(50):
        sup.post("k", index)
    await trio.sleep(10)  # virtual time: every post has long been handled
    assert seen == list(range(50))


async def test_posts_to_an_inactive_key_arrive_in_order(nursery: trio.Nursery,
                                                        autojump_clock: object) -> None:
    """Posts that activate an actor are not overtaken by later posts to the same key."""
    seen: list[object] = []
    sup = slow_actors(seen)
    await nursery.start(sup.run)
    sup.post("k", "first")
    sup.post("k", "second")
    sup.post("k", "third")
    await trio.sleep(10)
    assert seen == ["first", "second", "third"]


async def test_waiting_posts_are_bounded(nursery: trio.Nursery,
                                                        autojump_clock: object) -> None:
    """Beyond ``max_pending_posts`` a post is dropped (and counted), never queued without
    bound; the ones kept still arrive in order."""
    seen: list[object] = []
    sup = slow_actors(seen, max_pending_posts=10)
    await nursery.start(sup.run)
    for index in range(100):
        sup.post("k", index)
    assert sup.dropped_posts > 0
    await trio.sleep(10)
    assert seen == sorted(seen)
    assert len(seen) == 100 - sup.dropped_posts


async def test_post_after_the_supervisor_stopped_is_mailbox_closed(autojump_clock: object
                                                                  ) -> None:
    """Once the supervisor has stopped (even by cancellation), post raises MailboxClosed."""
    seen: list[object] = []
    sup = slow_actors(seen)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        nursery.cancel_scope.cancel()
    with pytest.raises(MailboxClosed):
        sup.post("k", "late")
