"""A frame the flush loop could not begin to write (bytes were pending on the connection:
the client was not reading) before the socket's nursery existed is still sent once the
nursery is there: no frame waits for the next one (the grant of a socket connecting
while its socket is backed up is not stuck)."""

from __future__ import annotations

import base64
import socket
from functools import partial

import trio
from quart import websocket
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.api.socket_sink import FlushLoop, SocketSink
from lcx.api.ws_wire import WireWriter, text_frame

GRANT = b'{"event":"AUTHORIZATION_GRANTED"}'
BIG = b"x" * (8 << 20)
"""More than loopback buffers hold while the client does not read."""
CLOSE_FRAME = b"\x88\x06\x03\xe8done"


def _app(owed: list[bool], read: trio.Event) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def handler() -> None:
        await websocket.accept()
        wire = WireWriter()
        sink = SocketSink(100)
        sink.attach_writer(wire, FlushLoop())
        assert not wire.write_now([BIG])  # the kernel takes part of it: the rest pends
        assert sink.offer(GRANT)
        await trio.testing.wait_all_tasks_blocked()  # the loop's round has run
        owed.append(wire.owed and sink.frames == 1)
        read.set()
        async with trio.open_nursery() as nursery:
            sink.write_owed_in(nursery)
        await sink.finish()
        sink.release()
        await websocket.close(1000, "done")

    return app


async def _client(port: int, read: trio.Event) -> bytes:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    key = base64.b64encode(b"0123456789abcdef").decode()
    await stream.send_all((
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await read.wait()
    received = b""
    while not received.endswith(CLOSE_FRAME):
        chunk = await stream.receive_some(1 << 20)
        if not chunk:
            break
        received += chunk
    await stream.aclose()
    return received.partition(b"\r\n\r\n")[2]


async def test_owed_grant_is_sent_once_the_nursery_exists() -> None:
    """The grant waited behind the pending bytes; it arrives after them, then the close."""
    owed: list[bool] = []
    read = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, _app(owed, read),
                                                  host="127.0.0.1", port=0))
            body = await _client(binding.port, read)
            nursery.cancel_scope.cancel()
    assert owed == [True]
    assert body == text_frame(BIG) + text_frame(GRANT) + CLOSE_FRAME
