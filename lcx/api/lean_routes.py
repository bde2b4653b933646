"""The lean routes: ``POST /messages`` and ``POST /requests`` served at the ASGI level.

A bot calls these two for every message, and Quart's request machinery (request and
response objects, contexts, hooks, routing) cost more than the work itself. :class:`LeanRoutes`
serves exactly these two method+path pairs straight from the ASGI scope and receive
channel; everything else, these paths with other methods included (405, ``OPTIONS``),
stays with the Quart app. :class:`lcx.api.http_app.LcxApp` dispatches: the request id,
``X-Request-Id``/``nosniff`` headers, metrics and the access line stay its own, shared by
both paths.

The answers are the Quart route's, byte for byte where it matters: the same checks in the
same order (header size, declared body size, token, content type, body size while read,
body decoding with :func:`lcx.api.bodies.decode_json`), the same rules
(:class:`lcx.api.bot_rules.BotRules`), the same error envelope
(:func:`lcx.api.errors.error_reply`) and the same response headers. The sameness test
(``tests/api/test_lean_routes.py``) drives both paths with the same cases.

One difference, on purpose: a client that disconnects once its body is in does not cancel
the work (quart-trio cancels its handler then, and counts a 499). The message or request
is stored and the answer written to a closed socket is dropped; both endpoints are safe
to retry (the message ``id`` makes a resend idempotent, a second request is a 409), and a
half-done ask is what a cancel would leave instead. A client gone before its body is
complete is still a 499 with nothing done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout
from werkzeug.http import parse_options_header
from werkzeug.sansio.utils import get_content_length

from lcx.api.auth import principal_of_header
from lcx.api.bodies import JSON_CONTENT_TYPE, decode_json, require_json
from lcx.api.bot_rules import BOT_SCOPES, BotRules, CreateRequestBody, MessageBody
from lcx.api.errors import envelope, error_reply
from lcx.auth import Principal, TokenVerifier
from lcx.errors import HeadersTooLarge, PayloadTooLarge, Unauthorized
from lcx.server.http1 import BODY_NOW

__all__ = ["BODY_TIMEOUT_SECONDS", "LEAN_ROUTES", "Exchange", "LeanRoutes", "RawRequest"]

LEAN_ROUTES = frozenset({("POST", "/messages"), ("POST", "/requests")})
"""The (method, path) pairs the lean routes serve."""
BODY_TIMEOUT_SECONDS = 60.0
"""How long reading a body may take before 408 (Quart's ``BODY_TIMEOUT``)."""

_JSON_TYPE = JSON_CONTENT_TYPE.encode("ascii")
_encoder = msgspec.json.Encoder()
# What Quart adds to the request's headers before the header-size check counts them: a
# ``Remote-Addr`` header (the client's address), and for HTTP/1.0 an empty ``Host``.
_REMOTE_ADDR = len("Remote-Addr")
_EMPTY_HOST = len("Host")
_USED_HEADERS = {name.encode("latin-1"): name for name in (
    "authorization", "content-type", "content-length", "transfer-encoding", "host")}
"""The headers the lean routes read, by their lowercased bytes."""
_JSON_MIMETYPE = "application/json"
_NO_EXTENSIONS: Mapping[str, Any] = {}


class RawRequest:
    """One request as the lean routes read it: the few headers they use, decoded once.

    ``headers`` holds only :data:`_USED_HEADERS` (the first of repeated ones, as
    werkzeug's ``get``); the header size Quart would count is summed in the same pass.
    """

    __slots__ = ("content_length", "headers", "mimetype", "scope", "size")

    def __init__(self, scope: HTTPScope) -> None:
        self.scope = scope
        headers: dict[str, str] = {}
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            key = _USED_HEADERS.get(name)
            if key is None:
                lowered = name.lower()
                if lowered == name:
                    continue
                key = _USED_HEADERS.get(lowered)
                if key is None:
                    continue
            if key not in headers:
                headers[key] = value.decode("latin-1")
        self.headers = headers
        self.size = size
        content_type = headers.get("content-type", "")
        # the common header needs no parsing; anything else is parsed as Quart does
        self.mimetype = _JSON_MIMETYPE if content_type == _JSON_MIMETYPE else \
            parse_options_header(content_type)[0].lower()
        self.content_length = get_content_length(headers.get("content-length"),
                                                 headers.get("transfer-encoding"))

    def header_bytes(self) -> int:
        """The header size Quart's request counts (names and values, latin-1)."""
        size = self.size + _REMOTE_ADDR + len((self.scope.get("client") or ("<local>",))[0])
        if self.scope["http_version"] < "1.1" and "host" not in self.headers:
            size += _EMPTY_HOST
        return size


class Exchange(Protocol):
    """What the app notes of an exchange the lean routes answer: the status sent."""

    status: int | None


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


Handler = Callable[[Principal, bytes], Awaitable[tuple[int, Any]]]


class LeanRoutes:
    """Serves :data:`LEAN_ROUTES` over ``rules``, as the Quart bot routes would."""

    def __init__(self, rules: BotRules, verifier: TokenVerifier | None, *,
                 max_header_bytes: int) -> None:
        self.rules = rules
        self.verifier = verifier
        self.max_header_bytes = max_header_bytes
        self._handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/messages"): self._post_message,
            ("POST", "/requests"): self._create_request}

    async def _post_message(self, principal: Principal, body: bytes) -> tuple[int, Any]:
        return 202, await self.rules.message_posted(principal, decode_json(body, MessageBody))

    async def _create_request(self, principal: Principal, body: bytes) -> tuple[int, Any]:
        decoded = decode_json(body, CreateRequestBody)
        return 201, await self.rules.request_created(principal, decoded)

    async def serve(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                    send: ASGISendCallable, body_limit: int | None,
                    exchange: Exchange, own_headers: tuple[tuple[bytes, bytes], ...] = (),
                    ) -> None:
        """Answer one exchange of a (method, path) in :data:`LEAN_ROUTES`.

        ``exchange.status`` is set as the response starts (it stays None when the client
        left first); ``own_headers`` end the header list (the app's request id and
        ``nosniff``), replacing any header of the same name the answer carried.
        """
        handler = self._handlers[(scope["method"], scope["path"])]
        headers: list[tuple[bytes, bytes]] = []
        try:
            request = RawRequest(scope)
            principal, body = await self._read(request, receive, body_limit)
            status, payload = await handler(principal, body)
            encoded = _encoder.encode(payload)
        except _ClientGone:  # nobody to answer: the exchange is counted as 499
            return
        except Exception as exc:
            reply = error_reply(exc)
            status, encoded = reply.status, _encoder.encode(envelope(reply))
            own = {name for name, _ in own_headers}
            headers = [(key, value.encode("latin-1")) for key, value in
                       ((name.lower().encode("latin-1"), value)
                        for name, value in reply.headers.items()) if key not in own]
        exchange.status = status
        await send({"type": "http.response.start", "status": status, "headers": [
            *headers, (b"content-type", _JSON_TYPE),
            (b"content-length", str(len(encoded)).encode("ascii")), *own_headers]})
        await send({"type": "http.response.body", "body": encoded, "more_body": False})

    async def _read(self, request: RawRequest, receive: ASGIReceiveCallable,
                    limit: int | None) -> tuple[Principal, bytes]:
        """The checks before the handler, in the Quart path's order, then the body."""
        if request.header_bytes() > self.max_header_bytes:
            raise HeadersTooLarge(
                f"the request headers are larger than {self.max_header_bytes} bytes",
                details={"maxBytes": self.max_header_bytes})
        if limit is not None and (request.content_length or 0) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes",
                                  details={"maxBytes": limit})
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = principal_of_header(request.headers.get("authorization"), self.verifier,
                                        *BOT_SCOPES)
        require_json(request.mimetype)
        extensions: Mapping[str, Any] = request.scope.get("extensions") or _NO_EXTENSIONS
        body_now: Callable[[], bytes | None] | None = extensions.get(BODY_NOW)
        if body_now is not None and (body := body_now()) is not None:
            # it came with the head (lcx's HTTP server): nothing to wait for, nor to time
            if limit is not None and len(body) > limit:
                raise RequestEntityTooLarge()
            return principal, body
        return principal, await _body(receive, limit)


async def _body(receive: ASGIReceiveCallable, limit: int | None) -> bytes:
    """The whole request body; 413 once it outgrows ``limit``, 408 after the timeout."""
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(BODY_TIMEOUT_SECONDS) as timer:
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before the end
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if limit is not None and size > limit:
                    raise RequestEntityTooLarge()
            if not message.get("more_body", False):
                break
    if timer.cancelled_caught:
        raise RequestTimeout()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
