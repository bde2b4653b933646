"""A passivated virtual actor is freed by reference counting: it leaves no cyclic garbage.

Every object in a reference cycle waits for a full collection of the cyclic garbage
collector, which walks every live object of the process (a pause of the whole event loop
that grows with the heap); an instance that activates and passivates thousands of actors a
minute must not feed it.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator

import pytest
import trio

from lcx.runtime import Actor, KeyedSupervisor


class Echo(Actor):
    """Answers what it is asked."""

    async def receive(self, message: object) -> object:
        return message


async def activate(key: str) -> Actor:
    return Echo()


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """The cyclic garbage found by the collections run meanwhile (kept, not freed)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_passivated_actors_leave_no_cyclic_garbage(
        autojump_clock: object, saved_garbage: list[object]) -> None:
    supervisor = KeyedSupervisor("echo", activate, idle_seconds=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.ask("warm-up", "hello")  # first-use caches are not garbage
        await trio.sleep(5)
        gc.collect()
        saved_garbage.clear()
        for index in range(20):
            assert await supervisor.ask(f"key-{index}", index) == index
        await trio.sleep(5)
        assert len(supervisor) == 0  # all of them passivated
        gc.collect()
        kinds = collections.Counter(type(item).__qualname__ for item in saved_garbage)
        assert not saved_garbage, f"cyclic garbage left by passivated actors: {kinds}"
        supervisor.request_stop()
