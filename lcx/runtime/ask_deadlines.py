"""The deadlines of pending asks, kept by one task per Trio run instead of a scope per ask.

A cancel scope with a deadline costs several microseconds to enter and leave, and every
``ask`` needs a deadline. Here an ask only pushes (deadline, reply) on a heap; one system
task sleeps until the earliest deadline and fails the replies still empty by then with
:class:`~lcx.errors.AskTimeout`. Answered asks leave their entries behind; each time the
keeper wakes it drops every answered entry at the top of the heap along with the due
ones, so it sleeps until the deadline of the oldest ask still waiting: with asks answered
in time it wakes about once per ``timeout``, not once per ask, and the heap holds at most
the asks of the last ``timeout`` seconds or so. Asks with the usual timeout arrive in
deadline order, so the sleeper is woken early only when the heap was empty.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio

from lcx.errors import AskTimeout
from lcx.runtime.mailbox import Reply

Describe = Callable[[], str]
"""Builds the timeout's message (only when the ask does time out)."""


class AskDeadlines:
    """Fails asks whose answer did not come in time; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Reply, Describe]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._started = False

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, deadline: float, reply: Reply, describe: Describe) -> None:
        """Fail ``reply`` with ``AskTimeout(describe())`` at ``deadline`` if still empty."""
        heapq.heappush(self._heap, (deadline, next(self._seq), reply, describe))
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name="lcx.ask_deadlines")
        elif self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    async def _run(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            # the due ones, and the answered ones in front of the first still waiting
            while heap and (heap[0][0] <= now or heap[0][2].done):
                _, _, reply, describe = heapq.heappop(heap)
                if not reply.done:
                    reply.fail(AskTimeout(describe()))
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._sleep = scope
                await trio.sleep_forever()
            self._sleep = None


_DEADLINES: trio.lowlevel.RunVar[AskDeadlines] = trio.lowlevel.RunVar("lcx_ask_deadlines")


def ask_deadlines() -> AskDeadlines:
    """The deadline keeper of the current Trio run (created on first use)."""
    try:
        return _DEADLINES.get()
    except LookupError:
        keeper = AskDeadlines()
        _DEADLINES.set(keeper)
        return keeper
