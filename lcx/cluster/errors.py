"""The one codec for errors that cross the bus: boxed where raised, rebuilt by the caller.

An exception travels as an :class:`ErrorBox` (a msgspec Struct): its class name and the
names of its :class:`~lcx.errors.LcxError` ancestors, its message, the instance it was
raised on, and what its class carries: for :class:`~lcx.errors.ApiError` the code, status,
details and headers (so a remote ``Retry-After`` survives), for
:class:`~lcx.errors.EdgeCallFailed` its retry classification. :func:`rebuild` turns a box
back into the same class on the caller's side (or its nearest ancestor known here), so a
layer that forwards work to another instance re-raises ``NotFound`` or ``EdgeCallFailed``
as if it had run locally. Anything that is not an LcxError stays a
:class:`~lcx.cluster.bus.RemoteError`: a bug on the remote side is never dressed up as an
expected outcome::

    try:
        reply = await bus.request(owner, "conversation.send", payload, timeout=5)
    except RemoteError as exc:
        raise unbox(exc) from exc
"""

from __future__ import annotations

from typing import Any

import msgspec

from lcx.cluster.bus import RemoteError
from lcx.errors import ApiError, EdgeCallFailed, LcxError


class EdgeFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The retry classification of an :class:`~lcx.errors.EdgeCallFailed`."""

    retry: bool
    retry_after: float | None = None
    auth: bool = False
    status: int | None = None


class ErrorBox(msgspec.Struct, frozen=True, kw_only=True):
    """An exception as it travels on the bus (the wire shape of a failed call)."""

    origin: str
    """The instance where it was raised (the first one, when forwarded along a chain)."""
    kind: str
    """The exception's class name (``NotFound``, ``ValueError``...)."""
    message: str
    bases: tuple[str, ...] = ()
    """LcxErrors only: the names of its LcxError ancestors, nearest first (a caller that
    does not know ``kind`` rebuilds the nearest one it knows)."""
    code: str | None = None
    """ApiError only: the machine code (``not_found``)."""
    status: int | None = None
    """ApiError only: the HTTP status."""
    details: dict[str, Any] | None = None
    """ApiError only: the envelope details."""
    headers: dict[str, str] | None = None
    """ApiError only: response headers it asked for (``Retry-After``)."""
    edge: EdgeFailure | None = None
    """EdgeCallFailed only: its retry classification."""


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


class RemoteLcxError(RemoteError):
    """A :class:`RemoteError` whose cause was an :class:`~lcx.errors.LcxError`; keeps the
    whole box so that :func:`unbox` rebuilds the same class."""

    def __init__(self, boxed: ErrorBox) -> None:
        super().__init__(boxed.message, origin=boxed.origin, kind=boxed.kind,
                         details=boxed.details)
        self.boxed = boxed


def box(exc: BaseException, *, origin: str) -> ErrorBox:
    """Box ``exc`` (raised on ``origin``) for the wire; a RemoteError keeps its own origin."""
    if isinstance(exc, RemoteLcxError):
        return exc.boxed
    if isinstance(exc, RemoteApiError):
        return ErrorBox(origin=exc.origin, kind=exc.kind, message=exc.message, code=exc.code,
                        status=exc.status, details=_portable(exc.details),
                        headers=exc.headers or None)
    if isinstance(exc, RemoteError):
        return ErrorBox(origin=exc.origin, kind=exc.kind, message=exc.message,
                        details=_portable(exc.details))
    if not isinstance(exc, LcxError):
        return ErrorBox(origin=origin, kind=type(exc).__name__, message=str(exc))
    bases = tuple(c.__name__ for c in type(exc).__mro__[1:]
                  if issubclass(c, LcxError))
    if isinstance(exc, ApiError):
        return ErrorBox(origin=origin, kind=type(exc).__name__, message=exc.message,
                        bases=bases, code=exc.code, status=exc.status,
                        details=_portable(exc.details), headers=dict(exc.headers) or None)
    edge = None
    if isinstance(exc, EdgeCallFailed):
        edge = EdgeFailure(retry=exc.retry, retry_after=exc.retry_after, auth=exc.auth,
                           status=exc.status)
    return ErrorBox(origin=origin, kind=type(exc).__name__, message=str(exc), bases=bases,
                    edge=edge)


def rebuild(boxed: ErrorBox) -> Exception:
    """The exception a caller raises for a boxed failure.

    An LcxError comes back as the same class (or, when the caller does not know it or it
    needs more than the box carries to be built, its nearest ancestor) with its message and
    what its class carries; anything else is a :class:`RemoteError` (a
    :class:`RemoteApiError` when only the code and status are known). Never raises.
    """
    for name in (boxed.kind, *boxed.bases):
        cls = _lcx_class(name, (), None)
        if cls is None:
            continue
        try:
            return _build(cls, boxed)
        except TypeError:  # a subclass with a constructor of its own
            continue
    cls = _lcx_class("", (), boxed.code)
    if cls is not None:
        try:
            return _build(cls, boxed)
        except TypeError:
            pass
    return to_remote(boxed)


def _build(cls: type[LcxError], boxed: ErrorBox) -> LcxError:
    if issubclass(cls, ApiError):
        return cls(boxed.message, details=boxed.details, headers=boxed.headers)
    if issubclass(cls, EdgeCallFailed):
        edge = boxed.edge or EdgeFailure(retry=False)
        return cls(boxed.message, retry=edge.retry, retry_after=edge.retry_after,
                   auth=edge.auth, status=edge.status)
    return cls(boxed.message)


def to_remote(boxed: ErrorBox) -> RemoteError:
    """The bus error a caller raises for a boxed failure (see :func:`unbox`)."""
    if boxed.bases:
        return RemoteLcxError(boxed)
    if boxed.code is not None and boxed.status is not None:
        return RemoteApiError(boxed.message, origin=boxed.origin, kind=boxed.kind,
                              code=boxed.code, status=boxed.status, details=boxed.details,
                              headers=boxed.headers)
    return RemoteError(boxed.message, origin=boxed.origin, kind=boxed.kind,
                       details=boxed.details)


def unbox(error: RemoteError) -> Exception:
    """The exception to re-raise on the caller's side for ``error``.

    An LcxError raised by the remote handler comes back as the same class (see
    :func:`rebuild`); an ApiError known only by its class name or code (a bare
    RemoteError, as the in-process bus raises) is rebuilt too; anything else is ``error``
    itself. Never raises.
    """
    if isinstance(error, RemoteLcxError):
        rebuilt = rebuild(error.boxed)
        return error if isinstance(rebuilt, RemoteError) else rebuilt
    cls = _lcx_class(error.kind, (), getattr(error, "code", None))
    if cls is None or not issubclass(cls, ApiError):
        return error
    headers = error.headers if isinstance(error, RemoteApiError) else None
    return cls(error.message, details=error.details, headers=headers)


def _lcx_class(kind: str, bases: tuple[str, ...], code: str | None
               ) -> type[LcxError] | None:
    """The LcxError subclass named ``kind``, else the nearest of ``bases``, else the
    ApiError subclass with ``code``."""
    known = {cls.__name__: cls for cls in _subclasses(LcxError)
             if not issubclass(cls, RemoteError)}  # the carriers are not rebuilt by name
    for name in (kind, *bases):
        if name in known:
            return known[name]
    if code is not None:
        return next((c for c in _subclasses(ApiError)
                     if issubclass(c, ApiError) and c.code == code), None)
    return None


def _subclasses(cls: type[LcxError]) -> list[type[LcxError]]:
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
