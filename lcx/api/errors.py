"""The error envelope of API.md section 1, for every error a request can end in.

Every error response is ``{"error": {"code", "message", "details"?}}`` and never a stack
trace. :func:`error_reply` decides what an exception becomes:

- :class:`~lcx.errors.ApiError`: its own status, code, message, details and headers;
- werkzeug/Quart ``HTTPException`` (routing 404/405, 413 from ``MAX_CONTENT_LENGTH``...):
  the lcx code for its status, keeping headers such as ``Allow``;
- the runtime refusing work (``ActorStopped``, ``AskTimeout``, ``MailboxFull``) or the
  store being down (``StoreUnavailable``): 503 ``unavailable`` with ``Retry-After``;
- anything else is a bug: 500 ``internal`` whose ``details.traceId`` is a fresh id, logged
  with the traceback under that id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from quart import Quart
from quart_trio.wrappers import TrioResponse
from werkzeug.exceptions import HTTPException, InternalServerError

from lcx.api.bodies import json_response
from lcx.errors import (
    ActorStopped,
    ApiError,
    AskTimeout,
    MailboxFull,
    StaleState,
    StoreUnavailable,
)
from lcx.ids import new_id

__all__ = [
    "ErrorReply", "code_for_status", "envelope", "error_reply", "install_error_handlers",
    "render_error",
]

_log = logging.getLogger(__name__)

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
_BUSY = (ActorStopped, AskTimeout, MailboxFull)
_RETRY_AFTER = {"Retry-After": "1"}
# werkzeug describes its errors in HTML; our body is JSON and sets its own content type.
_DROPPED_HEADERS = frozenset({"content-type", "content-length"})


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What an error response says: status, envelope fields and extra headers."""

    status: int
    code: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def code_for_status(status: int) -> str:
    """Return the lcx machine code of an HTTP error status (``418`` -> ``im_a_teapot``)."""
    if status in _CODES:
        return _CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("'", "")
    except ValueError:
        return "internal" if status >= 500 else "invalid_request"


# werkzeug's descriptions are written for browsers; API clients get one plain sentence
_PLAIN_MESSAGES = {404: "no such resource", 405: "this method is not allowed on this path"}


def _from_http_exception(exc: HTTPException) -> ErrorReply:
    status = exc.code or 500
    headers = {name: value for name, value in exc.get_headers()
               if name.lower() not in _DROPPED_HEADERS}
    message = _PLAIN_MESSAGES.get(status) or exc.description or HTTPStatus(status).phrase
    return ErrorReply(status, code_for_status(status), message, headers=headers)


def _internal(exc: BaseException) -> ErrorReply:
    trace_id = new_id()
    _log.error("unhandled error in request", exc_info=exc, extra={"traceId": trace_id})
    return ErrorReply(500, "internal", "internal error; quote the traceId when reporting it",
                      {"traceId": trace_id})


def busy_reason(exc: BaseException) -> str:
    """The documented ``details.reason`` of a refusal by the actor runtime:
    ``owner_moving`` (the actor's owner died or is handing over; retry shortly) or
    ``overloaded`` (a mailbox is full or the actor did not answer in time)."""
    return "owner_moving" if isinstance(exc, ActorStopped) else "overloaded"


def error_reply(exc: BaseException) -> ErrorReply:
    """Map ``exc`` to the reply the client gets; logs it when it is a bug (500)."""
    if isinstance(exc, ApiError):
        return ErrorReply(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, InternalServerError):  # Quart's own 500, or a deliberate abort(500)
        return _internal(exc.original_exception or exc)
    if isinstance(exc, HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, _BUSY):
        _log.warning("request refused by the actor runtime: %r", exc)
        return ErrorReply(503, "unavailable", "the service is busy; retry shortly",
                          {"reason": busy_reason(exc)}, dict(_RETRY_AFTER))
    if isinstance(exc, StaleState):  # two instances acted for one actor while it moved
        _log.warning("request refused: the conversation changed under it: %r", exc)
        return ErrorReply(503, "unavailable", "the conversation is moving; retry shortly",
                          {"reason": "owner_moving"}, dict(_RETRY_AFTER))
    if isinstance(exc, StoreUnavailable):
        _log.warning("request failed, the store is unavailable: %r", exc)
        return ErrorReply(503, "unavailable", "the store is unavailable; retry shortly",
                          {"dependency": "store"}, dict(_RETRY_AFTER))
    return _internal(exc)


def envelope(reply: ErrorReply) -> dict[str, Any]:
    """The error envelope of ``reply``: ``{"error": {"code", "message", "details"?}}``."""
    error: dict[str, Any] = {"code": reply.code, "message": reply.message}
    if reply.details:
        error["details"] = reply.details
    return {"error": error}


def render_error(reply: ErrorReply) -> TrioResponse:
    """Return the JSON error-envelope response of ``reply``."""
    return json_response(envelope(reply), reply.status, reply.headers)


async def _handle(exc: Exception) -> TrioResponse:
    return render_error(error_reply(exc))


def install_error_handlers(app: Quart) -> None:
    """Make every exception a request raises end in the error envelope."""
    app.register_error_handler(Exception, _handle)
