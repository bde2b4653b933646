"""The cyclic garbage collector paced for a long-running server: short full collections.

A full collection walks every object the collector tracks, and the event loop stands
still meanwhile: with 10,000 agent sockets or thousands of live actors that is a pause of
several hundred milliseconds, felt by every caller at once. What survives a full
collection is mostly long-lived (sockets, sessions, caches, settings), so after each one
the survivors are frozen (``gc.freeze``) and the next full collections walk only what came
since. Frozen objects are still freed by reference counting as usual; only garbage in a
reference cycle among them waits, until the periodic thaw (every ``thaw_seconds``) lets
one full collection walk everything again.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

THAW_SECONDS = 600.0
"""How long frozen survivors are left out of full collections before one walks them."""


class GcPacer:
    """Freezes the survivors of each full collection, thawing them every ``thaw_seconds``;
    see the module docstring. ``install`` hooks it into ``gc.callbacks``."""

    def __init__(self, *, thaw_seconds: float = THAW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.thaw_seconds = thaw_seconds
        self._clock = clock
        self._thawed_at = clock()
        self.freezes = 0
        """Full collections after which the survivors were frozen."""
        self.thaws = 0
        """Times the frozen objects were handed back to the collector."""

    def install(self) -> None:
        """Start pacing (idempotent)."""
        if self._observe not in gc.callbacks:
            gc.callbacks.append(self._observe)

    def uninstall(self) -> None:
        """Stop pacing; what is frozen stays frozen."""
        while self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        now = self._clock()
        if now - self._thawed_at >= self.thaw_seconds:
            self._thawed_at = now
            gc.unfreeze()  # the next full collection walks everything again
            self.thaws += 1
        else:
            gc.freeze()
            self.freezes += 1
