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

One keep-alive :class:`~adapters.http1.Http1Pool` serves every tenant; whoever opens it with
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
from functools import lru_cache

import httpx
import trio

from adapters.http1 import (
    ConnectFailed,
    Http1Pool,
    Origin,
    ProtocolFailure,
    TimedOut,
    open_pool,
)
from lcx.version import lcx_version

__all__ = ["BotClient", "Delivered", "Destination", "Outcome", "Reject", "Retry", "classify",
           "destination", "open_bot_client", "parse_retry_after", "sign"]

DEFAULT_TIMEOUT = 10.0
"""Seconds one POST may take, connection included."""
MAX_RETRY_AFTER = 600.0
"""The longest ``Retry-After`` honoured, in seconds; longer ones are cut to this."""
RETRYABLE = frozenset({408, 425, 429})
"""4xx statuses that mean "try again later"."""
AUTH_FAILURES = frozenset({401, 403})
KEEPALIVE_SECONDS = 30.0
"""How long an idle connection to a bot stays open for the next event (a bot that closes
it sooner costs one resend on a new connection, see :mod:`adapters.http1`)."""
_USER_AGENT = f"lcx/{lcx_version()}".encode()
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
    """POSTs events over one shared :class:`~adapters.http1.Http1Pool`, which it does not own.

    It speaks HTTP/1.1 through the small keep-alive client of :mod:`adapters.http1` rather
    than httpx or httpcore: an event POST needs none of their layers (redirects are not
    followed, there is no auth flow and no cookie), and the head of each POST is mostly
    prepared once per URL (:func:`destination`), so a POST only adds its length, its
    ``Idempotency-Key`` and its signature. Safe to use from many tasks at once (the pool
    bounds connections).
    """

    def __init__(self, pool: Http1Pool, *, timeout: float = DEFAULT_TIMEOUT,
                 max_retry_after: float = MAX_RETRY_AFTER) -> None:
        self._pool = pool
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
        target = destination(url)
        if isinstance(target, str):
            return Reject(f"invalid URL: {target}")
        if _unsafe(event_id) or _unsafe(bearer):
            return Reject("a header value contains a line break or a control character")
        head = [target.head, b"Content-Length: %d\r\nIdempotency-Key: %b\r\n"
                % (len(body), event_id.encode())]
        if secret:
            head.append(b"X-Lcx-Signature: sha256=%b\r\n" % _digest(body, secret).encode())
        if bearer:
            head.append(b"Authorization: Bearer %b\r\n" % bearer.encode())
        head.append(b"\r\n")
        head.append(body)
        return await self._exchange(target.origin, b"".join(head))

    async def _exchange(self, origin: Origin, request: bytes) -> Outcome:
        try:
            answer = await self._pool.request(origin, request, keep=_REASON_BODY_CHARS,
                                              timeout=self.timeout)
        except TimedOut:
            return Retry(f"timeout after {self.timeout:g}s")
        except ConnectFailed as exc:
            return Retry(f"network error: ConnectError: {exc}".rstrip(": "))
        except ProtocolFailure as exc:
            return Retry(f"network error: RemoteProtocolError: {exc}".rstrip(": "))
        except (OSError, trio.BrokenResourceError) as exc:
            return Retry(f"network error: {type(exc).__name__}: {exc}".rstrip(": "))
        if 200 <= answer.status < 300:
            return Delivered(answer.status)
        detail = answer.body_start.decode(errors="replace").strip()
        return classify(answer.status, dict(answer.headers), detail=detail,
                        max_retry_after=self.max_retry_after)


def _digest(body: bytes, secret: str) -> str:
    # the C one-shot: no HMAC object per event
    return hmac.digest(_key(secret), body, "sha256").hex()


@lru_cache(maxsize=256)
def _key(secret: str) -> bytes:
    return secret.encode()


def _unsafe(value: str) -> bool:
    """Whether ``value`` cannot be a header value as it is (CR, LF, other controls)."""
    return not value.isprintable() if value else False


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked event URL: where to connect, and the start of every POST's head."""

    origin: Origin
    head: bytes
    """The request line and the headers every POST to it carries (``Host``,
    ``User-Agent``, ``Content-Type``)."""


@lru_cache(maxsize=1024)
def destination(url: str) -> Destination | str:
    """``url`` parsed and checked once (URLs come from the tenants' config, so they are
    few), or why it cannot be used (a string)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return str(exc)
    if parsed.scheme not in ("http", "https"):
        return f"unsupported protocol {parsed.scheme!r} (http or https)"
    if not parsed.raw_host:
        return "no host"
    host = parsed.raw_host if parsed.port is None else b"%b:%d" % (parsed.raw_host,
                                                                   parsed.port)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    name = parsed.host  # IPv6 without brackets, IDNA-decoded for the TLS server name
    head = (b"POST %b HTTP/1.1\r\nHost: %b\r\nUser-Agent: %b\r\n"
            b"Content-Type: application/json\r\n" % (parsed.raw_path, host, _USER_AGENT))
    return Destination(Origin(parsed.scheme, name, port), head)


@asynccontextmanager
async def open_bot_client(*, timeout: float = DEFAULT_TIMEOUT, max_connections: int = 100,
                          max_retry_after: float = MAX_RETRY_AFTER,
                          ) -> AsyncIterator[BotClient]:
    """Open the shared connection pool (one for every tenant), yield a :class:`BotClient`,
    close the pool on exit."""
    async with open_pool(max_connections=max_connections,
                         keepalive=KEEPALIVE_SECONDS) as pool:
        yield BotClient(pool, timeout=timeout, max_retry_after=max_retry_after)
