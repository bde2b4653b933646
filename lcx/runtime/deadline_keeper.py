"""Deadlines kept by one task per Trio run instead of a cancel scope per wait.

A cancel scope with a deadline costs several microseconds to enter and leave; the hot
waits (an ask for its answer, an idle actor for its next message, a kept-alive HTTP
connection for its next request) only push (deadline, item) on the heap of a
:class:`DeadlineKeeper`, whose one system task sleeps until the earliest deadline and
hands each due item to ``came(item, now)``. An item decides there what its deadline
meant (it may have been answered, or be waiting again until later and watch itself
anew). ``settled(item)``, when given, lets the keeper drop finished items from the top of
the heap early, so that it sleeps until the first deadline that still matters.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

__all__ = ["DeadlineKeeper", "aligned", "keeper_of_run"]

T = TypeVar("T")
K = TypeVar("K")


def aligned(deadline: float, step: float) -> float:
    """``deadline`` rounded up to a multiple of ``step`` (never earlier): periodic deadlines
    of many items, aligned, fall due together and are handled in one wake-up."""
    return math.ceil(deadline / step) * step


class DeadlineKeeper(Generic[T]):
    """Items to look at when their deadline comes; its task starts with the first item."""

    def __init__(self, name: str, came: Callable[[T, float], None], *,
                 settled: Callable[[T], bool] | None = None) -> None:
        self._name = name
        self._came = came
        self._settled = settled
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._started = False

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, deadline: float, item: T) -> None:
        """Hand ``item`` to ``came`` once ``deadline`` (Trio clock) has come."""
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name=self._name)
        elif self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    async def _run(self) -> None:
        heap, came, settled = self._heap, self._came, self._settled
        while True:
            now = trio.current_time()
            while heap and (heap[0][0] <= now or (settled is not None and settled(heap[0][2]))):
                deadline, _, item = heapq.heappop(heap)
                if deadline <= now or settled is None:
                    came(item, now)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._sleep = scope
                await trio.sleep_forever()
            self._sleep = None


def keeper_of_run(var: trio.lowlevel.RunVar[K], make: Callable[[], K]) -> K:
    """The keeper held in ``var`` for the current Trio run, made on first use."""
    try:
        return var.get()
    except LookupError:
        keeper = make()
        var.set(keeper)
        return keeper
