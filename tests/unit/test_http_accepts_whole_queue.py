"""Connections waiting in the kernel's accept queue are all taken before any is served:
after a restart every agent reconnects at once, and a server that took one per scheduling
round while serving the others left the queue full; the kernel dropped the SYNs beyond
it and those clients retried only after 1, 3, 7 s."""

from __future__ import annotations

import select
import socket
from functools import partial
from typing import Any

import trio
from support.raw_http import Receive, Send, answer_lifespan, reply

from lcx.server.http1 import Limits
from lcx.server.serve import serve_listener

CLIENTS = 40


async def _no_websocket(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("no websocket here")


def _queued(listening: socket.socket) -> bool:
    """Whether a connection waits in the listening socket's accept queue."""
    return bool(select.select([listening], [], [], 0)[0])


async def test_every_queued_connection_is_accepted_before_one_is_served(
        nursery: trio.Nursery) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(CLIENTS * 2)
    listening.setblocking(False)
    queued_when_served: list[bool] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        queued_when_served.append(_queued(listening))
        await reply(send, b"ok")

    stop = trio.Event()
    await nursery.start(partial(
        serve_listener, app, listening,
        Limits(keep_alive=5.0, max_head_bytes=65536, max_ws_message_bytes=65536),
        websocket=_no_websocket, shutdown_trigger=stop.wait, graceful_timeout=1.0))
    # connected and asked in one go, without yielding: all of them wait in the queue
    clients = [socket.create_connection(listening.getsockname()) for _ in range(CLIENTS)]
    for client in clients:
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    with trio.fail_after(10):
        for client in clients:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            await stream.aclose()
    stop.set()
    assert queued_when_served == [False] * CLIENTS
