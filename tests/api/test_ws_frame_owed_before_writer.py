"""A frame the flush loop could not begin to write (hypercorn was writing) before the
socket's nursery existed is still sent once the nursery is there: no frame waits for the
next one (the grant of a socket connecting while hypercorn writes is not stuck)."""

from __future__ import annotations

import base64
from functools import partial

import trio
from quart import websocket
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.api.socket_sink import FlushLoop, SocketSink
from lcx.api.ws_wire import WireWriter, decline_deflate, text_frame

GRANT = b'{"event":"AUTHORIZATION_GRANTED"}'
CLOSE_FRAME = b"\x88\x06\x03\xe8done"


def _app(owed: list[bool]) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def handler() -> None:
        decline_deflate()
        await websocket.accept()
        wire = WireWriter()
        sink = SocketSink(100)
        sink.attach_writer(wire, FlushLoop())
        lock = wire._lock  # hypercorn's send lock: as if it were writing
        assert lock is not None
        async with lock:
            assert sink.offer(GRANT)
            await trio.testing.wait_all_tasks_blocked()  # the loop's round has run
            owed.append(wire.owed != b"")
        async with trio.open_nursery() as nursery:
            sink.write_owed_in(nursery)
        await sink.finish()
        sink.release()
        await websocket.close(1000, "done")

    return app


async def _client(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(b"0123456789abcdef").decode()
    await stream.send_all((
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    received = b""
    while not received.endswith(CLOSE_FRAME):
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        received += chunk
    await stream.aclose()
    return received.partition(b"\r\n\r\n")[2]


async def test_owed_grant_is_sent_once_the_nursery_exists() -> None:
    """The grant was owed while the lock was held; it arrives, then the close."""
    owed: list[bool] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, _app(owed),
                                                  host="127.0.0.1", port=0))
            body = await _client(binding.port)
            nursery.cancel_scope.cancel()
    assert owed == [True]
    assert body == text_frame(GRANT) + CLOSE_FRAME
