"""The garbage collector's pacer: survivors of a full collection are frozen, so the next
ones walk only what came since; every ``thaw_seconds`` they are handed back, so that a
full collection frees what became cyclic garbage among them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lcx.runtime.gc_pacing import GcPacer


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pacer() -> Iterator[tuple[GcPacer, Clock]]:
    clock = Clock()
    pacer = GcPacer(thaw_seconds=60.0, clock=clock)
    pacer.install()
    try:
        yield pacer, clock
    finally:
        pacer.uninstall()
        gc.unfreeze()


class Node:
    """One half of a reference cycle."""

    other: Node | None = None


def cycle() -> Node:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


def test_survivors_of_a_full_collection_are_frozen(pacer: tuple[GcPacer, Clock]) -> None:
    meter, _ = pacer
    kept = cycle()
    gc.collect()
    assert meter.freezes == 1
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(kept)
    frozen = gc.get_freeze_count()
    gc.collect(1)  # younger collections never freeze
    assert meter.freezes == 1
    assert gc.get_freeze_count() == frozen


def test_garbage_among_frozen_objects_is_freed_after_a_thaw(
        pacer: tuple[GcPacer, Clock]) -> None:
    meter, clock = pacer
    doomed = cycle()
    gc.collect()  # doomed survives (still referenced) and is frozen
    del doomed
    assert gc.collect() == 0  # frozen: not walked
    clock.now = 61.0
    gc.collect()  # this one thaws ...
    assert meter.thaws == 1
    assert gc.get_freeze_count() == 0
    assert gc.collect() >= 2  # ... and the next one frees the cycle (two nodes)
    assert meter.freezes >= 2  # then freezes again


def test_uninstall_stops_freezing(pacer: tuple[GcPacer, Clock]) -> None:
    meter, _ = pacer
    meter.uninstall()
    gc.collect()
    assert meter.freezes == 0
