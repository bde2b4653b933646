"""The customer simulator of the demo (``/console/try``): a page that plays the bot.

Registered only when lcx runs the demo (no configuration file, :mod:`lcx.demo`). The page
(``lcx/demo/static``, plain ES modules) creates a request and writes as the subscriber
through the public bot API with the bot token of its URL; this module serves it and is the
demo tenant's ``bot_events_url``:

* ``GET /console/try`` and ``GET /console/try/<file>``: the page and its modules, with an
  own-origin Content-Security-Policy (like the console's), ``no-cache`` and an ``ETag``;
* ``POST /console/try/events``: lcx's deliveries of the demo tenant's events. The
  ``X-Lcx-Signature`` is checked as a bot must check it (a bad one is 401 and is not kept);
  an event delivered twice (same ``Idempotency-Key``) is kept once; the newest
  :data:`KEPT_EVENTS` are kept in memory;
* ``GET /console/try/events?subHandle=&after=&wait=``: what the bot received for that
  subscriber after the cursor ``after``, for a ``bot`` token of the demo tenant; with
  ``wait`` (seconds, at most :data:`MAX_WAIT_SECONDS`) it answers as soon as one arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response
from lcx.api.common import read_query
from lcx.api.deps import AppDeps
from lcx.auth import require_org, require_tenant
from lcx.demo import EVENTS_PATH, SIMULATOR_PATH, STATIC_DIR, Demo
from lcx.errors import InvalidRequest, NotFound, Unauthorized
from lcx.model import iso, utc_now

__all__ = ["KEPT_EVENTS", "MAX_WAIT_SECONDS", "ReceivedEvents", "demo_blueprint"]

KEPT_EVENTS = 1000
MAX_WAIT_SECONDS = 25.0
INDEX = "index.html"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'",
    "connect-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    "object-src 'none'"))
"""The page's policy: lcx's own origin only, no inline script, no framing (the URL that
opens it carries a bot token)."""
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8"}


class Received(msgspec.Struct, kw_only=True, rename="camel"):
    """One event as the simulator shows it: what lcx POSTed, and how it arrived."""

    cursor: int
    received_at: str
    idempotency_key: str
    deliveries: int
    """How many times lcx delivered it (at-least-once: a retry after a lost answer)."""
    event: dict[str, Any]


class EventsQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """``GET /console/try/events`` parameters."""

    sub_handle: str
    after: int = 0
    wait: float = 0.0


@dataclass
class ReceivedEvents:
    """The demo bot's inbox: the newest events, by arrival, and a wake-up for waiters."""

    kept: deque[Received] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    by_key: dict[str, Received] = field(default_factory=dict)
    arrived: trio.Event = field(default_factory=trio.Event)
    count: int = 0

    def add(self, key: str, event: dict[str, Any]) -> None:
        """Keep ``event`` (once per idempotency key) and wake the waiting readers."""
        seen = self.by_key.get(key)
        if seen is not None:
            seen.deliveries += 1
            return
        self.count += 1
        if len(self.kept) == self.kept.maxlen:
            self.by_key.pop(self.kept[0].idempotency_key, None)
        received = Received(cursor=self.count, received_at=iso(utc_now()), idempotency_key=key,
                            deliveries=1, event=event)
        self.kept.append(received)
        self.by_key[key] = received
        self.arrived.set()
        self.arrived = trio.Event()

    def after(self, sub_handle: str, cursor: int) -> list[Received]:
        """The kept events of ``sub_handle`` that arrived after ``cursor`` (a cursor from
        before a restart of lcx, beyond the newest, starts again from the oldest)."""
        if cursor > self.count:
            cursor = 0
        return [item for item in self.kept
                if item.cursor > cursor and item.event.get("subHandle") == sub_handle]


def _signature_valid(body: bytes, header: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def _files(directory: Path) -> dict[str, tuple[bytes, str, str]]:
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            body = path.read_bytes()
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
                or "application/octet-stream"
            files[path.name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def demo_blueprint(deps: AppDeps, demo: Demo) -> Blueprint:
    """The simulator's routes (see the module docstring) for the demo tenant ``demo``."""
    if deps.verifier is None:
        raise ValueError("the customer simulator needs the token verifier")
    verifier = deps.verifier
    files = _files(STATIC_DIR)
    inbox = ReceivedEvents()
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy":
               CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}
    blueprint = Blueprint("demo", __name__)

    def serve_file(name: str) -> TrioResponse:
        found = files.get(name)
        if found is None:
            raise NotFound(f"no simulator file {name!r}")
        body, kind, etag = found
        if etag in request.headers.get("If-None-Match", ""):
            return TrioResponse(b"", status=304, headers={**headers, "ETag": etag})
        return TrioResponse(body, status=200, headers={**headers, "ETag": etag},
                            content_type=kind)

    @blueprint.get(SIMULATOR_PATH)
    async def simulator_page() -> TrioResponse:
        return serve_file(INDEX)

    @blueprint.get(f"{SIMULATOR_PATH}/<name>")
    async def simulator_file(name: str) -> TrioResponse:
        return serve_file(name)

    @blueprint.post(EVENTS_PATH)
    async def receive_event() -> TrioResponse:
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        if not _signature_valid(body, request.headers.get("X-Lcx-Signature", ""),
                                demo.webhook_secret):
            raise Unauthorized("X-Lcx-Signature does not match the demo tenant's secret")
        try:
            event = msgspec.json.decode(body, type=dict[str, Any])
        except msgspec.DecodeError as exc:
            raise InvalidRequest("the event is not a JSON object") from exc
        key = request.headers.get("Idempotency-Key") or str(event.get("id", ""))
        inbox.add(key, event)
        return json_response({"received": True})

    @blueprint.get(EVENTS_PATH)
    async def read_events() -> TrioResponse:
        principal = authenticate(request, verifier, "bot", "service")
        require_org(principal, demo.organization_id)
        require_tenant(principal, demo.tenant_id, demo.organization_id)
        query = read_query(EventsQuery, strict=False)
        found = inbox.after(query.sub_handle, query.after)
        if not found and query.wait > 0:
            with trio.move_on_after(min(query.wait, MAX_WAIT_SECONDS)):
                while not found:
                    await inbox.arrived.wait()
                    found = inbox.after(query.sub_handle, query.after)
        cursor = found[-1].cursor if found else min(max(query.after, 0), inbox.count)
        return json_response({"events": found, "next": cursor})

    return blueprint
