"""The instance's flush loop writes a socket's frames in order, several per write, and
when the client stops reading (the kernel takes part of a frame) the frame is finished
before anything else, the frames queued meanwhile follow it, and the close comes last:
the bytes on the wire are exactly the frames, in the order they were offered."""

from __future__ import annotations

import base64
import socket
from functools import partial

import pytest
import trio
from quart import websocket
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.api.socket_sink import FlushLoop, QueueBudget, SocketSink
from lcx.api.ws_wire import WireWriter, text_frame

BIG = [bytes([65 + i % 26]) * 65_000 for i in range(128)]
"""8 MB: more than loopback buffers hold while the client does not read."""
SMALL = [b'{"n":%d}' % i for i in range(500)]
CLOSE_FRAME = b"\x88\x06\x03\xe8done"


class Seen:
    """What the server side saw, for the assertions."""

    def __init__(self) -> None:
        self.backed_up = trio.Event()
        self.held = False
        self.wire: WireWriter | None = None
        self.loop = FlushLoop()


def _app(seen: Seen, on_demand: bool) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def handler() -> None:
        await websocket.accept()
        wire = seen.wire = WireWriter()
        sink = SocketSink(10_000, max_bytes=64 * 1024 * 1024,
                          budget=QueueBudget(64 * 1024 * 1024))
        sink.attach_writer(wire, seen.loop)

        async def writer() -> None:
            while True:
                await sink.wait_owed()
                await sink.send_owed()

        async with trio.open_nursery() as nursery:
            if on_demand:  # as agent_ws: a writer task only while bytes are owed
                sink.write_owed_in(nursery)
            else:
                nursery.start_soon(writer)
            for frame in SMALL[:100]:
                assert sink.offer(frame)
            await trio.lowlevel.checkpoint()
            for frame in BIG:
                assert sink.offer(frame)
            while not wire.owed:  # the loop's next round writes until the kernel is full
                await trio.lowlevel.checkpoint()
            seen.held = wire.owed  # part of a batch pending on the connection
            for frame in SMALL[100:]:  # queued behind the half-written frame
                assert sink.offer(frame)
            seen.backed_up.set()
            while sink.frames or wire.owed:
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        await sink.finish()
        sink.release()
        await websocket.close(1000, "done")

    return app


async def _client(port: int, seen: Seen) -> bytes:
    """Handshake, read nothing until the server's writes backed up, then everything."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    key = base64.b64encode(b"0123456789abcdef").decode()
    await stream.send_all((
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await seen.backed_up.wait()
    received = b""
    while not received.endswith(CLOSE_FRAME):
        chunk = await stream.receive_some(1 << 20)
        if not chunk:
            break
        received += chunk
    await stream.aclose()
    return received.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("on_demand", [False, True], ids=["writer-task", "on-demand"])
async def test_frames_in_order_through_a_backed_up_socket(on_demand: bool) -> None:
    """Every byte in order; a frame was left half written and finished first; fewer
    writes than frames. The same with a writer task started only when bytes are owed."""
    seen = Seen()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, _app(seen, on_demand),
                                                  host="127.0.0.1", port=0))
            body = await _client(binding.port, seen)
            nursery.cancel_scope.cancel()
    frames = SMALL[:100] + BIG + SMALL[100:]
    assert body == b"".join(text_frame(f) for f in frames) + CLOSE_FRAME
    assert seen.held
    assert seen.wire is not None
    assert not seen.wire.owed
    assert seen.wire.frames == len(frames)
    assert seen.wire.writes < len(frames) // 4
    assert seen.loop.rounds >= 1
