"""The quart-trio application of ``lcx serve``: routes, error envelope, request plumbing.

:func:`create_app` builds one app from an :class:`AppDeps`. Around every HTTP exchange the
app binds ``requestId`` into the logging context, answers with ``X-Request-Id``, writes one
access-log line (at debug for a successful exchange on :data:`HOT_ROUTES`, else at info)
and counts the request in :class:`~lcx.metrics.Metrics` by route template.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Blueprint, request
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest

from lcx.api.bodies import refuse_nul
from lcx.api.console import console_blueprint
from lcx.api.deps import AppDeps
from lcx.api.errors import install_error_handlers
from lcx.api.openapi import openapi_blueprint
from lcx.api.ops import ops_blueprint
from lcx.api.spec import MAX_PATH_PARAMETER
from lcx.errors import HeadersTooLarge, InvalidRequest, PayloadTooLarge
from lcx.ids import new_id
from lcx.logs import bind

if TYPE_CHECKING:
    from lcx.api.lean_routes import LeanRoutes

__all__ = ["REQUEST_ID_HEADER", "AppDeps", "LcxApp", "create_app", "request_id_from"]

REQUEST_ID_HEADER = "X-Request-Id"
MAX_HEADER_BYTES = 32 * 1024
"""The most bytes of header names and values a request may carry (431 over it). The
HTTP server buffers up to ``lcx.api.http_server.MAX_HEAD_BYTES`` so that a request over
this limit still reaches the app and gets the error envelope and ``X-Request-Id``."""
WS_CLOSE_GRACE_SECONDS = 5.0
"""How long a closed websocket waits for the client's close before hypercorn drops it."""
UNMATCHED_ROUTE = "unmatched"
"""The ``route`` label of requests that matched no route (404, 405)."""

_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("ascii")
# Every response is what its Content-Type says (CSV and PDF transcripts included):
# browsers must not sniff a download into something they would run.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_OWN_KEYS = frozenset({_REQUEST_ID_KEY, _NOSNIFF[0]})
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_access_log = logging.getLogger("lcx.access")
HOT_ROUTES = frozenset({("POST", "/messages"), ("POST", "/requests")})
"""Routes a bot calls for every message: their successful exchanges are logged at debug
(their count and latency are in /metrics); failures are logged at info like the rest.
They are also the routes :class:`~lcx.api.lean_routes.LeanRoutes` serves in front of Quart."""


@dataclass(slots=True)
class _Exchange:
    """What the request middleware learns while the app answers (shared with hooks)."""

    route: str = UNMATCHED_ROUTE
    status: int | None = None
    body_limit: int | None = None
    """The route's own body limit (:attr:`LcxApp.body_limits`), if it has one."""


_exchange: ContextVar[_Exchange | None] = ContextVar("lcx_http_exchange", default=None)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Return the client's ``X-Request-Id`` if it is sane (1-128 of ``[A-Za-z0-9._-]``),
    else a fresh time-sortable id."""
    for name, value in headers:
        if name.lower() == _REQUEST_ID_KEY:
            candidate = value.decode("latin-1")
            return candidate if _SANE_REQUEST_ID.fullmatch(candidate) else new_id()
    return new_id()


class _Request(TrioRequest):
    """A request whose body limit is its route's own when the route has one."""

    def __init__(self, *args: Any, max_content_length: int | None = None,
                 **kwargs: Any) -> None:
        exchange = _exchange.get()
        limit = None if exchange is None else exchange.body_limit
        super().__init__(*args, max_content_length=limit or max_content_length, **kwargs)
        if limit is not None:
            self.max_content_length = limit


class LcxApp(QuartTrio):
    """QuartTrio with lcx's request plumbing around every HTTP exchange."""

    deps: AppDeps
    request_class = _Request
    body_limits: Mapping[tuple[str, str], int] = {}
    """(method, path) -> body limit of routes that take more than ``max_body_bytes``
    (uploads); decided before the request exists, so the body is never cut short."""
    lean: LeanRoutes | None = None
    """Serves :data:`~lcx.api.lean_routes.LEAN_ROUTES` in front of Quart (None: Quart does)."""

    async def asgi_app(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        """Answer one ASGI exchange; HTTP ones get a request id, an access line, metrics."""
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().asgi_app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        id_header = (_REQUEST_ID_KEY, request_id.encode("ascii"))
        method, path = scope["method"], scope["path"]
        exchange = _Exchange(body_limit=self.body_limits.get((method, path)))
        started = time.perf_counter()
        lean = self.lean
        if lean is not None and (method, path) in HOT_ROUTES:
            # answered in front of Quart, which does not run (nor cancel) it: the route
            # writes the app's own headers itself and needs no shielded last write
            exchange.route = path
            with bind(requestId=request_id):
                try:
                    await lean.serve(scope, receive, send, exchange.body_limit
                                     or self.config["MAX_CONTENT_LENGTH"], exchange,
                                     (id_header, _NOSNIFF))
                finally:
                    self._finish(method, path, exchange, time.perf_counter() - started)
            return

        async def send_with_id(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message["headers"] = [
                    *(h for h in message["headers"] if h[0].lower() not in _OWN_KEYS),
                    id_header, _NOSNIFF]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # The last body message makes hypercorn close or recycle the connection
                # inside this call, while quart-trio is already cancelling this task (the
                # client's disconnect event arrives first). Unshielded, the close is cut
                # short and the socket lingers until graceful_timeout or the client leaves.
                with trio.CancelScope(shield=True):
                    await send(message)
                return
            await send(message)

        with bind(requestId=request_id):
            token = _exchange.set(exchange)
            try:
                await super().asgi_app(scope, receive, send_with_id)
            finally:
                _exchange.reset(token)
                self._finish(method, path, exchange, time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: ASGIReceiveCallable,
                         send: ASGISendCallable) -> None:
        """Serve a websocket, then read the client's events until it disconnects.

        hypercorn hands a connection's events to the app through a short queue and only
        closes the TCP connection once the app took the disconnect; when the handler
        returns (after closing with 4008 or 4401) while the client still sends, nobody
        reads that queue, hypercorn's reader blocks on it for good and the connection
        stays in CLOSE-WAIT. So the events are drained here, for at most
        :data:`WS_CLOSE_GRACE_SECONDS`, after which hypercorn closes it regardless.
        """
        disconnected = False

        async def noting_receive() -> Any:
            nonlocal disconnected
            event = await receive()
            disconnected = disconnected or event["type"] == "websocket.disconnect"
            return event

        await super().asgi_app(scope, noting_receive, send)
        with trio.move_on_after(WS_CLOSE_GRACE_SECONDS):
            while not disconnected:
                await noting_receive()

    def _finish(self, method: str, path: str, exchange: _Exchange, seconds: float) -> None:
        # 499 (nginx's "client closed request"): the exchange ended before a response began.
        status = exchange.status if exchange.status is not None else 499
        label = method if method in _KNOWN_METHODS else "other"
        self.deps.metrics.observe_http(label, exchange.route, status, seconds)
        level = logging.DEBUG if status < 400 and (method, exchange.route) in HOT_ROUTES \
            else logging.INFO
        if _access_log.isEnabledFor(level):
            _access_log.log(level, "%s %s %d", method, path, status, extra={
                "method": method, "path": path, "status": status,
                "durationMs": round(seconds * 1000, 3)})


async def _note_route() -> None:
    exchange = _exchange.get()
    if exchange is not None and request.url_rule is not None:
        exchange.route = request.url_rule.rule


async def _enforce_header_limit() -> None:
    size = sum(len(name) + len(value) for name, value in request.headers.items())
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"the request headers are larger than {MAX_HEADER_BYTES} bytes",
                              details={"maxBytes": MAX_HEADER_BYTES})


async def _enforce_body_limit() -> None:
    # Refuses on the declared length before anything reads the body; a chunked body that
    # outgrows the limit is refused by Quart's MAX_CONTENT_LENGTH while it is read.
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes",
                              details={"maxBytes": limit})


async def _check_path_parameters() -> None:
    for name, value in (request.view_args or {}).items():
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        if isinstance(value, str) and not 0 < len(value) <= MAX_PATH_PARAMETER:
            raise InvalidRequest(f"{camel} must be 1-{MAX_PATH_PARAMETER} characters",
                                 details={"fields": [camel]})
        if isinstance(value, str):
            refuse_nul(value, camel)


def _lcx_version() -> str:
    try:
        return importlib.metadata.version("lcx")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def _blueprints(deps: AppDeps) -> list[Blueprint]:
    blueprints = [ops_blueprint(deps), openapi_blueprint(_lcx_version()),
                  console_blueprint(None if deps.config is None
                                    else deps.config.server.public_url)]
    if deps.demo is not None:
        from lcx.api.demo import demo_blueprint

        blueprints.append(demo_blueprint(deps, deps.demo))
    if deps.cluster_status is not None:
        from lcx.api.cluster import cluster_blueprint

        blueprints.append(cluster_blueprint(deps.cluster_status, deps.verifier))
    if deps.livechat is not None:
        from lcx.api.agent_ws import agent_ws_blueprint
        from lcx.api.bot_api import bot_blueprint
        from lcx.api.business_hours import business_hours_blueprint
        from lcx.api.management import management_blueprint
        from lcx.api.records import records_blueprint

        if deps.webhooks is not None:
            from lcx.api.webhooks import webhooks_blueprint

            livechat = deps.livechat
            blueprints.append(webhooks_blueprint(deps.webhooks[0], lambda: livechat.store,
                                                 deps.webhooks[1]))
        from lcx.api.aex import aex_blueprint

        blueprints += [agent_ws_blueprint(deps), bot_blueprint(deps), aex_blueprint(deps),
                       management_blueprint(deps), business_hours_blueprint(deps)]
        blueprints.append(records_blueprint(deps))
        from lcx.api.canned import canned_blueprint
        from lcx.api.overview import overview_blueprint

        blueprints += [canned_blueprint(deps), overview_blueprint(deps)]
        if deps.attachments is not None:
            from lcx.api.attachments import attachments_blueprint

            blueprints.append(attachments_blueprint(deps))
    return blueprints


def _body_limits(deps: AppDeps) -> dict[tuple[str, str], int]:
    if deps.livechat is None or deps.attachments is None:
        return {}
    from lcx.api.attachments import body_limits

    return body_limits(deps)


def create_app(deps: AppDeps, *, lean: bool = True) -> LcxApp:
    """Return a new app (a ``QuartTrio``) serving the routes of every area over ``deps``.

    With ``lean`` (the default) and a livechat, ``POST /messages`` and ``POST /requests``
    are served by :class:`~lcx.api.lean_routes.LeanRoutes` in front of Quart; without,
    by their Quart routes (the same rules and answers, at a higher cost per request).
    Creates no client, thread or task: serving it (``lcx.api.http_server.serve_http``)
    is what runs it. Each call returns an independent app.
    """
    app = LcxApp(__name__, static_folder=None)
    app.deps = deps
    # Our own logger: Quart's default one starts a QueueListener thread per app and
    # formats records off the request's task, where the logging context is gone.
    app.logger = logging.getLogger("lcx.api")
    app.config["MAX_CONTENT_LENGTH"] = deps.max_body_bytes
    app.body_limits = _body_limits(deps)
    app.before_request(_note_route)
    app.before_request(_enforce_header_limit)
    app.before_request(_enforce_body_limit)
    app.before_request(_check_path_parameters)
    install_error_handlers(app)
    if lean and deps.livechat is not None:
        from lcx.api.bot_rules import BotRules
        from lcx.api.lean_routes import LeanRoutes

        app.lean = LeanRoutes(BotRules(deps.livechat), deps.verifier,
                              max_header_bytes=MAX_HEADER_BYTES)
    for blueprint in _blueprints(deps):
        app.register_blueprint(blueprint)
    return app
