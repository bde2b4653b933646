"""lcx's own websocket connection (``lcx.server.websocket.serve_websocket``) serves an ASGI
app over real loopback sockets: the handshake and its scope, subprotocols, text, binary and
fragmented messages, pings, the 1009 limit, declined deflate, close codes both ways with the
TCP connection given back, a peer that stops reading (bounded), the denial response before
accepting, and a reader that claims the socket for itself."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from quart import abort, websocket
from quart_trio import QuartTrio
from support.agent_client import ws_client
from trio_websocket import ConnectionClosed

from lcx.server.websocket import WIRE_EXTENSION, serve_websocket
from lcx.server.ws_connection import ConnectionClosing, WebsocketConnection

App = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
KEY = base64.b64encode(b"0123456789abcdef").decode()


@dataclass
class Served:
    """What the accept loop saw."""

    port: int
    ended: list[trio.SocketStream] = field(default_factory=list)
    """Streams whose serve_websocket returned (and which the loop then closed)."""
    gone: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def ws_server(app: Any, *, max_message_bytes: int = 1 << 20) -> AsyncIterator[Served]:
    """An accept loop on loopback that reads each request head and calls serve_websocket
    with it, as lcx's HTTP server does."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    served = Served(listener.socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        raw = b""
        try:
            while b"\r\n\r\n" not in raw:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                raw += chunk
            sock = stream.socket
            await serve_websocket(app, stream, raw, client=sock.getpeername()[:2],
                                  server=sock.getsockname()[:2],
                                  max_message_bytes=max_message_bytes)
        finally:
            await stream.aclose()
            served.ended.append(stream)
            served.gone.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, handle, [listener]))
        yield served
        nursery.cancel_scope.cancel()


def _echo_app(seen: list[dict[str, Any]]) -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]
                    if scope["subprotocols"] else None, "headers": [(b"x-hello", b"yes")]})
        while True:
            event = await receive()
            seen.append(event)
            if event["type"] == "websocket.disconnect":
                return
            if event.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4008, "reason": "cut"})
                continue
            await send({"type": "websocket.send", "text": event.get("text"),
                        "bytes": event.get("bytes")})

    return app


def _masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 requires)."""
    mask = b"\x01\x02\x03\x04"
    size = len(payload)
    head = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head += bytes((0x80 | size,))
    elif size < 65536:
        head += struct.pack("!BH", 0x80 | 126, size)
    else:
        head += struct.pack("!BQ", 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _upgrade_request(path: str = "/ws", extra: str = "") -> bytes:
    """A websocket upgrade request's bytes (``extra``: more header lines)."""
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n").encode()


async def _connected(port: int, *, rcvbuf: int | None = None) -> trio.SocketStream:
    """A raw TCP stream to the server (``rcvbuf``: a small receive buffer)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def _raw_client(port: int, extra: str = "", *, rcvbuf: int | None = None,
                      path: str = "/ws") -> tuple[trio.SocketStream, bytes, bytes]:
    """A handshake by hand: the stream, the response head and what came after it."""
    stream = await _connected(port, rcvbuf=rcvbuf)
    await stream.send_all(_upgrade_request(path, extra))
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive_some(65536)
        assert chunk, received
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return stream, head, rest


async def _read_until_eof(stream: trio.SocketStream, start: bytes = b"") -> bytes:
    received = start
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def test_handshake_scope_subprotocol_and_headers() -> None:
    """The scope is hypercorn's; the chosen subprotocol and extra headers are answered."""
    seen: list[dict[str, Any]] = []
    async with ws_server(_echo_app(seen)) as served:
        url = f"ws://127.0.0.1:{served.port}/a%20b/ws?token=t1"
        async with ws_client(url, subprotocols=["one", "two"]) as ws:
            assert ws.subprotocol == "two"
            assert dict(ws.handshake_headers)[b"x-hello"] == b"yes"
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
    scope = seen[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/a b/ws"
    assert scope["raw_path"] == b"/a%20b/ws"
    assert scope["query_string"] == b"token=t1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", served.port)
    assert (b"host", b"127.0.0.1:%d" % served.port) in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]
    assert isinstance(scope["extensions"][WIRE_EXTENSION], WebsocketConnection)


async def test_text_binary_and_ping() -> None:
    """Text comes back as text, bytes as bytes; a ping is answered with its payload."""
    async with (ws_server(_echo_app([])) as served,
                ws_client(f"ws://127.0.0.1:{served.port}/ws") as ws):
        await ws.send_message("é€😀")
        assert await ws.get_message() == "é€😀"
        await ws.send_message(b"\x00\xff" * 70_000)
        assert await ws.get_message() == b"\x00\xff" * 70_000
        with trio.fail_after(5):
            await ws.ping(b"are you there")


async def test_fragmented_message_with_a_ping_between() -> None:
    """A text message in three fragments, a ping between two of them, and a binary one
    sent in the same write as the handshake: each arrives whole, the ping is answered."""
    async with ws_server(_echo_app([])) as served:
        stream = await _connected(served.port)
        await stream.send_all(_upgrade_request() + _masked(0x2, b"early"))
        await stream.send_all(_masked(0x1, b"he", fin=False) + _masked(0x9, b"p1")
                              + _masked(0x0, "ll€".encode(), fin=False)
                              + _masked(0x0, b"o", fin=True))
        pong, echoes = b"\x8a\x02p1", b"\x82\x05early" + b"\x81\x08hell\xe2\x82\xaco"
        received = b""
        with trio.fail_after(5):
            while len(received.partition(b"\r\n\r\n")[2]) < len(pong + echoes):
                received += await stream.receive_some(65536)
        body = received.partition(b"\r\n\r\n")[2]
        assert pong in body  # answered as soon as it is read, maybe before an echo
        assert body.replace(pong, b"") == echoes
        await stream.aclose()


@pytest.mark.parametrize("fragments", [1, 4])
async def test_message_over_the_limit_closes_with_1009(fragments: int) -> None:
    """A message larger than max_message_bytes, whole or in fragments, closes with 1009;
    the app sees the disconnect with that code."""
    seen: list[dict[str, Any]] = []
    async with ws_server(_echo_app(seen), max_message_bytes=1000) as served:
        async with ws_client(f"ws://127.0.0.1:{served.port}/ws") as ws:
            await ws.send_message("x" * 1000)
            assert await ws.get_message() == "x" * 1000
            if fragments == 1:
                await ws.send_message("y" * 1001)
            else:
                await ws._stream.send_all(b"".join(
                    _masked(0x1 if n == 0 else 0x0, b"z" * 300, fin=n == fragments - 1)
                    for n in range(fragments)))
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(5):
                    await ws.get_message()
            assert closed.value.reason.code == 1009
        with trio.fail_after(5):
            await served.gone.wait()
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1009}


async def test_deflate_is_declined() -> None:
    """A client offering permessage-deflate gets a 101 without any extension."""
    async with ws_server(_echo_app([])) as served:
        stream, head, _ = await _raw_client(
            served.port, "Sec-WebSocket-Extensions: permessage-deflate; "
                         "client_max_window_bits\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()
        await stream.aclose()


async def test_client_close_code_reaches_the_app() -> None:
    """The client closes with 4000: the app gets it in its disconnect, the close is
    answered, and the server closes the TCP connection."""
    seen: list[dict[str, Any]] = []
    async with ws_server(_echo_app(seen)) as served:
        async with ws_client(f"ws://127.0.0.1:{served.port}/ws") as ws:
            await ws.aclose(4000, "bye")
            assert ws.closed is not None
            assert ws.closed.code == 4000
        with trio.fail_after(5):
            await served.gone.wait()
    assert seen[-1] == {"type": "websocket.disconnect", "code": 4000}


async def test_server_close_releases_the_connection() -> None:
    """The app closes with 4008 while the client still sends: the client sees 4008 and
    EOF after the close handshake, and the server's socket is closed (its fd is free)."""
    fds = len(os.listdir("/proc/self/fd"))
    async with ws_server(_echo_app([])) as served:
        stream, head, rest = await _raw_client(served.port)
        assert head.startswith(b"HTTP/1.1 101")
        await stream.send_all(_masked(0x1, b"one") + _masked(0x1, b"close please")
                              + _masked(0x1, b"ignored after the close"))
        received = rest
        with trio.fail_after(5):
            while b"\x88\x05\x0f\xa8cut" not in received:
                received += await stream.receive_some(65536)
            await stream.send_all(_masked(0x8, b"\x0f\xa8"))  # the close reply
            received = await _read_until_eof(stream, received)
        assert received == b"\x81\x03one" + b"\x88\x05\x0f\xa8cut"
        with trio.fail_after(5):
            await served.gone.wait()
        assert served.ended[0].socket.fileno() == -1
        await stream.aclose()
    assert len(os.listdir("/proc/self/fd")) <= fds


async def test_a_peer_that_never_answers_the_close_is_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    """The app closes; the client neither reads nor replies: the server drops the
    connection once the close bound has passed instead of holding it."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with trio.move_on_after(2):  # the peer stops reading: the app gives up sending
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 65536})
        await send({"type": "websocket.close", "code": 4008})

    async with ws_server(app) as served:
        stream, head, _ = await _raw_client(served.port, rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101")
        began = trio.current_time()
        with trio.fail_after(60):
            await served.gone.wait()
        assert trio.current_time() - began < 10
        await stream.aclose()


async def test_app_failure_before_accept_answers_500_and_after_closes_1011() -> None:
    """An app that raises before accepting gets the client a 500; after accepting, a
    close with 1011."""
    async def early(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def late(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom")

    async with ws_server(early) as served:
        stream, head, _ = await _raw_client(served.port)
        assert head.startswith(b"HTTP/1.1 500")
        await stream.aclose()
    async with ws_server(late) as served:
        with pytest.raises(ConnectionClosed) as closed:
            async with ws_client(f"ws://127.0.0.1:{served.port}/ws") as ws:
                await ws.get_message()
        assert closed.value.reason.code == 1011


def _quart_app() -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/private")
    async def private() -> None:
        abort(401)

    @app.websocket("/closed")
    async def closed() -> None:
        await websocket.close(1000)

    @app.websocket("/echo")
    async def echo() -> None:
        await websocket.accept()
        while True:
            await websocket.send(await websocket.receive())

    return app


@pytest.mark.parametrize(("path", "status"), [("/private", 401), ("/nowhere", 404),
                                              ("/closed", 403)])
async def test_quart_refusal_before_accept_is_an_http_response(path: str,
                                                               status: int) -> None:
    """A route that aborts before accepting (or an unknown path) answers with that HTTP
    status (the denial response extension); a close before accepting is a 403."""
    async with ws_server(_quart_app()) as served:
        stream, head, rest = await _raw_client(served.port, path=path)
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
        await _read_until_eof(stream, rest)  # and the server closes the connection
        await stream.aclose()


async def test_quart_echo_through_its_public_path() -> None:
    """Quart's own websocket receive and send work over lcx's connection."""
    async with (ws_server(_quart_app()) as served,
                ws_client(f"ws://127.0.0.1:{served.port}/echo") as ws):
        for text in ("a", "b" * 70_000, "c"):
            await ws.send_message(text)
            assert await ws.get_message() == text


async def test_a_claimed_reader_gets_every_frame_and_quart_none() -> None:
    """A handler that claims the reads before accepting gets every frame itself (those
    sent with the handshake too), in order, and sees the client's close as the end."""
    got: list[str | bytes] = []
    ended = trio.Event()
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def claimed() -> None:
        connection = websocket.scope["extensions"][WIRE_EXTENSION]
        connection.claim_reads()
        await websocket.accept()
        try:
            while True:
                got.append(await connection.receive())
        except ConnectionClosing:
            ended.set()
        finally:
            connection.release_reads()

    async with ws_server(app) as served:
        stream = await _connected(served.port)
        await stream.send_all(_upgrade_request() + _masked(0x1, b"first"))
        for n in range(50):
            await stream.send_all(_masked(0x1, b"%d" % n))
        await stream.send_all(_masked(0x8, b"\x03\xe8"))
        with trio.fail_after(5):
            received = await _read_until_eof(stream)
            await ended.wait()
            await served.gone.wait()
        assert received.endswith(b"\x88\x02\x03\xe8")
        await stream.aclose()
    assert got == ["first", *(str(n) for n in range(50))]
