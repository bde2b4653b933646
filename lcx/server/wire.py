"""The bytes of HTTP/1.1 response heads: status lines, the ``date`` header, framing."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

__all__ = ["CONTINUE", "Framing", "HeadError", "bare_response", "date_line", "encode_head",
           "status_line"]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""What a client that sent ``Expect: 100-continue`` waits for before sending its body."""
NO_BODY_STATUSES = frozenset({204, 304})
"""Statuses whose responses never carry a body (nor a chunked framing)."""

_status_lines: dict[int, bytes] = {}
_date: tuple[int, bytes] = (0, b"")


class HeadError(ValueError):
    """The app gave a response head that cannot be written (a CR or LF in a header)."""


class Framing:
    """How a response's body is delimited on the wire."""

    LENGTH = 0
    """By its ``content-length`` header."""
    CHUNKED = 1
    """By chunked transfer coding (a stream of unknown length to an HTTP/1.1 client)."""
    CLOSE = 2
    """By closing the connection (a stream of unknown length to an HTTP/1.0 client)."""
    NONE = 3
    """No body at all (204, 304)."""


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (the reason is empty for unknown statuses)."""
    line = _status_lines.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = _status_lines[status] = f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")
    return line


def date_line() -> bytes:
    """``date: <IMF-fixdate>\\r\\n`` of the current second (formatted once a second)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"date: %b\r\n" % formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


def encode_head(status: int, headers: Iterable[tuple[bytes, bytes]], *, chunked_ok: bool,
                close: bool) -> tuple[bytes, int, int | None, bool]:
    """Encode a response head: (bytes, :class:`Framing`, declared length, closes after).

    The app's headers are written as given, then ``date``, then what the framing needs
    (``transfer-encoding: chunked`` for a stream to an HTTP/1.1 client, whose
    ``chunked_ok``) and ``connection: close`` when the connection closes after this
    response (``close``, the app's own ``connection: close``, or a stream to an HTTP/1.0
    client).

    Raises:
        HeadError: a header name or value holds a CR or LF.
    """
    parts = [status_line(status)]
    length: int | None = None
    app_close = False
    count = 0
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"connection":
            app_close = app_close or b"close" in value.lower()
        parts += (name, b": ", value, b"\r\n")
        count += 1
    parts.append(date_line())
    if status in NO_BODY_STATUSES or status < 200:
        framing = Framing.NONE
    elif length is not None:
        framing = Framing.LENGTH
    elif chunked_ok:
        framing = Framing.CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
        count += 1
    else:
        framing = Framing.CLOSE
        close = True
    close = close or app_close
    if close and not app_close:
        parts.append(b"connection: close\r\n")
        count += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    # One LF per header line, the status line, date and the blank line: any other is
    # a CR or LF inside a name or value, which would split the head.
    if head.count(b"\n") != count + 3 or head.count(b"\r") != count + 3:
        raise HeadError("a response header holds a CR or LF")
    return head, framing, length, close


def bare_response(status: int) -> bytes:
    """A complete empty response that closes the connection (400, 431, 500)."""
    return b"%b%bcontent-length: 0\r\nconnection: close\r\n\r\n" % (status_line(status),
                                                                    date_line())
