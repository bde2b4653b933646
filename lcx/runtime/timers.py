"""One timer for many deadlines: a heap served by a single task.

A virtual actor that waits for a deadline (a request's timeout, a conversation's
inactivity limit) does not need to stay in memory for it: it arms a timer here under its
key and may passivate; when the deadline comes the service calls the ``fire`` callback it
was given (typically "post this message to the actor for that key", which activates it).
Arming a key again replaces its timer, so at most one timer per key exists and a stale one
never fires. Cost: O(log n) per arm and per fire, a few hundred bytes per armed key, and
one task however many keys wait.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable

import trio

log = logging.getLogger("lcx.runtime")

Fire = Callable[[], None]
"""Called on the service's task when the deadline passes; must not block."""


class TimerService:
    """Keyed one-shot timers served by one task (a supervised service)."""

    def __init__(self) -> None:
        self._armed: dict[str, tuple[float, int, Fire]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._changed = trio.Event()
        self._stop = trio.Event()
        self.fired = 0

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, key: str, delay: float, fire: Fire) -> None:
        """Call ``fire`` in ``delay`` seconds, replacing the timer ``key`` had."""
        deadline = trio.current_time() + max(0.0, delay)
        current = self._armed.get(key)
        if current is not None and current[0] <= deadline:
            # only later (an inactivity limit pushed back by every message): the heap
            # entry of the earlier deadline stays; when it comes up it is moved on
            self._armed[key] = (deadline, current[1], fire)
            return
        seq = next(self._seq)
        self._armed[key] = (deadline, seq, fire)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, seq, key))
        if earliest is None or deadline < earliest:
            self._changed.set()
        if len(self._heap) > 2 * len(self._armed) + 64:
            self._compact()

    def cancel(self, key: str) -> None:
        """Forget ``key``'s timer (nothing happens if it has none)."""
        self._armed.pop(key, None)

    def armed(self, key: str) -> bool:
        """Whether ``key`` has a timer waiting."""
        return key in self._armed

    def request_stop(self) -> None:
        """Stop serving (the timers are dropped: their owners re-arm them on activation)."""
        self._stop.set()
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Fire due timers until stopped."""
        self._stop = trio.Event()
        task_status.started()
        while not self._stop.is_set():
            self._fire_due()
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._changed.wait()  # an earlier deadline was armed, or stop
            self._changed = trio.Event()

    def _fire_due(self) -> None:
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now:
            _, seq, key = heapq.heappop(self._heap)
            entry = self._armed.get(key)
            if entry is None or entry[1] != seq:
                continue  # cancelled or replaced
            if entry[0] > now:  # re-armed later in the meantime: wait for that
                heapq.heappush(self._heap, (entry[0], seq, key))
                continue
            del self._armed[key]
            self.fired += 1
            try:
                entry[2]()
            except Exception:
                log.exception("timer callback failed", extra={"timer": key})

    def _compact(self) -> None:
        """Drop heap entries of cancelled or replaced timers."""
        self._heap = [(deadline, seq, key) for key, (deadline, seq, _) in self._armed.items()]
        heapq.heapify(self._heap)
