"""Structured logs: one JSON object per line on stderr, with context bound by contextvars.

Every record carries ``ts`` (RFC 3339 UTC, milliseconds), ``level``, ``logger`` and
``msg``; then the fields bound for the whole process (:func:`bind_global`, e.g.
``instanceId``), then the fields bound for the current task (:func:`bind`, e.g.
``requestId``, ``conversationId``, ``tenantId``), then the record's own ``extra=`` fields,
then ``exc`` with the formatted traceback when there is one.

Context lives in a :class:`contextvars.ContextVar`, so a Trio task inherits the fields bound
where it was spawned and its own bindings never leak into its siblings. Records are
formatted in the thread that emits them (a plain :class:`logging.StreamHandler`), which is
what makes the context visible to the formatter.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TextIO

import msgspec

from lcx.errors import ConfigError

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "bind_global",
    "bound_fields",
    "configure_logging",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("lcx_log_context", default=_EMPTY)
_global: Mapping[str, Any] = _EMPTY

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

_encoder = msgspec.json.Encoder(enc_hook=str)


class bind:  # noqa: N801 - used as a function: ``with bind(requestId=...):``
    """Add ``fields`` to every record logged in this context until the block exits.

    Bindings nest (an inner value wins) and are restored on exit; a value of ``None``
    removes the field for the duration of the block. A plain context manager (no
    generator): it is entered for every HTTP request.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._token: Token[Mapping[str, Any]] | None = None

    def __enter__(self) -> None:
        fields = self._fields
        merged = {**_context.get(), **fields}
        if None in fields.values():  # the context itself never holds a None
            merged = {k: v for k, v in merged.items() if v is not None}
        self._token = _context.set(MappingProxyType(merged))

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def bind_global(**fields: Any) -> None:
    """Add ``fields`` to every record of the process (``None`` removes one); idempotent."""
    global _global
    merged = {**_global, **fields}
    _global = MappingProxyType({k: v for k, v in merged.items() if v is not None})


def bound_fields() -> dict[str, Any]:
    """Return the fields a record logged here would carry: global, then context."""
    return {**_global, **_context.get()}


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update(bound_fields())
    fields.update((key, value) for key, value in record.__dict__.items()
                  if key not in _RECORD_ATTRS and not key.startswith("_"))
    return fields


class JsonFormatter(logging.Formatter):
    """Render a record as one line of JSON (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single-line JSON object."""
        fields = _record_fields(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(fields).decode()


class TextFormatter(logging.Formatter):
    """Render a record for humans: ``ts level logger: msg key=value ...`` plus traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line, followed by the traceback lines if any."""
        fields = _record_fields(record)
        head = f"{fields.pop('ts')} {fields.pop('level'):<7} {fields.pop('logger')}: "
        text = head + str(fields.pop("msg"))
        text += "".join(f" {key}={value}" for key, value in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _LcxHandler(logging.StreamHandler[TextIO]):
    """The stderr handler :func:`configure_logging` installs (and replaces on a re-call)."""


QUIET_LIBRARIES = ("httpx", "httpcore")
"""Loggers kept at warning level unless lcx logs at debug level."""


def configure_logging(level: str, fmt: Literal["json", "text"]) -> None:
    """Send every log record at ``level`` or above to stderr, formatted as ``fmt``.

    Installs one handler on the root logger, replacing the one a previous call installed
    (other handlers are left alone), so calling it again is safe.

    Raises:
        ConfigError: ``level`` is not a logging level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ConfigError(f"log level: unknown level {level!r}")
    handler = _LcxHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LcxHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries that log a line per outbound call (httpx: one per bot POST) speak only at
    # debug level; their warnings and errors always come through.
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(numeric if numeric <= logging.DEBUG
                                           else max(numeric, logging.WARNING))
