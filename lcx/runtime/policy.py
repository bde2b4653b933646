"""Restart policy values shared by supervisors: strategies, restart types, intensity, backoff."""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them has to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped (reverse order) and all restarted (in order)."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and every child started after it."""


class Restart(enum.Enum):
    """When a child that exited is restarted."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after a crash (an exception), not after a normal return."""
    TEMPORARY = "temporary"
    """Never; the child is forgotten once it exits."""

    def wants_restart(self, crashed: bool) -> bool:
        """Whether a child of this type is restarted after exiting (crashed or not)."""
        if self is Restart.PERMANENT:
            return True
        return self is Restart.TRANSIENT and crashed


@dataclass(frozen=True)
class Intensity:
    """At most ``max_restarts`` restarts within ``period_seconds``; one more and the
    supervisor gives up and fails to its parent."""

    max_restarts: int = 3
    period_seconds: float = 5.0


class RestartWindow:
    """The restart times a supervisor remembers to apply its :class:`Intensity`."""

    def __init__(self, intensity: Intensity) -> None:
        self._intensity = intensity
        self._times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Record a restart at ``now``; False when it exceeds the intensity."""
        self._times.append(now)
        horizon = now - self._intensity.period_seconds
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        return len(self._times) <= self._intensity.max_restarts


@dataclass(frozen=True)
class Backoff:
    """Exponential delay before a restart: ``initial * multiplier**(n-1)`` for the n-th
    consecutive restart, capped at ``maximum``, with up to ``jitter`` (a fraction) taken
    off at random. The count starts over once a child has run ``reset_after_seconds``."""

    initial_seconds: float = 0.1
    maximum_seconds: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.0
    reset_after_seconds: float = 30.0

    def delay(self, consecutive: int) -> float:
        """The delay before the ``consecutive``-th restart in a row (1-based)."""
        if consecutive <= 0:
            return 0.0
        base = self.initial_seconds * self.multiplier ** (consecutive - 1)
        capped = min(self.maximum_seconds, base)
        if self.jitter:
            capped *= 1.0 - random.random() * self.jitter
        return capped
