"""Serve an ASGI app over HTTP/1.1 with lcx's own server (:mod:`lcx.server`).

We bind the listening socket ourselves, with the options below, so that a failure to
bind is a plain ``OSError`` before anything runs; :func:`lcx.server.serve.serve_listener`
then runs the app's lifespan and serves connections on it. Websocket upgrades are handed
to :func:`lcx.server.websocket.serve_websocket`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.typing import ASGIFramework

from lcx.server.http1 import Limits
from lcx.server.serve import serve_listener
from lcx.server.websocket import serve_websocket

__all__ = ["KEEP_ALIVE_SECONDS", "MAX_HEAD_BYTES", "MAX_WS_MESSAGE_BYTES", "HttpBinding",
           "serve_http"]

MAX_HEAD_BYTES = 256 * 1024
"""What the server reads of a request line and headers before it answers a bare 431
itself: well above the app's own header limit, which answers with the error envelope."""
STALLED_PEER_TIMEOUT_MS = 60_000
"""A connection whose peer acknowledges nothing for this long (or keeps its receive window
shut: a websocket client that never reads) is dropped by the kernel. hypercorn writes
with its cancellation shielded, so without it a writer stuck on such a peer, and the
socket's descriptor, would be held for as long as the peer stays connected."""
LISTEN_BACKLOG = 4096
"""Connections the kernel queues before we accept them (capped by ``net.core.somaxconn``).
Every agent reconnects at once after a restart: with hypercorn's 100 the queue overflowed,
the kernel dropped the SYNs and the clients retried after 1, 3, 7, 15, 31 s (a reconnect of
1,000 agents took 3, 7 or 29 s by that luck; 10,000 did not finish in 120 s)."""
KEEP_ALIVE_SECONDS = 75.0
"""How long an idle client connection is kept open for its next request (hypercorn's
default was 5 s): a bot posting now and then, or a load balancer in front (which keeps its
own connections for 60 s), reuses its connection instead of paying for a new one (and the
TIME_WAIT it leaves). Longer than the usual balancer's idle timeout, so the balancer, not
lcx, closes first and never sends a request on a connection lcx is closing."""
MAX_WS_MESSAGE_BYTES = 1024 * 1024
"""The largest websocket message assembled; a larger one closes the socket with
1009 (the frame handler refuses frames over 256 KiB with an ERROR long before that)."""


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


def _limits() -> Limits:
    return Limits(keep_alive=KEEP_ALIVE_SECONDS, max_head_bytes=MAX_HEAD_BYTES,
                  max_ws_message_bytes=MAX_WS_MESSAGE_BYTES)


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
    sock = _listen(host, port, LISTEN_BACKLOG)
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(
                serve_listener, app, sock, _limits(), websocket=serve_websocket,
                shutdown_trigger=shutdown_trigger, graceful_timeout=graceful_timeout))
            task_status.started(HttpBinding(bound_host, bound_port))
    finally:
        sock.close()  # also when cancelled before serving began
