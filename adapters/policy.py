"""The one outbound policy for calls to providers and channels.

- **Timeouts** on every call (``EdgeHttp``).
- **Classification**: 429, 5xx and network errors are retryable (with the edge's
  ``Retry-After`` when it sends one); 400/401/403/404 and other 4xx are not; 401/403 are
  flagged ``auth`` (an alert metric). The outbox (``services/bot_delivery.py``) does the
  retrying with exponential backoff and jitter, and dead-letters after the last attempt,
  for edge commands exactly as for bot events.
- **A circuit breaker per account**: after ``failures`` retryable failures in a row the
  account's calls fail fast (retryable, with the time left as ``retry_after``) for a
  cooldown; then it is *half-open*: one trial call goes through while the others still
  fail fast. A successful trial closes it; a failed one opens it again for twice the
  cooldown. The first cooldown is short (``cooldown``, about a second) and doubles up
  to ``max_cooldown`` while the outage lasts, so a short outage costs about a second
  (a couple of poll intervals) after the edge is back, and a long one costs the edge
  one call per ``max_cooldown``. One tenant's broken provider never costs other tenants
  anything.
- **A rate limiter per account** (token bucket), e.g. LiveChat's 10 requests/s.

No Trio-native library does breaking or token buckets (the well-known ones are
asyncio-only or synchronous), hence these few lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import trio

from adapters.edges import EdgeCallFailed

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})

Classifier = Callable[[httpx.Response], EdgeCallFailed | None]
"""An edge's own reading of an answer: the failure it means, or None for a success."""


def retry_after(headers: Mapping[str, str], cap: float = 600.0) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or HTTP date), capped; None if absent."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(cap, float(value)))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, moment.timestamp() - time.time()))


def check(response: httpx.Response, what: str) -> None:
    """Raise :class:`EdgeCallFailed` (classified) unless the response is a 2xx."""
    status = response.status_code
    if status < 300:
        return
    detail = response.text[:300]
    if status in RETRYABLE or status >= 500:
        raise EdgeCallFailed(f"{what}: {status} {detail}", retry=True, status=status,
                             retry_after=retry_after(response.headers))
    raise EdgeCallFailed(f"{what}: {status} {detail}", retry=False, status=status,
                         auth=status in (401, 403))


class CircuitOpen(EdgeCallFailed):
    """A call the circuit breaker refused: it never went out (so it is no attempt)."""


@dataclass
class CircuitBreaker:
    """Fails fast after repeated retryable failures of one account; half-open after a
    cooldown that starts at ``cooldown`` and doubles (up to ``max_cooldown``) while the
    trial calls keep failing (see the module docstring)."""

    failures: int = 5
    cooldown: float = 1.0
    max_cooldown: float = 30.0
    _count: int = 0
    _open_until: float = 0.0
    _current: float = 0.0
    """The cooldown in force (0: closed)."""
    _trial: bool = False
    """Whether the one trial call of the half-open state is in flight."""

    def before(self, account: str) -> None:
        """Refuse the call while open, and while another call is the half-open trial (a
        retryable failure, so it is tried again later); otherwise let it go (the first
        call after the cooldown becomes the trial)."""
        if self._count < self.failures:
            return
        now = trio.current_time()
        if now < self._open_until:
            raise CircuitOpen(f"{account}: circuit open after {self._count} failures",
                                 retry=True, retry_after=self._open_until - now)
        if self._trial:
            raise CircuitOpen(f"{account}: circuit half-open, a trial call is out",
                                 retry=True, retry_after=min(1.0, self.cooldown))
        self._trial = True

    def after(self, failed: bool) -> None:
        """Record the outcome of a call (only retryable failures count): a success closes
        the breaker and resets its cooldown; a failed trial reopens it for twice as long."""
        trial, self._trial = self._trial, False
        if not failed:
            self._count, self._current = 0, 0.0
            return
        self._count += 1
        if self._count < self.failures:
            return
        if trial or self._current == 0.0:
            self._current = self.cooldown if self._current == 0.0 else \
                min(self.max_cooldown, self._current * 2)
            self._open_until = trio.current_time() + self._current

    def abandon(self) -> None:
        """Forget a call that never answered (cancelled): its trial slot is free again."""
        self._trial = False

    @property
    def open(self) -> bool:
        """Whether calls are being refused now (open, or half-open with its trial out)."""
        if self._count < self.failures:
            return False
        return self._trial or trio.current_time() < self._open_until


@dataclass
class RateLimiter:
    """A token bucket: ``rate`` calls a second, bursts up to ``burst``."""

    rate: float
    burst: float = 1.0
    _tokens: float | None = field(default=None)
    _stamp: float = 0.0

    async def acquire(self) -> None:
        """Wait until a call may go (callers queue in order: each reserves its token)."""
        now = trio.current_time()
        if self._tokens is None:
            self._tokens, self._stamp = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            wait = (1 - self._tokens) / self.rate
            self._tokens -= 1  # reserve our token now: later callers queue behind us
            await trio.sleep(wait)
            return
        self._tokens -= 1


class EdgeHttp:
    """HTTP calls to one kind of edge, under the policy, with one shared client."""

    def __init__(self, client: httpx.AsyncClient, *, timeout: float = 10.0,
                 breaker_failures: int = 5, breaker_cooldown: float = 1.0,
                 breaker_max_cooldown: float = 30.0) -> None:
        self.client = client
        self.timeout = timeout
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._breaker_args = (breaker_failures, breaker_cooldown,
                              max(breaker_cooldown, breaker_max_cooldown))
        self.auth_failures = 0
        """Calls refused for credentials (401/403): an alert metric."""

    def breaker(self, account: str) -> CircuitBreaker:
        """The circuit breaker of ``account``."""
        if account not in self._breakers:
            self._breakers[account] = CircuitBreaker(*self._breaker_args)
        return self._breakers[account]

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The circuit breakers by account (for metrics)."""
        return dict(self._breakers)

    def limit(self, account: str, per_second: float) -> None:
        """Allow at most ``per_second`` calls a second for ``account``."""
        if account not in self._limiters:
            self._limiters[account] = RateLimiter(per_second, burst=max(1.0, per_second))

    async def request(self, account: str, method: str, url: str, *, what: str,
                      classify: Classifier | None = None, **kwargs: Any) -> httpx.Response:
        """One call: limiter, breaker, timeout, classification (``classify``: the edge's
        own, for edges whose error codes say more than the status; default
        :func:`check`).

        Raises:
            EdgeCallFailed: classified (see the module docstring).
        """
        breaker = self.breaker(account)
        breaker.before(account)
        limiter = self._limiters.get(account)
        try:
            if limiter is not None:
                await limiter.acquire()
            response = await self.client.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            breaker.after(failed=True)
            raise EdgeCallFailed(f"{what}: {type(exc).__name__}: {exc}", retry=True) from exc
        except BaseException:
            breaker.abandon()  # cancelled: no verdict on the edge
            raise
        try:
            if classify is None:
                check(response, what)
            elif (failure := classify(response)) is not None:
                raise failure
        except EdgeCallFailed as exc:
            breaker.after(failed=exc.retry)
            self.auth_failures += exc.auth
            raise
        breaker.after(failed=False)
        return response
