"""Outbound event POSTs to bots and flow triggers (API.md section 4), and their outcome.

:class:`BotClient` POSTs the exact bytes of one event with its ``Idempotency-Key``, its
``X-Lcx-Signature`` and, for flow triggers, a bearer token, and classifies what happened
as a frozen :data:`Outcome`; it never raises for an HTTP or network failure. The
classification itself is the pure function :func:`classify`:

=========================================  ====================================
2xx                                        :class:`Delivered`
408, 425, 429, 5xx, timeout, network       :class:`Retry` (``Retry-After`` kept)
401, 403                                   :class:`Reject` with ``auth=True``
other 4xx, 1xx/3xx (redirects not taken)   :class:`Reject`
=========================================  ====================================

One ``httpx.AsyncClient`` (one connection pool) serves every tenant; whoever opens it with
:func:`open_bot_client` owns and closes it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import trio

__all__ = ["BotClient", "Delivered", "Outcome", "Reject", "Retry", "classify",
           "open_bot_client", "parse_retry_after", "sign"]

DEFAULT_TIMEOUT = 10.0
"""Seconds one POST may take, connection included."""
MAX_RETRY_AFTER = 600.0
"""The longest ``Retry-After`` honoured, in seconds; longer ones are cut to this."""
RETRYABLE = frozenset({408, 425, 429})
"""4xx statuses that mean "try again later"."""
AUTH_FAILURES = frozenset({401, 403})
_REASON_BODY_CHARS = 200


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver answered 2xx."""

    status: int


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure; try again after ``after_seconds`` if the receiver said so.
    ``attempted=False``: no call went out (a circuit breaker refused it), so it does not
    count against the event's attempts."""

    reason: str
    after_seconds: float | None = None
    attempted: bool = True


@dataclass(frozen=True, slots=True)
class Reject:
    """A permanent failure: do not retry. ``auth`` marks 401/403 (an alert, not a bug)."""

    reason: str
    auth: bool = False


Outcome = Delivered | Retry | Reject


def sign(body: bytes, secret: str) -> str:
    """The ``X-Lcx-Signature`` value: ``sha256=<hex HMAC-SHA256 of body keyed by secret>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def parse_retry_after(value: str | None, *, now: datetime | None = None,
                      cap: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), capped.

    Returns ``None`` for a missing or unreadable value; a date in the past gives 0.
    """
    if value is None or not (text := value.strip()):
        return None
    if text.isdigit():
        return min(float(text), cap)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def classify(status: int, headers: Mapping[str, str] | None = None, *,
             now: datetime | None = None, max_retry_after: float = MAX_RETRY_AFTER,
             detail: str = "") -> Outcome:
    """The outcome of an HTTP answer with ``status`` and ``headers``. Pure; never raises.

    ``detail`` (e.g. the start of the response body) is appended to failure reasons.
    """
    if 200 <= status < 300:
        return Delivered(status)
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in RETRYABLE or status >= 500:
        after = parse_retry_after(_header(headers or {}, "retry-after"), now=now,
                                  cap=max_retry_after)
        return Retry(reason, after)
    if status in AUTH_FAILURES:
        return Reject(reason, auth=True)
    if 300 <= status < 400:
        return Reject(reason + " (redirects are not followed)")
    return Reject(reason)


class BotClient:
    """POSTs events over one shared ``httpx.AsyncClient``, which it does not own.

    Safe to use from many tasks at once (the pool bounds connections).
    """

    def __init__(self, http: httpx.AsyncClient, *, timeout: float = DEFAULT_TIMEOUT,
                 max_retry_after: float = MAX_RETRY_AFTER) -> None:
        self._http = http
        self.timeout = timeout
        self.max_retry_after = max_retry_after

    @staticmethod
    def headers(body: bytes, *, event_id: str, secret: str = "",
                bearer: str = "") -> dict[str, str]:
        """The request headers of one event POST (no signature when ``secret`` is empty,
        no ``Authorization`` when ``bearer`` is empty)."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": event_id}
        if secret:
            headers["X-Lcx-Signature"] = sign(body, secret)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return headers

    async def post(self, url: str, body: bytes, *, event_id: str, secret: str = "",
                   bearer: str = "") -> Outcome:
        """POST ``body`` (the exact bytes) to ``url`` and classify the answer.

        The whole exchange is bounded by :attr:`timeout`. Never raises for HTTP or network
        failures (they are :class:`Retry` or :class:`Reject`); cancellation propagates.
        """
        headers = self.headers(body, event_id=event_id, secret=secret, bearer=bearer)
        with trio.move_on_after(self.timeout):
            return await self._exchange(url, body, headers)
        return Retry(f"timeout after {self.timeout:g}s")

    async def _exchange(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as answer:
                detail = ""
                if answer.is_success:
                    # read to its end (usually empty): a response closed unread closes its
                    # connection, and the next event would pay for a new one
                    async for _ in answer.aiter_raw():
                        pass
                else:
                    detail = await _start_of(answer)
                return classify(answer.status_code, answer.headers, detail=detail,
                                max_retry_after=self.max_retry_after)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Reject(f"invalid URL: {exc}")
        except httpx.TimeoutException as exc:
            return Retry(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Retry(f"network error: {type(exc).__name__}: {exc}".rstrip(": "))


async def _start_of(answer: httpx.Response) -> str:
    """The first characters of a response body, for an error message.

    The body is drained (within the POST's timeout) but only its start is kept: leaving
    httpx's nested stream generators unfinished would leak them.
    """
    chunk = b""
    async for piece in answer.aiter_bytes():
        if len(chunk) < _REASON_BODY_CHARS:
            chunk += piece
    return chunk[:_REASON_BODY_CHARS].decode(errors="replace").strip()


@asynccontextmanager
async def open_bot_client(*, timeout: float = DEFAULT_TIMEOUT, max_connections: int = 100,
                          max_retry_after: float = MAX_RETRY_AFTER,
                          transport: httpx.AsyncBaseTransport | None = None,
                          ) -> AsyncIterator[BotClient]:
    """Open the shared HTTP client (one pool for every tenant), yield a :class:`BotClient`,
    close the pool on exit. ``transport`` replaces the network (tests)."""
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport,
                                 follow_redirects=False) as http:
        yield BotClient(http, timeout=timeout, max_retry_after=max_retry_after)
