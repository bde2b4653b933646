"""One HTTP/1.1 connection served to an ASGI app.

:class:`Connection` is the parser's protocol (httptools calls its ``on_*`` methods while
bytes are fed) and the connection's one task: it reads, parses, and runs the app inline
for each request in turn, so answers leave in the order of the requests (pipelining)
and the common exchange, a request that arrived whole, spawns no task. Bytes are read
only by that task or, while the app runs, by the app's own ``receive`` (for the rest of
a body, or to notice the client leaving); never by both at once.

Parsed requests wait in a queue in order; reading stops while one waits behind the one
being answered, so a pipelining client buffers at most one read ahead.

An idle connection is timed out without a deadline moved per request: the connection notes
when its keep-alive ends as it starts waiting for a request, and only when a read (or the
write of a bare error) then has to wait does it tell the keep-alive keeper (one task per
Trio run, a heap with about one entry per waiting connection), which cancels the
connection's scope if it is still waiting for a request once that moment passed. A
request that arrives without a wait costs the timer nothing.

Bytes are read and written with ``os.read``/``os.write`` on the socket's descriptor,
waiting (``wait_readable``/``wait_writable``) only when the kernel has nothing to give or
no room to take: a read or write that succeeds at once does not yield to the scheduler
(trio's socket methods yield after every call, one task switch and one ``epoll_wait``
each); a run of reads and writes that never had to wait still yields every
:data:`IO_BEFORE_YIELD`, so a client that floods one connection cannot hold the loop.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools
import trio

from lcx.runtime.deadline_keeper import DeadlineKeeper, keeper_of_run
from lcx.server.wire import CONTINUE, Framing, bare_response, encode_head

__all__ = ["BODY_NOW", "DISCONNECT", "ASGIApp", "Connection", "Limits", "WebsocketHandler"]

log = logging.getLogger("lcx.server")

ASGIApp = Callable[..., Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""
WebsocketHandler = Callable[..., Awaitable[None]]
"""What takes over a connection whose request is a websocket upgrade
(:func:`lcx.server.websocket.serve_websocket`)."""
DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
"""The event ``receive`` returns once the client is gone or the response is complete."""
BODY_NOW = "lcx.body_now"
"""The scope extension holding the exchange's :meth:`_Exchange.body_now`."""
MAX_RECV = 65536
IO_BEFORE_YIELD = 16
"""Reads and writes that did not wait, in a row, after which the connection yields once."""
_ASGI = {"spec_version": "2.1", "version": "3.0"}


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings of every connection of a server."""

    keep_alive: float
    """Seconds an idle connection waits for its next request (and a request head may
    take to arrive) before it is closed."""
    max_head_bytes: int
    """The most bytes a request line and headers may take; more gets a bare 431."""
    max_ws_message_bytes: int
    """The largest websocket message assembled (handed to the websocket handler)."""


class _Request:
    """One request as parsed: its scope, the body bytes not given to the app yet."""

    __slots__ = ("body", "complete", "discard", "expect_continue", "keep_alive", "raw",
                 "scope")

    def __init__(self, scope: dict[str, Any], keep_alive: bool, expect_continue: bool
                 ) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.complete = False
        self.discard = False
        """Drop body bytes as they are parsed (the app is done with this request)."""
        self.raw: bytes | None = None
        """For a websocket upgrade: the bytes of the connection from the request's first."""


class _ParseError(Exception):
    """The client sent what is not HTTP/1.1; the status to answer with."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Connection:
    """Serves the requests of one accepted connection (see the module docstring)."""

    def __init__(self, app: ASGIApp, stream: trio.SocketStream, limits: Limits, *,
                 client: tuple[str, int] | None, server: tuple[str, int] | None,
                 state: dict[str, Any], websocket: WebsocketHandler) -> None:
        self.app = app
        self.stream = stream
        self.limits = limits
        self.client = client
        self.server = server
        self.state = state
        self.websocket = websocket
        self.closing = False
        """Close once the current response is complete (the server shuts down)."""
        self.broken = False
        """The connection can carry nothing more (the client left, a write failed)."""
        self.idle = False
        """Waiting for a request with no byte of it read (safe to close at shutdown)."""
        self._scope = trio.CancelScope()
        self._fd = stream.socket.fileno()
        self._io_in_a_row = 0
        self._awaiting = False
        """Waiting for a request (its head not complete): the keep-alive runs."""
        self._idle_deadline = math.inf
        """When the keep-alive of the current wait for a request ends (Trio time)."""
        self._watched: float | None = None
        """The deadline of this connection's entry with the keep-alive keeper, if any."""
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[_Request] = deque()
        self._parsing: _Request | None = None
        self._error: int | None = None
        self._eof = False
        self._upgraded = False
        # The request head being parsed.
        self._in_head = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._upgrade: bytes | None = None
        self._expect = False
        self._host = False
        self._chunk = b""
        self._completed_in_feed = False
        self._head_chunks: list[bytes] = []
        self._head_bytes = 0
        self._head_exact = True

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request begins: its head is collected from here."""
        self._in_head = True
        self._url = b""
        self._headers = []
        self._upgrade = None
        self._expect = False
        self._host = False
        self._head_chunks = [self._chunk]
        self._head_bytes = len(self._chunk)
        # Began at the start of a read unless another request ended earlier in it.
        self._head_exact = not self._completed_in_feed

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header line (names lowercased, trailing whitespace dropped)."""
        name = name.lower()
        value = value.rstrip(b" \t")
        self._headers.append((name, value))
        if name == b"host":
            self._host = True
        elif name == b"upgrade":
            self._upgrade = value
        elif name == b"expect":
            self._expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        """The head is in: queue the request (its body follows)."""
        self._in_head = False
        if self._head_bytes > self.limits.max_head_bytes:
            raise _ParseError(431)
        parser = self._parser
        target, _, query = self._url.partition(b"?")
        try:
            path = unquote(target.decode("ascii"))
            method = parser.get_method().decode("ascii")
        except UnicodeDecodeError:
            raise _ParseError(400) from None
        version = parser.get_http_version()
        if version == "1.1" and not self._host:  # RFC 9112 3.2: a 400 (h11 did the same)
            raise _ParseError(400)
        scope = {"type": "http", "asgi": _ASGI, "http_version": version, "method": method,
                 "scheme": "http", "path": path, "raw_path": target, "query_string": query,
                 "root_path": "", "headers": self._headers, "client": self.client,
                 "server": self.server, "state": self.state.copy(), "extensions": {}}
        request = _Request(scope, version == "1.1" and parser.should_keep_alive(),
                           self._expect and version == "1.1")
        if (self._upgrade is not None and method == "GET"
                and self._upgrade.lower() == b"websocket" and parser.should_upgrade()):
            request.raw = b"".join(self._head_chunks) if self._head_exact else b""
        self._parsing = request
        self._queue.append(request)

    def on_body(self, body: bytes) -> None:
        """A piece of the body of the request being parsed."""
        request = self._parsing
        if request is not None and not request.discard:
            request.body.append(body)

    def on_message_complete(self) -> None:
        """The request being parsed is complete."""
        if self._parsing is not None:
            self._parsing.complete = True
            self._parsing = None
        self._completed_in_feed = True

    # -- reading -----------------------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        """Parse ``chunk``; a bad request sets the error status to answer with."""
        if self._upgraded:  # the websocket's bytes: its handler reads them
            request = self._queue[-1]
            request.raw = (request.raw or b"") + chunk
            return
        self._chunk = chunk
        self._completed_in_feed = False
        if self._in_head:
            self._head_chunks.append(chunk)
            self._head_bytes += len(chunk)
        try:
            self._parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as upgrade:
            request = self._queue[-1]
            if request.raw is None:  # another protocol than websocket: carry on as HTTP
                rest = chunk[upgrade.args[0]:]
                if rest:
                    self._feed(rest)
                return
            if not self._head_exact:  # it began inside a read: rebuild its head
                request.raw = _rebuild_head(request.scope) + chunk[upgrade.args[0]:]
            self._upgraded = True
            return
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            self._error = cause.status if isinstance(cause, _ParseError) else 400
            return
        except httptools.HttpParserError:
            self._error = 400
            return
        finally:
            self._chunk = b""
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._error = 431

    async def _read(self) -> bytes | None:
        """The next bytes from the client; None when it closed or the socket failed."""
        fd = self._fd
        try:
            while True:
                try:
                    data = os.read(fd, MAX_RECV)
                    break
                except BlockingIOError:
                    self._io_in_a_row = 0
                    self._arm_keep_alive()
                    await trio.lowlevel.wait_readable(fd)
            await self._count_io()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            data = b""
        if not data:
            self._eof = True
            return None
        return data

    async def _next_request(self) -> _Request | None:
        """The next request to answer, None when there is none (closed, bad request)."""
        while not self._queue:
            if self._error is not None:
                await self._write(bare_response(self._error))
                return None
            if self._eof or self._upgraded or self.broken:
                return None
            self.idle = not self._in_head
            data = await self._read()
            self.idle = False
            if data is None:
                return None
            self._feed(data)
        return self._queue.popleft()

    # -- writing -----------------------------------------------------------------------

    def _arm_keep_alive(self) -> None:
        """About to wait: make sure the keeper looks at this connection by its keep-alive
        deadline if it is waiting for a request."""
        if self._awaiting and (self._watched is None or self._watched > self._idle_deadline):
            self._watched = self._idle_deadline
            _keep_alives().watch(self._idle_deadline, self)

    def _keep_alive_came(self, now: float) -> None:
        """The keeper: this connection's entry is due."""
        self._watched = None
        if not self._awaiting:
            return
        if self._idle_deadline <= now:
            self._scope.cancel()  # idle too long: the connection closes
        else:  # waiting for another request since, until later
            self._watched = self._idle_deadline
            _keep_alives().watch(self._idle_deadline, self)

    async def _count_io(self) -> None:
        """One more read or write without a wait; every :data:`IO_BEFORE_YIELD`, yield."""
        self._io_in_a_row += 1
        if self._io_in_a_row >= IO_BEFORE_YIELD:
            self._io_in_a_row = 0
            await trio.lowlevel.checkpoint()

    async def _write(self, data: bytes) -> None:
        """Write ``data``; a failed write marks the connection broken and is not raised."""
        if self.broken:
            return
        fd = self._fd
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    self._io_in_a_row = 0
                    self._arm_keep_alive()
                    await trio.lowlevel.wait_writable(fd)
            await self._count_io()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.broken = True
        except BaseException:  # cancelled part way: what is on the wire is unknown
            self.broken = True
            raise
        finally:
            view.release()

    # -- serving -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve requests until the client leaves, asks to close, or the connection idles
        out; then close the stream."""
        try:
            with self._scope:
                while not self.closing:
                    self._idle_deadline = trio.current_time() + self.limits.keep_alive
                    self._awaiting = True
                    try:
                        request = await self._next_request()
                    finally:
                        self._awaiting = False
                    if request is None:
                        break
                    if request.raw is not None:
                        await self.websocket(
                            self.app, self.stream, request.raw, client=self.client,
                            server=self.server,
                            max_message_bytes=self.limits.max_ws_message_bytes)
                        break
                    if not await self._answer(request):
                        break
        finally:
            await self._close()

    def close_if_idle(self) -> None:
        """Close now if waiting for a request, else once the current response is out."""
        self.closing = True
        if self.idle:
            self._scope.cancel()

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()

    async def _answer(self, request: _Request) -> bool:
        """Run the app for ``request``; whether the connection may carry another."""
        exchange = _Exchange(self, request)
        request.scope["extensions"][BODY_NOW] = exchange.body_now
        try:
            await self.app(request.scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("Error in ASGI app", extra={"path": request.scope["path"]})
        if exchange.head is not None:  # a sized head whose body never came
            exchange.close = True
            await self._write(exchange.head)
        if not exchange.started:
            # No answer: the request was cut short by bad bytes (400) or the app failed.
            cut = self._error if self._error is not None and not request.complete else None
            await self._write(bare_response(cut or 500))
            return False
        if not exchange.finished or exchange.close or not request.keep_alive:
            return False
        if not request.complete:
            return await self._drain(request)
        return not self.broken

    async def _drain(self, request: _Request) -> bool:
        """Read and drop what is left of a body the app did not read; whether it ended
        within the keep-alive (else the connection closes)."""
        request.discard = True
        request.body.clear()
        with trio.move_on_after(self.limits.keep_alive):
            while not request.complete and self._error is None:
                data = await self._read()
                if data is None:
                    return False
                self._feed(data)
        return request.complete and self._error is None and not self.broken


class _Exchange:
    """The ``receive`` and ``send`` of one request and the state of its response."""

    __slots__ = ("chunked", "close", "conn", "finished", "framing", "given_all", "head",
                 "length", "request", "sent", "started", "suppress", "waiter")

    def __init__(self, conn: Connection, request: _Request) -> None:
        self.conn = conn
        self.request = request
        self.started = False
        self.finished = False
        self.given_all = False
        """Whether the app was given the end of the body (``more_body`` False)."""
        self.head: bytes | None = None
        """A sized response head held to leave with its first body bytes."""
        self.framing = Framing.LENGTH
        self.length: int | None = None
        self.sent = 0
        self.close = False
        self.suppress = request.scope["method"] == "HEAD"
        self.waiter: trio.CancelScope | None = None
        """The scope of a ``receive`` waiting for the client to leave."""

    async def receive(self) -> dict[str, Any]:
        """The ASGI receive: body pieces, then ``http.disconnect`` once the client left
        or the response is complete."""
        request, conn = self.request, self.conn
        while True:
            if self.finished or conn.broken:
                return DISCONNECT
            body = request.body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                self.given_all = request.complete
                return {"type": "http.request", "body": data, "more_body": not request.complete}
            if request.complete:
                if not self.given_all:
                    self.given_all = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                return await self._wait_for_disconnect()
            if conn._error is not None:
                return DISCONNECT
            if request.expect_continue:
                request.expect_continue = False
                if not self.started:
                    await conn._write(CONTINUE)
            more = await conn._read()
            if more is None:
                conn.broken = True
                return DISCONNECT
            conn._feed(more)

    def body_now(self) -> bytes | None:
        """The whole body when it is all in and ``receive`` gave none of it yet, given as
        ``receive`` would give it (``receive`` then goes on after its last piece); None
        otherwise (then ``receive`` gives it). Lets an app take a body that came with its
        head without a timeout scope around a wait that cannot happen."""
        request = self.request
        if not request.complete or self.given_all or self.finished or self.conn.broken:
            return None
        body = request.body
        data = b"" if not body else body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self.given_all = True
        return data

    async def _wait_for_disconnect(self) -> dict[str, Any]:
        """Read on until the client leaves (what it pipelines is queued), or until the
        response is complete; then ``http.disconnect``."""
        conn = self.conn
        with trio.CancelScope() as self.waiter:
            while not conn._eof:
                if conn._queue or conn._error is not None or conn._upgraded:
                    await trio.sleep_forever()  # already read enough ahead
                data = await conn._read()
                if data is None:
                    conn.broken = True
                    break
                conn._feed(data)
        self.waiter = None
        return DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI send: ``http.response.start`` then ``http.response.body`` pieces."""
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.finished:
                return
            await self._body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            request = self.request
            head, self.framing, self.length, self.close = encode_head(
                message["status"], message.get("headers", ()),
                chunked_ok=request.scope["http_version"] == "1.1",
                close=self.conn.closing or not request.keep_alive)
            self.started = True
            if self.framing == Framing.NONE:
                self.suppress = True
            if self.framing == Framing.LENGTH or (
                    self.framing == Framing.NONE and self.length is not None):
                self.head = head  # leaves with the first body bytes
            else:
                await self.conn._write(head)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on HTTP/1.1")

    async def _body(self, body: bytes, more: bool) -> None:
        if self.suppress:
            body = b""
        elif self.framing == Framing.CHUNKED:
            if body:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            if not more:
                body += b"0\r\n\r\n"
        elif self.length is not None:
            self.sent += len(body)
            if self.sent > self.length:  # more than declared: never let it reach the next
                body = body[:len(body) - (self.sent - self.length)]
                self.close = True
        if self.head is not None:
            body = self.head + body
            self.head = None
        if not more:
            self.finished = True
            if self.length is not None and not self.suppress and self.sent != self.length:
                self.close = True
            if self.waiter is not None:
                self.waiter.cancel()
        if body:
            await self.conn._write(body)


def _rebuild_head(scope: dict[str, Any]) -> bytes:
    """A request head from its parsed scope (for an upgrade that began inside a read)."""
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"]
                                  else b"")
    lines = [b"%b %b HTTP/%b" % (scope["method"].encode("ascii"), target,
                                 scope["http_version"].encode("ascii"))]
    lines += [name + b": " + value for name, value in scope["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _keep_alive_came(connection: Connection, now: float) -> None:
    connection._keep_alive_came(now)


def _new_keep_alives() -> DeadlineKeeper[Connection]:
    """Closes connections whose keep-alive ran out while they waited for a request (one
    task per Trio run; see the module docstring)."""
    return DeadlineKeeper("lcx.http_keep_alives", _keep_alive_came)


_KEEP_ALIVES: trio.lowlevel.RunVar[DeadlineKeeper[Connection]] = trio.lowlevel.RunVar(
    "lcx_http_keep_alives")


def _keep_alives() -> DeadlineKeeper[Connection]:
    return keeper_of_run(_KEEP_ALIVES, _new_keep_alives)
