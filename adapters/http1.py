"""A small HTTP/1.1 client for one job: POST a prepared request, read the status back.

The bot client (:mod:`adapters.bot_events`) sends thousands of small POSTs a second to a
few URLs over keep-alive connections. A general client (httpx, httpcore + h11) spends most
of its CPU per request on layers this does not need: header normalisation and validation
of headers it built itself, a per-request state machine, pool bookkeeping with locks and
cancel shields. :class:`Http1Pool` keeps, per origin, a stack of idle connections; a
request is one write of bytes prepared by the caller and a parse of the response head and
body (``Content-Length``, chunked, or read to the end of the connection). On a plain TCP
connection the request is written and the response read with ``os.write`` / ``os.read`` on
the socket's descriptor and one wait for it to become readable: one pass through Trio's
scheduler per request when the answer comes in one segment (a ``SocketStream``'s send and
receive make three). TLS connections go through ``trio.SSLStream``.

A request's ``timeout`` is kept without a cancel scope on that path: the request's deadline
joins the run's :class:`~lcx.runtime.deadline_keeper.DeadlineKeeper` of HTTP requests
(finished requests are dropped from it early, so it wakes about once per timeout), and a
request still waiting past its deadline has its socket's waits woken (``notify_closing``)
and raises :class:`TimedOut`. Waiting for a slot, connecting and TLS are bounded by a
cancel scope at the same deadline.

Guarantees kept: a connection is reused only after a complete response to a request that
did not ask to close it, within ``keepalive`` seconds of its last use; a connection that
saw an error, a cancellation or an incomplete response is closed, never reused. A request
that fails on a *reused* connection before any byte of the response came back (the server
closed the idle connection meanwhile) is sent once more on a new connection; callers must
tolerate a repeated request (event POSTs carry an ``Idempotency-Key``).
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from lcx.runtime.deadline_keeper import DeadlineKeeper, keeper_of_run

__all__ = ["DEADLINE_SLACK", "ConnectFailed", "Http1Pool", "Origin", "ProtocolFailure",
           "Response", "TimedOut"]

MAX_HEAD_BYTES = 65_536
"""The longest response head (status line and headers) accepted."""
MAX_DRAIN_BYTES = 1 << 20
"""Body bytes read past the kept start before the connection is closed instead."""
_READ_SIZE = 65_536
_NO_BODY = frozenset({204, 304})
DEADLINE_SLACK = 0.1
"""How late past its deadline a request on a kept-alive connection may still raise
:class:`TimedOut` (the keeper wakes at the deadline; this bounds the scheduling)."""


class ProtocolFailure(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


class ConnectFailed(OSError):
    """No connection could be opened to the origin."""


class TimedOut(Exception):
    """The request did not complete within its ``timeout``."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: scheme (``http`` or ``https``), host name and port."""

    scheme: str
    host: str
    port: int


class Response:
    """A complete response: status, headers (names in lower case) and the body's start.

    The headers are parsed from the head only when asked for (an event POST's 2xx needs
    none of them)."""

    __slots__ = ("_fields", "_headers", "body_start", "status")

    def __init__(self, status: int, fields: bytes, body_start: bytes) -> None:
        self.status = status
        self.body_start = body_start
        self._fields = fields
        self._headers: tuple[tuple[str, str], ...] | None = None

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` pairs in order, names in lower case, values stripped."""
        if self._headers is None:
            self._headers = tuple(_header_pairs(self._fields))
        return self._headers

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body_start={self.body_start!r})"


@dataclass(frozen=True, slots=True)
class _Head:
    """What a response head tells the reader: the status, how the body is framed, and
    whether the connection may be kept; ``fields`` is the raw header block."""

    status: int
    keep_alive: bool
    length: bytes | None
    """The ``Content-Length`` value, if any (checked when the body is read)."""
    encoding: bytes
    """The ``Transfer-Encoding`` values, lower case, comma-joined (empty: none)."""
    fields: bytes
    """The header lines, each starting with CRLF (parsed only on demand)."""


@dataclass(eq=False)
class _Connection:
    stream: trio.abc.Stream
    fd: int = -1
    """The socket's descriptor for direct reads and writes (plain TCP), or -1 (TLS)."""
    watched: int = 0
    """The number of the watched request in flight on it (0: none is watched)."""
    timed_out: bool = False
    """Its request was found past the deadline: it waits no more."""
    last_used: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)


class _Eof(Exception):
    """The connection ended before the response did."""


class Http1Pool:
    """Keep-alive HTTP/1.1 connections, at most ``max_connections`` at once in all.

    ``keepalive`` is how long an idle connection is kept for the next request; ``tls`` the
    context of ``https`` origins. Safe to use from many Trio tasks at once. Close it with
    :meth:`aclose` (or open it with :func:`open_pool`).
    """

    def __init__(self, *, max_connections: int = 100, keepalive: float = 60.0,
                 tls: ssl.SSLContext | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._idle: dict[Origin, list[_Connection]] = {}
        self._max = max_connections
        self._busy = 0
        """Requests holding a connection slot now."""
        self._queue = trio.lowlevel.ParkingLot()
        """Requests waiting for a slot (a release hands its slot to the first)."""
        self._keepalive = keepalive
        self._tls = tls
        self.opened = 0
        """Connections opened so far (for tests and metrics)."""
        self._watch_number = 0

    async def request(self, origin: Origin, data: bytes, *, keep: int = 200,
                      timeout: float = math.inf) -> Response:
        """Send ``data`` (a complete request: head and body) to ``origin``; the response
        with the first ``keep`` bytes of its body (the rest is read and dropped).

        Raises :class:`ConnectFailed`, :class:`ProtocolFailure`, ``OSError`` or a
        ``trio.BrokenResourceError`` for what went wrong, :class:`TimedOut` when it took
        longer than ``timeout`` seconds (at most :data:`DEADLINE_SLACK` more); cancellation
        propagates.
        """
        deadline = trio.current_time() + timeout
        if self._busy < self._max:  # the common case: no scheduler round trip
            self._busy += 1
        else:
            with trio.move_on_at(deadline) as waited:
                await self._queue.park()  # woken by a release that hands its slot over
            if waited.cancelled_caught:  # no slot was handed over
                raise TimedOut
        try:
            connection = self._reusable(origin)
            if connection is not None:
                try:
                    return await self._watched(origin, connection, data, keep, deadline)
                except _StaleConnection:
                    pass  # the server had closed it: once more on a new one
            with trio.move_on_at(deadline):
                connection = await self._connect(origin)
                return await self._exchange(origin, connection, data, keep, fresh=True)
            raise TimedOut
        finally:
            if self._queue:
                self._queue.unpark()  # the slot goes on to the first waiter
            else:
                self._busy -= 1

    async def _watched(self, origin: Origin, connection: _Connection, data: bytes,
                       keep: int, deadline: float) -> Response:
        """:meth:`_exchange` on a kept-alive connection, bounded by the run's keeper of
        request deadlines (plain TCP) or by a cancel scope (TLS)."""
        if connection.fd < 0 or deadline == math.inf:
            with trio.move_on_at(deadline):
                return await self._exchange(origin, connection, data, keep, fresh=False)
            raise TimedOut
        self._watch_number += 1
        connection.watched = number = self._watch_number
        _request_deadlines().watch(deadline, (number, connection))
        try:
            return await self._exchange(origin, connection, data, keep, fresh=False)
        except trio.ClosedResourceError:
            if connection.timed_out:
                raise TimedOut from None
            raise
        finally:
            connection.watched = 0

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await trio.aclose_forcefully(connection.stream)

    def _reusable(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            connection = stack.pop()
            if now - connection.last_used < self._keepalive:
                return connection
            _close_soon(connection)
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(origin.host, origin.port)
        except OSError as exc:
            raise ConnectFailed(str(exc)) from exc
        if origin.scheme == "https":
            context = self._tls or ssl.create_default_context()
            tls = trio.SSLStream(stream, context, server_hostname=origin.host,
                                 https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
            stream = tls
        self.opened += 1
        if isinstance(stream, trio.SocketStream):
            return _Connection(stream, stream.socket.fileno())
        return _Connection(stream)

    async def _exchange(self, origin: Origin, connection: _Connection, data: bytes,
                        keep: int, *, fresh: bool) -> Response:
        reusable = False
        try:
            try:
                if connection.fd >= 0:
                    await _send_direct(connection, data)
                else:
                    await connection.stream.send_all(data)
                head = await _read_head(connection)
            except (_Eof, OSError, trio.BrokenResourceError) as exc:
                if not fresh:
                    raise _StaleConnection from exc
                if isinstance(exc, _Eof):
                    raise ProtocolFailure("connection closed before the response") from exc
                raise
            try:
                while 100 <= head.status < 200:  # interim answers (100 Continue): skip them
                    head = await _read_head(connection)
                body, complete = await _read_body(connection, head, keep)
                reusable = complete and not connection.buffer
            except _Eof as exc:
                raise ProtocolFailure("connection closed before the response ended") from exc
            return Response(head.status, head.fields, body)
        finally:
            if reusable:
                connection.last_used = trio.current_time()
                self._idle.setdefault(origin, []).append(connection)
            else:
                _close_soon(connection)


class _StaleConnection(Exception):
    """A reused connection failed before any byte of the response."""


def _close_soon(connection: _Connection) -> None:
    """Close a connection without waiting (a TLS close-notify is not worth a wait)."""
    stream = connection.stream
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()


def _deadline_came(item: tuple[int, _Connection], now: float) -> None:
    number, connection = item
    if connection.watched == number:  # still in flight: give it up
        connection.timed_out = True
        trio.lowlevel.notify_closing(connection.fd)


def _finished(item: tuple[int, _Connection]) -> bool:
    number, connection = item
    return connection.watched != number


_REQUEST_DEADLINES: trio.lowlevel.RunVar[DeadlineKeeper[tuple[int, _Connection]]] = \
    trio.lowlevel.RunVar("lcx_http1_deadlines")


def _request_deadlines() -> DeadlineKeeper[tuple[int, _Connection]]:
    """The keeper of watched requests' deadlines, one per Trio run (for every pool)."""
    return keeper_of_run(_REQUEST_DEADLINES, lambda: DeadlineKeeper(
        "lcx.http1_deadlines", _deadline_came, settled=_finished))


async def _send_direct(connection: _Connection, data: bytes) -> None:
    """Write ``data`` to a non-blocking socket, then wait until the answer can be read
    (the one checkpoint of a request whose answer comes in one segment)."""
    fd = connection.fd
    sent = 0
    while True:
        try:
            sent += os.write(fd, data[sent:] if sent else data)
        except BlockingIOError:
            sent += 0  # the socket's buffer is full: wait below
        if sent >= len(data):
            break
        _refuse_timed_out(connection)
        await trio.lowlevel.wait_writable(fd)
    _refuse_timed_out(connection)
    await trio.lowlevel.wait_readable(fd)


def _refuse_timed_out(connection: _Connection) -> None:
    """No wait on a connection whose request was given up at its deadline (it was woken while
    its task was already runnable)."""
    if connection.timed_out:
        raise trio.ClosedResourceError("the request timed out")


async def _fill(connection: _Connection) -> None:
    fd = connection.fd
    if fd < 0:
        chunk = await connection.stream.receive_some(_READ_SIZE)
    else:
        while True:
            try:
                chunk = os.read(fd, _READ_SIZE)
                break
            except BlockingIOError:
                _refuse_timed_out(connection)
                await trio.lowlevel.wait_readable(fd)
    if not chunk:
        raise _Eof
    connection.buffer += chunk


async def _read_head(connection: _Connection) -> _Head:
    """The next response head in the connection; :class:`_Eof` if the connection ended
    before any byte of it."""
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolFailure("response head too long")
        try:
            await _fill(connection)
        except _Eof:
            if buffer:
                raise ProtocolFailure("connection closed in the response head") from None
            raise
        buffer = connection.buffer
    block = bytes(buffer[:end])
    del buffer[:end + 4]
    return _parse_head(block)


def _parse_head(block: bytes) -> _Head:
    """Read the status line and the three headers that frame the body (the others are
    only checked to be header lines: a response that is not HTTP is refused)."""
    line_end = block.find(b"\r\n")
    status_line, fields = (block, b"") if line_end < 0 else (block[:line_end],
                                                              block[line_end:])
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolFailure(f"not an HTTP/1 status line: {status_line[:80]!r}")
    lowered = fields.lower()
    position = 0
    while position < len(lowered):  # every line: a name without blanks around it, a colon
        start = position + 2
        position = lowered.find(b"\r\n", start)
        if position < 0:
            position = len(lowered)
        colon = lowered.find(b":", start, position)
        if colon <= start or lowered[start] in b" \t" or lowered[colon - 1] in b" \t":
            line = fields[start:position].decode("latin-1")
            raise ProtocolFailure(f"malformed header line: {line[:80]!r}")
    lengths = set(_values(lowered, b"\r\ncontent-length:"))
    if len(lengths) > 1:
        raise ProtocolFailure("bad Content-Length")
    keep_alive = parts[0] == b"HTTP/1.1" and \
        b"close" not in b",".join(_values(lowered, b"\r\nconnection:"))
    return _Head(int(parts[1]), keep_alive, lengths.pop() if lengths else None,
                 b",".join(_values(lowered, b"\r\ntransfer-encoding:")), fields)


def _values(lowered: bytes, marker: bytes) -> list[bytes]:
    """The stripped values of every header line of ``lowered`` that starts with
    ``marker`` (CRLF, the lower-case name and its colon)."""
    found = []
    at = lowered.find(marker)
    while at >= 0:
        start = at + len(marker)
        end = lowered.find(b"\r\n", start)
        found.append(lowered[start:end if end >= 0 else len(lowered)].strip())
        at = -1 if end < 0 else lowered.find(marker, end)
    return found


def _header_pairs(fields: bytes) -> list[tuple[str, str]]:
    """Every header line of a checked head as ``(lower-case name, stripped value)``."""
    pairs = []
    for line in fields.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        pairs.append((name.lower(), value.strip()))
    return pairs


async def _read_body(connection: _Connection, head: _Head, keep: int
                     ) -> tuple[bytes, bool]:
    """The first ``keep`` bytes of the body, and whether the connection can be reused."""
    if head.status in _NO_BODY:
        return b"", head.keep_alive
    if head.encoding:
        if head.encoding.rsplit(b",", 1)[-1].strip() != b"chunked":
            return await _read_to_end(connection, keep), False
        return await _read_chunked(connection, keep), head.keep_alive
    if head.length is None:
        return await _read_to_end(connection, keep), False
    if not head.length.isdigit():
        raise ProtocolFailure("bad Content-Length")
    body, complete = await _read_exact(connection, int(head.length), keep)
    return body, complete and head.keep_alive


async def _read_exact(connection: _Connection, length: int, keep: int
                      ) -> tuple[bytes, bool]:
    if length > keep + MAX_DRAIN_BYTES:  # not worth draining: give the connection up
        while len(connection.buffer) < keep:
            await _fill(connection)
        return bytes(connection.buffer[:keep]), False
    while len(connection.buffer) < length:
        await _fill(connection)
    body = bytes(connection.buffer[:min(length, keep)])
    del connection.buffer[:length]
    return body, True


async def _read_to_end(connection: _Connection, keep: int) -> bytes:
    while len(connection.buffer) < keep + MAX_DRAIN_BYTES:
        try:
            await _fill(connection)
        except _Eof:
            break
    return bytes(connection.buffer[:keep])


async def _read_line(connection: _Connection) -> bytes:
    while (end := connection.buffer.find(b"\r\n")) < 0:
        if len(connection.buffer) > MAX_HEAD_BYTES:
            raise ProtocolFailure("chunk line too long")
        await _fill(connection)
    line = bytes(connection.buffer[:end])
    del connection.buffer[:end + 2]
    return line


async def _read_chunked(connection: _Connection, keep: int) -> bytes:
    kept = bytearray()
    total = 0
    while True:
        size_text = (await _read_line(connection)).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolFailure("bad chunk size") from None
        if size == 0:
            while await _read_line(connection):  # trailers, up to the empty line
                pass
            return bytes(kept)
        total += size
        if total > keep + MAX_DRAIN_BYTES:
            raise ProtocolFailure("chunked body too long to drain")
        while len(connection.buffer) < size + 2:
            await _fill(connection)
        if len(kept) < keep:
            kept += connection.buffer[:min(size, keep - len(kept))]
        if connection.buffer[size:size + 2] != b"\r\n":
            raise ProtocolFailure("chunk not followed by CRLF")
        del connection.buffer[:size + 2]


@asynccontextmanager
async def open_pool(*, max_connections: int = 100, keepalive: float = 60.0,
                    tls: ssl.SSLContext | None = None) -> AsyncIterator[Http1Pool]:
    """An :class:`Http1Pool` closed on exit."""
    pool = Http1Pool(max_connections=max_connections, keepalive=keepalive, tls=tls)
    try:
        yield pool
    finally:
        with trio.CancelScope(shield=True):
            await pool.aclose()
