"""Serve an ASGI app over HTTP with hypercorn's Trio worker.

We bind the listening socket ourselves and hand it to hypercorn's worker rather than let
``hypercorn.trio.serve`` bind it: when binding fails, hypercorn leaks the unbound socket
(a ``ResourceWarning``) and the ``OSError`` reaches the caller wrapped in four nested
exception groups; it also binds only after the app's lifespan startup has run.

One change to hypercorn's HTTP/1.1 protocol (:func:`install_head_coalescing`, applied on
import): the head of a response with a ``Content-Length`` is written together with the
first part of its body, in one socket write instead of two, and the empty write hypercorn
makes for the end of such a body is skipped. The bytes on the wire are the same.

And one to its Trio connection (:func:`install_cheap_idle_timer`): the keep-alive timer
that each connection restarts after every response is started with ``start_soon`` in a
cancel scope of its own, instead of ``nursery.start`` under a lock (which waits for the
new task to run before the response's stream may close).

Websockets are lcx's own (:func:`lcx.server.websocket.serve_websocket`): each connection's
first request head is looked at without being taken (``MSG_PEEK``); an upgrade to a
websocket is served there, anything else by hypercorn's HTTP/1.1 (:class:`_UpgradeRouter`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import RawData
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.run import worker_serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import ASGIFramework
from hypercorn.utils import parse_socket_addr, wrap_app

from lcx.server.websocket import serve_websocket

__all__ = ["KEEP_ALIVE_SECONDS", "MAX_HEAD_BYTES", "MAX_WS_MESSAGE_BYTES", "HttpBinding",
           "install_cheap_idle_timer", "install_head_coalescing", "serve_http"]

MAX_HEAD_BYTES = 256 * 1024
"""What hypercorn buffers of a request line and headers before it answers a bare 431
itself: well above the app's own header limit, which answers with the error envelope."""
STALLED_PEER_TIMEOUT_MS = 60_000
"""A connection whose peer acknowledges nothing for this long (or keeps its receive window
shut: a websocket client that never reads) is dropped by the kernel. hypercorn writes
with its cancellation shielded, so without it a writer stuck on such a peer, and the
socket's descriptor, would be held for as long as the peer stays connected."""
KEEP_ALIVE_SECONDS = 75.0
"""How long an idle client connection is kept open for its next request (hypercorn's
default is 5 s): a bot posting now and then, or a load balancer in front (which keeps its
own connections for 60 s), reuses its connection instead of paying for a new one (and the
TIME_WAIT it leaves). Longer than the usual balancer's idle timeout, so the balancer, not
lcx, closes first and never sends a request on a connection lcx is closing."""
MAX_WS_MESSAGE_BYTES = 1024 * 1024
"""The largest websocket message assembled (``serve_websocket``); a larger one closes the
socket with 1009 (the frame handler refuses frames over 256 KiB with an ERROR long before
that)."""


@dataclass(frozen=True, slots=True)
class HttpBinding:
    """Where a started server listens (the real port when port 0 was asked for)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` or ``http://[::1]:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _config(graceful_timeout: float) -> Config:
    config = Config()
    config.accesslog = None  # the app writes its own access line, with the request id
    # A Logger object is used as is: records go through our handlers, not hypercorn's.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout
    config.include_server_header = False
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.websocket_max_message_size = MAX_WS_MESSAGE_BYTES
    return config


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; accepted sockets inherit it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            STALLED_PEER_TIMEOUT_MS)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_http(app: ASGIFramework, *, host: str, port: int,
                     shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                     graceful_timeout: float = 5.0,
                     task_status: trio.TaskStatus[HttpBinding] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
    """Serve the ASGI ``app`` on ``host:port`` until cancelled or ``shutdown_trigger`` returns.

    Binds, runs the app's lifespan startup, then calls ``task_status.started`` with the
    :class:`HttpBinding`. When ``shutdown_trigger`` returns it stops accepting, closes
    idle keep-alive connections, gives in-flight requests up to ``graceful_timeout``
    seconds before cancelling them, runs the lifespan shutdown and returns. Cancelling
    the task stops everything at once. Owns the listening socket and always closes it.

    Raises:
        OSError: the address cannot be bound (in use, not local...), before anything runs.
    """
    config = _config(graceful_timeout)
    sock = _listen(host, port, config.backlog)
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(
                worker_serve, wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                sockets=Sockets([], [sock], []), shutdown_trigger=shutdown_trigger))
            task_status.started(HttpBinding(bound_host, bound_port))
    finally:
        sock.close()  # hypercorn closes it on a clean exit; not if cancelled in startup


class _UpgradeRouter:
    """What hypercorn runs for each accepted connection (in place of its ``TCPServer``):
    looks at the first request head without taking it (``MSG_PEEK``); a websocket upgrade
    is served by lcx's own websocket connection, anything else by hypercorn's
    ``TCPServer`` on the untouched connection (a ``GET`` whose head is not all there yet
    is read first and handed over with the bytes read)."""

    def __init__(self, app: Any, config: Config, context: Any, state: Any,
                 stream: trio.SocketStream) -> None:
        self.args = (app, config, context, state)
        self.stream = stream

    def __await__(self) -> Any:
        return self.run().__await__()

    async def run(self) -> None:
        """Serve the connection to its end."""
        stream = self.stream
        config = self.args[1]
        peeked = b""
        with trio.move_on_after(config.keep_alive_timeout):
            try:
                peeked = await stream.socket.recv(65536, socket.MSG_PEEK)
            except OSError:
                peeked = b""
        if not peeked.startswith(b"GET ") or (b"\r\n\r\n" in peeked
                                              and not _is_websocket_upgrade(peeked)):
            await TCPServer(*self.args, stream).run()  # type: ignore[arg-type]
            return
        head = await _read_head(stream, config.keep_alive_timeout)
        app = getattr(self.args[0], "app", None)  # hypercorn's ASGIWrapper holds it
        if app is not None and _is_websocket_upgrade(head):
            try:
                sock = stream.socket
                await serve_websocket(
                    app, stream, head, max_message_bytes=config.websocket_max_message_size,
                    client=parse_socket_addr(sock.family, sock.getpeername()),
                    server=parse_socket_addr(sock.family, sock.getsockname()))
            except OSError:
                pass
            finally:
                await stream.aclose()
            return
        await _ReplayingTCPServer(*self.args, stream, head).run()


async def _read_head(stream: trio.SocketStream, timeout: float) -> bytes:
    """The bytes received until the first request head is complete (or too long, or the
    peer is gone or silent for ``timeout`` seconds)."""
    head = b""
    with trio.move_on_after(timeout):
        while b"\r\n\r\n" not in head and len(head) <= MAX_HEAD_BYTES:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                chunk = b""
            if not chunk:
                break
            head += chunk
    return head


def _is_websocket_upgrade(head: bytes) -> bool:
    end = head.find(b"\r\n\r\n")
    if end < 0 or not head.startswith(b"GET "):
        return False
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


class _ReplayingTCPServer(TCPServer):
    """hypercorn's connection, given first the bytes the router read."""

    def __init__(self, app: Any, config: Config, context: Any, state: Any,
                 stream: trio.SocketStream, first: bytes) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self._first = first

    async def _read_data(self) -> None:
        if self._first:
            first, self._first = self._first, b""
            await self.protocol.handle(RawData(first))
        await super()._read_data()


def install_websocket_router() -> None:
    """Make hypercorn's Trio worker run :class:`_UpgradeRouter` for each connection.
    Idempotent."""
    hypercorn.trio.run.TCPServer = _UpgradeRouter  # type: ignore[attr-defined,assignment]


install_websocket_router()


_HELD = "_lcx_held_head"
"""The attribute of an :class:`H11Protocol` holding a response head not written yet."""


def install_head_coalescing() -> None:
    """Make hypercorn's HTTP/1.1 protocol write a response head with its first body bytes.

    A response that declares a ``Content-Length`` (the API's JSON answers) has its head
    held until its body's first non-empty part (or its end) and both go out in one write;
    empty writes (the end of such a body encodes to nothing) are skipped. Responses
    without a length (streams, server-sent events) are written as before, head first, so
    a client sees their head at once. Whatever else the protocol writes, or a stream that
    closes, writes a held head first. Idempotent.
    """
    if getattr(H11Protocol, "_lcx_coalescing", False):
        return
    plain_stream_send = H11Protocol.stream_send

    async def send_h11_event(self: H11Protocol, event: h11._events.Event) -> None:
        try:
            data = self.connection.send(event)  # type: ignore[arg-type]
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""
        held: bytes | None = self.__dict__.pop(_HELD, None)
        if held is not None:
            data = held + (data or b"")
        elif isinstance(event, h11.Response) and _has_length(event):
            self.__dict__[_HELD] = data or b""  # written with the first body bytes
            return
        if not data:  # the end of a body with a length encodes to nothing
            return
        await self.send(RawData(data=data))

    async def stream_send(self: H11Protocol, event: StreamEvent) -> None:
        if isinstance(event, StreamClosed | Data):  # written past _send_h11_event
            await _flush(self)
        await plain_stream_send(self, event)

    H11Protocol._send_h11_event = send_h11_event  # type: ignore[method-assign]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]
    H11Protocol._lcx_coalescing = True  # type: ignore[attr-defined]


async def _flush(protocol: H11Protocol) -> None:
    held: bytes | None = protocol.__dict__.pop(_HELD, None)
    if held:
        await protocol.send(RawData(data=held))


def _has_length(response: h11.Response) -> bool:
    return any(name == b"content-length" for name, _ in response.headers)


install_head_coalescing()


class _IdleTimer:
    """hypercorn's per-connection single task, restarted without waiting for it to run.

    ``restart`` cancels the running action and starts ``action`` again with
    ``start_soon`` inside a cancel scope made beforehand (a ``stop`` or ``restart`` before
    the task ran cancels it at its first checkpoint); no lock is needed, since neither
    method awaits anything.
    """

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        """Cancel the current run of the action, if any, and start ``action`` anew."""
        if self._scope is not None:
            self._scope.cancel()
        self._scope = scope = trio.CancelScope()
        task_group._nursery.start_soon(_run_in_scope, scope, action)

    async def stop(self) -> None:
        """Cancel the current run of the action, if any."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None


async def _run_in_scope(scope: trio.CancelScope, action: Callable[[], Awaitable[None]]
                        ) -> None:
    with scope:
        await action()


def install_cheap_idle_timer() -> None:
    """Make hypercorn's Trio connections use :class:`_IdleTimer`. Idempotent."""
    hypercorn.trio.tcp_server.TrioSingleTask = _IdleTimer  # type: ignore[assignment,attr-defined]


install_cheap_idle_timer()
