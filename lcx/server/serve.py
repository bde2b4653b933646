"""Accept connections on a listening socket and serve each with :class:`Connection`.

:func:`serve_listener` runs the app's lifespan startup, accepts until cancelled or until
``shutdown_trigger`` returns, then shuts down gracefully: it stops accepting, closes the
connections waiting for a request, lets those answering one finish (they close after
their response) for up to ``graceful_timeout`` seconds, cancels what is left and runs
the lifespan shutdown.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from lcx.server.http1 import ASGIApp, Connection, Limits, WebsocketHandler
from lcx.server.lifespan import lifespan

__all__ = ["serve_listener"]

log = logging.getLogger("lcx.server")

ACCEPT_PAUSE_SECONDS = 0.1
"""How long accepting pauses when the process is out of descriptors or memory."""
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_GONE_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
"""A connection that failed between the kernel's accept and ours: skipped."""


async def serve_listener(app: ASGIApp, sock: socket.socket, limits: Limits, *,
                         websocket: WebsocketHandler,
                         shutdown_trigger: Callable[[], Awaitable[None]] | None,
                         graceful_timeout: float,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                         ) -> None:
    """Serve ``app`` on the listening, non-blocking ``sock`` (closed when this returns)."""
    listener = trio.socket.from_stdlib_socket(sock)
    state: dict[str, Any] = {}
    connections: set[Connection] = set()

    async def serve_one(stream: trio.SocketStream) -> None:
        try:
            client = _address(stream.socket.getpeername())
            server = _address(stream.socket.getsockname())
        except OSError:  # gone before we looked
            await stream.aclose()
            return
        connection = Connection(app, stream, limits, client=client, server=server,
                                state=state, websocket=websocket)
        connections.add(connection)
        try:
            await connection.serve()
        except Exception:  # one connection's failure never stops the server
            log.exception("an HTTP connection failed")
        finally:
            connections.discard(connection)

    try:
        async with lifespan(app, state), trio.open_nursery() as handlers:
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(_accept, listener, handlers, serve_one)
                task_status.started()
                if shutdown_trigger is None:
                    await trio.sleep_forever()
                await shutdown_trigger()
                acceptor.cancel_scope.cancel()
            listener.close()
            for connection in list(connections):
                connection.close_if_idle()
            handlers.cancel_scope.deadline = trio.current_time() + graceful_timeout
    finally:
        listener.close()


async def _accept(listener: trio.socket.SocketType, handlers: trio.Nursery,
                  serve_one: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
    while True:
        try:
            sock, _ = await listener.accept()
        except OSError as error:
            if error.errno in _GONE_ERRNOS:
                continue
            if error.errno not in _RESOURCE_ERRNOS:
                raise
            log.warning("accepting paused: %s", error)
            await trio.sleep(ACCEPT_PAUSE_SECONDS)
            continue
        handlers.start_soon(serve_one, trio.SocketStream(sock))


def _address(address: Any) -> tuple[str, int] | None:
    """(host, port) of a socket address (IPv6 ones carry more), None for others."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None
