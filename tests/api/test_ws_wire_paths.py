"""The batched websocket writer (straight to the socket when it can) puts on the wire
exactly the bytes of the public path (one ``websocket.send`` per frame), declines
permessage-deflate, and its frame encoder matches wsproto's for every length class."""

from __future__ import annotations

import base64
from functools import partial

import pytest
import trio
from quart import websocket
from quart_trio import QuartTrio
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage

from lcx.api.http_server import serve_http
from lcx.api.ws_wire import WireWriter, text_frame

FRAMES = [b"", b'{"a":1}', "é€😀".encode(), b"x" * 125, b"y" * 126, b"z" * 65535,
          b"w" * 65536, b"v" * 200_000]

CLOSE_FRAME = b"\x88\x06\x03\xe8done"
"""Close 1000 "done", the last thing the server sends."""


@pytest.mark.parametrize("payload", FRAMES, ids=lambda p: str(len(p)))
def test_text_frame_matches_wsproto(payload: bytes) -> None:
    """Header and payload as wsproto's server connection serialises a text message."""
    connection = Connection(ConnectionType.SERVER)
    assert text_frame(payload) == connection.send(TextMessage(data=payload.decode()))


def _app(fast: bool, used_fast: list[bool]) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def socket() -> None:
        await websocket.accept()
        wire = WireWriter(fast=fast)
        used_fast.append(wire.fast and wire.direct)
        await wire.write(FRAMES[:3])
        await wire.write(FRAMES[3:])
        await websocket.close(1000, "done")

    return app


async def _raw_session(port: int) -> tuple[bytes, bytes]:
    """Handshake offering deflate by hand; the response head and every byte after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(b"0123456789abcdef").decode()
    await stream.send_all((
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ).encode())
    received = b""
    with trio.fail_after(10):
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            received += chunk
            if received.endswith(CLOSE_FRAME):
                break
    await stream.aclose()
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


async def _wire_bytes(fast: bool) -> tuple[bytes, bytes, bool]:
    used_fast: list[bool] = []
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, _app(fast, used_fast),
                                              host="127.0.0.1", port=0))
        head, body = await _raw_session(binding.port)
        nursery.cancel_scope.cancel()
    return head, body, used_fast[0]


async def test_fast_and_public_paths_send_identical_bytes() -> None:
    """Same frames, same order, same close, byte for byte; no deflate either way."""
    fast_head, fast_body, fast_used = await _wire_bytes(True)
    public_head, public_body, public_used = await _wire_bytes(False)
    assert fast_used
    assert not public_used
    assert fast_body == public_body
    assert fast_body == b"".join(text_frame(f) for f in FRAMES) + CLOSE_FRAME
    for head in (fast_head, public_head):
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()
