"""The spam threshold of customer channels: at most ``threshold`` inbound messages per
sender and channel account in a window (default 2000 per 30 minutes); beyond it messages
are dropped before they are stored or queued, counted (``/metrics``) and logged.

Counting is per instance, in memory, in fixed windows starting at a sender's first
message: in a cluster behind a balancer a sender may get up to ``threshold`` per
instance. Enough for its purpose (a runaway sender must not flood the queues); nothing
durable is worth a store write per inbound message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("lcx.edges.spam")

DEFAULT_THRESHOLD = 2000
WINDOW_SECONDS = 30 * 60.0


@dataclass
class SpamGuard:
    """Counts inbound messages per (account, sender); see the module docstring."""

    window: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    dropped: dict[str, int] = field(default_factory=dict)
    """Messages dropped so far, by channel account."""
    _counts: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def admit(self, account: str, sender: str, threshold: int) -> bool:
        """Whether one more message of ``sender`` on ``account`` may pass (counted)."""
        now = self.clock()
        key = (account, sender)
        began, count = self._counts.get(key, (now, 0))
        if now - began >= self.window:
            began, count = now, 0
        count += 1
        self._counts[key] = (began, count)
        if len(self._counts) > 100_000:
            self._forget_old(now)
        if count <= threshold:
            return True
        self.dropped[account] = self.dropped.get(account, 0) + 1
        if count == threshold + 1:
            log.warning("spam threshold reached: messages dropped",
                        extra={"account": account, "sender": sender,
                               "threshold": threshold})
        return False

    def _forget_old(self, now: float) -> None:
        self._counts = {key: value for key, value in self._counts.items()
                        if now - value[0] < self.window}
