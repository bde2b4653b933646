"""The per-item guard of long-lived loops: one bad item never stops the others.

A service that works through items (stored webhook events, tenants to poll) runs each
through :meth:`ItemGuard.attempt`. Whatever the work raises (an expected
:class:`~lcx.errors.LcxError` or a bug: a decode error, a ``KeyError`` in an actor) becomes
a failed attempt of that item: logged with the item's id (a bug with its traceback, once),
counted, and answered with what to do next: try again after a backoff, or give up (dead
letter) once ``max_attempts`` have failed. Cancellation is never swallowed. The service then
records the outcome durably in its own way; the loop itself never sees the exception.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

import trio

from lcx.errors import LcxError
from lcx.runtime.policy import Backoff

log = logging.getLogger("lcx.runtime")


class Outcome(Enum):
    """What became of one attempt."""

    DONE = "done"
    RETRY = "retry"
    """It failed; try again after :attr:`Attempt.retry_after`."""
    DEAD = "dead"
    """It failed for the last time: the service dead-letters it."""


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt and, when it failed, why and when to try again."""

    outcome: Outcome
    error: str | None = None
    retry_after: float = 0.0
    expected: bool = True
    """False when the failure was a bug (not an :class:`~lcx.errors.LcxError`)."""


@dataclass
class ItemGuard:
    """Runs one item's work; see the module docstring."""

    name: str
    """What the items are (for logs): ``edge inbox``, ``tenant poller``..."""
    max_attempts: int = 20
    backoff: Backoff = field(default_factory=lambda: Backoff(
        initial_seconds=0.5, maximum_seconds=60.0, jitter=0.2))
    failures: int = 0
    """Failed attempts so far (for metrics)."""
    dead: int = 0
    """Items given up so far (for metrics)."""

    async def attempt(self, item_id: str, attempts_before: int,
                      work: Callable[[], Awaitable[None]]) -> Attempt:
        """Run ``work`` for the item ``item_id`` that already failed ``attempts_before``
        times; never raises but for cancellation."""
        try:
            await work()
        except trio.Cancelled:
            raise
        except Exception as exc:  # one item's failure, whatever it is, is that item's
            return self._failed(item_id, attempts_before + 1, exc)
        return Attempt(Outcome.DONE)

    def _failed(self, item_id: str, attempt: int, exc: Exception) -> Attempt:
        self.failures += 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        expected = isinstance(exc, LcxError)
        extra = {"item": item_id, "attempt": attempt, "error": error}
        if attempt >= self.max_attempts:
            self.dead += 1
            log.error("%s: item given up after %d attempts", self.name, attempt, extra=extra,
                      exc_info=None if expected else exc)
            return Attempt(Outcome.DEAD, error, expected=expected)
        if expected:
            log.warning("%s: item failed; will retry", self.name, extra=extra)
        else:  # a bug: the traceback, on its first attempt only (no log flooding)
            log.error("%s: item failed on a bug; will retry", self.name, extra=extra,
                      exc_info=exc if attempt == 1 else None)
        return Attempt(Outcome.RETRY, error, self.backoff.delay(attempt), expected)
