"""Errors that cross the bus: boxed on the instance that raised, unboxed on the caller.

A handler's exception travels as an :class:`ErrorBox` (a msgspec Struct: the exception's
class name, message, origin instance, and for :class:`~lcx.errors.ApiError` its code,
status, details and headers). The caller gets a :class:`~lcx.cluster.bus.RemoteError`
(:class:`RemoteApiError` when the cause was an ApiError); :func:`unbox` turns that back
into the ApiError class the handler raised, so a layer that forwards work to another
instance (placement) can re-raise ``NotFound`` or ``Conflict`` as if it had run locally::

    try:
        reply = await bus.request(owner, "conversation.send", payload, timeout=5)
    except RemoteError as exc:
        raise unbox(exc) from exc
"""

from __future__ import annotations

from typing import Any

import msgspec

from lcx.cluster.bus import RemoteError
from lcx.errors import ApiError


class ErrorBox(msgspec.Struct, frozen=True, kw_only=True):
    """An exception as it travels on the bus (the wire shape of a failed RPC)."""

    origin: str
    """The instance where it was raised (the first one, when forwarded along a chain)."""
    kind: str
    """The exception's class name (``NotFound``, ``ValueError``...)."""
    message: str
    code: str | None = None
    """ApiError only: the machine code (``not_found``)."""
    status: int | None = None
    """ApiError only: the HTTP status."""
    details: dict[str, Any] | None = None
    """ApiError only: the envelope details."""
    headers: dict[str, str] | None = None
    """ApiError only: response headers it asked for (``Retry-After``)."""


class RemoteApiError(RemoteError):
    """A :class:`RemoteError` whose cause was an :class:`~lcx.errors.ApiError`; carries what
    :func:`unbox` needs to rebuild it (code, status, headers)."""

    def __init__(self, message: str, *, origin: str, kind: str, code: str, status: int,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, origin=origin, kind=kind, details=details)
        self.code = code
        self.status = status
        self.headers = headers or {}


def box(exc: BaseException, *, origin: str) -> ErrorBox:
    """Box ``exc`` (raised on ``origin``) for the wire; a RemoteError keeps its own origin."""
    if isinstance(exc, RemoteApiError):
        return ErrorBox(origin=exc.origin, kind=exc.kind, message=exc.message, code=exc.code,
                        status=exc.status, details=_portable(exc.details),
                        headers=exc.headers or None)
    if isinstance(exc, RemoteError):
        return ErrorBox(origin=exc.origin, kind=exc.kind, message=exc.message,
                        details=_portable(exc.details))
    if isinstance(exc, ApiError):
        return ErrorBox(origin=origin, kind=type(exc).__name__, message=exc.message,
                        code=exc.code, status=exc.status, details=_portable(exc.details),
                        headers=dict(exc.headers) or None)
    return ErrorBox(origin=origin, kind=type(exc).__name__, message=str(exc))


def to_remote(boxed: ErrorBox) -> RemoteError:
    """The error a caller raises for a boxed failure (RemoteApiError for ApiErrors)."""
    if boxed.code is not None and boxed.status is not None:
        return RemoteApiError(boxed.message, origin=boxed.origin, kind=boxed.kind,
                              code=boxed.code, status=boxed.status, details=boxed.details,
                              headers=boxed.headers)
    return RemoteError(boxed.message, origin=boxed.origin, kind=boxed.kind,
                       details=boxed.details)


def unbox(error: RemoteError) -> Exception:
    """The exception to re-raise on the caller's side for ``error``.

    An ApiError raised by the remote handler comes back as the same ApiError class (found
    by class name, else by code among the subclasses of ApiError), with its message,
    details and headers; anything else (or an unknown class) is ``error`` itself.
    Never raises.
    """
    cls = _api_error_class(error.kind, getattr(error, "code", None))
    if cls is None:
        return error
    headers = error.headers if isinstance(error, RemoteApiError) else None
    return cls(error.message, details=error.details, headers=headers)


def _api_error_class(kind: str, code: str | None) -> type[ApiError] | None:
    """The ApiError subclass named ``kind`` (or, failing that, with ``code``)."""
    by_code: type[ApiError] | None = None
    for cls in _subclasses(ApiError):
        if cls.__name__ == kind:
            return cls
        if code is not None and by_code is None and cls.code == code:
            by_code = cls
    return by_code


def _subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    """``cls`` and every subclass of it, depth first."""
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def _portable(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """``details`` if msgpack can carry it, else its repr under ``repr``."""
    if details is None:
        return None
    try:
        msgspec.msgpack.encode(details)
    except (TypeError, ValueError, OverflowError):
        return {"repr": repr(details)}
    return details
