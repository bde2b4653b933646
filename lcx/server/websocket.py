"""Serving one websocket connection to an ASGI app: :func:`serve_websocket`.

The HTTP server calls it when a request upgrades to a websocket. The app gets the ASGI
``websocket`` scope and ``receive``/``send`` (connect, accept with headers and
subprotocol, receive, send, close, disconnect, and the ``websocket.http.response``
denial extension that Quart uses when a route refuses before accepting); frames are
handled by :class:`~lcx.server.ws_connection.WebsocketConnection`, offered to the app as
``scope["extensions"]["lcx.wire"]`` for writing batches of frames straight to the socket
and reading without a task in between (``lcx.api.ws_wire``).

permessage-deflate is always declined: agent frames are small JSON, and compressing them
costs more CPU than it saves on loopback or a LAN, and memory per socket.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, cast

import trio
from hypercorn.typing import ASGIFramework
from wsproto.utilities import LocalProtocolError

from lcx.server.ws_connection import (
    CLOSE_TIMEOUT_SECONDS,
    ConnectionClosing,
    WebsocketConnection,
    WsState,
)
from lcx.server.ws_handshake import BadHandshake, Handshake, parse_handshake

__all__ = ["MAX_HEAD_BYTES", "WIRE_EXTENSION", "serve_websocket"]

log = logging.getLogger("lcx.ws")

WIRE_EXTENSION = "lcx.wire"
"""The scope extension holding the :class:`WebsocketConnection`."""
MAX_HEAD_BYTES = 256 * 1024
"""The longest upgrade request head read (a longer one is answered 431)."""
HEAD_TIMEOUT_SECONDS = 30.0
"""How long the rest of a request head may take to arrive."""

_INTERNAL_ERROR = 1011


async def serve_websocket(app: ASGIFramework, stream: trio.SocketStream, raw: bytes, *,
                          client: tuple[str, int] | None, server: tuple[str, int] | None,
                          max_message_bytes: int) -> None:
    """Serve the websocket whose upgrade request begins ``raw`` (every byte received on
    ``stream`` so far: the request head, and maybe frames after it) until it is over.

    A request that is not a valid handshake is answered 400 (or 426 for a wrong
    version). Messages over ``max_message_bytes`` close with 1009. Returns once the app
    has returned and the close handshake is done or given up (at most
    :data:`~lcx.server.ws_connection.CLOSE_TIMEOUT_SECONDS`); the caller closes ``stream``.
    """
    received = await _whole_head(stream, raw)
    if received is None:
        return
    end = received.index(b"\r\n\r\n") + 4
    try:
        handshake = parse_handshake(received[:end], received[end:])
    except BadHandshake as bad:
        await _send_quietly(stream, bad.response)
        return
    connection = WebsocketConnection(stream, max_message_bytes=max_message_bytes)
    session = _Session(handshake, connection)
    scope = handshake.scope(client=client, server=server, extensions={
        "websocket.http.response": {}, WIRE_EXTENSION: connection})
    try:
        await session.run(app, scope)
    finally:
        connection.detach()


async def _whole_head(stream: trio.SocketStream, raw: bytes) -> bytes | None:
    """``raw`` with the rest of the request head read if it is not all there yet."""
    with trio.move_on_after(HEAD_TIMEOUT_SECONDS):
        while b"\r\n\r\n" not in raw:
            if len(raw) > MAX_HEAD_BYTES:
                await _send_quietly(stream, b"HTTP/1.1 431 Request Header Fields Too Large"
                                            b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return None
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not chunk:
                return None
            raw += chunk
        return raw
    return None


async def _send_quietly(stream: trio.SocketStream, data: bytes) -> None:
    with (trio.move_on_after(CLOSE_TIMEOUT_SECONDS),
          contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError)):
        await stream.send_all(data)


class _Session:
    """The ASGI side of one websocket: the app's ``receive`` and ``send``."""

    def __init__(self, handshake: Handshake, connection: WebsocketConnection) -> None:
        self.handshake = handshake
        self.connection = connection
        self.connected = False
        """``websocket.connect`` was received by the app."""
        self.denied = False
        """A denial response began (``websocket.http.response.start`` or a close before
        accepting)."""
        self.denial: dict[str, Any] | None = None
        self.decided = trio.Event()
        """Set once the app accepted or denied the handshake."""

    async def run(self, app: ASGIFramework, scope: dict[str, Any]) -> None:
        """Run the app to its end, then finish the connection."""
        connection = self.connection
        failed = False
        try:
            await app(cast(Any, scope), self.receive, self.send)  # type: ignore[arg-type]
        except Exception:
            log.exception("the websocket app failed")
            failed = True
        if connection.state is WsState.CONNECTING:
            if not self.denied:  # the app ended without accepting or refusing
                await self._write(self.handshake.deny_head(500, [], has_body=False))
            return
        if self.denied:
            return
        if connection.open:
            await connection.close(_INTERNAL_ERROR if failed else 1000)
        await self._finish()

    async def _finish(self) -> None:
        """Write what is pending and read until the peer's close, within the close bound."""
        connection = self.connection
        deadline = connection.close_deadline
        if deadline == float("inf"):
            deadline = trio.current_time() + CLOSE_TIMEOUT_SECONDS
        with trio.move_on_at(deadline):
            await connection.drain()
            while not connection.over:
                try:
                    await connection.receive()
                except ConnectionClosing:
                    break

    async def _write(self, data: bytes) -> None:
        connection = self.connection
        if not connection.write_nowait(data):
            with trio.move_on_after(CLOSE_TIMEOUT_SECONDS):
                await connection.drain()

    async def receive(self) -> dict[str, Any]:
        """The app's ASGI ``receive``."""
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        connection = self.connection
        if connection.state is WsState.CONNECTING:
            await self.decided.wait()
            if connection.state is WsState.CONNECTING:  # denied: nothing more comes
                return {"type": "websocket.disconnect", "code": 1000}
        try:
            message = await connection.receive_unclaimed()
        except ConnectionClosing:
            return {"type": "websocket.disconnect", "code": connection.close_code or 1005}
        if isinstance(message, str):
            return {"type": "websocket.receive", "text": message, "bytes": None}
        return {"type": "websocket.receive", "bytes": message, "text": None}

    async def send(self, message: dict[str, Any]) -> None:
        """The app's ASGI ``send``."""
        kind = message["type"]
        connection = self.connection
        if kind == "websocket.send":
            if message.get("bytes") is not None:
                await connection.send_message(bytes(message["bytes"]))
            else:
                text = message.get("text")
                if not isinstance(text, str):
                    raise TypeError("websocket.send needs text or bytes")
                await connection.send_message(text)
        elif connection.state is not WsState.CONNECTING:
            if kind == "websocket.close":
                await connection.close(int(message.get("code") or 1000),
                                       message.get("reason"))
            elif kind not in ("websocket.accept", "websocket.http.response.start",
                              "websocket.http.response.body"):
                raise ValueError(f"unexpected ASGI message {kind!r}")
            # an accept or a denial after the handshake is decided: ignored
        elif self.denied and kind != "websocket.http.response.body":
            raise ValueError(f"unexpected ASGI message {kind!r} while denying")
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":  # refused before accepting: 403, as hypercorn
            self.denied = True
            self.decided.set()
            await self._write(self.handshake.deny_head(403, [(b"connection", b"close")],
                                                       has_body=False))
        elif kind == "websocket.http.response.start":
            self.denied = True
            self.denial = message
        elif kind == "websocket.http.response.body":
            await self._deny_body(message)
        else:
            raise ValueError(f"unexpected ASGI message {kind!r}")

    async def _accept(self, message: dict[str, Any]) -> None:
        headers = [(bytes(name).lower(), bytes(value))
                   for name, value in message.get("headers") or []]
        if any(name == b"sec-websocket-protocol" for name, _ in headers):
            raise ValueError("the subprotocol goes in the accept's 'subprotocol'")
        try:
            response = self.handshake.accept(message.get("subprotocol"), headers)
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        connection = self.connection
        connection.write_nowait(response)
        connection.opened(self.handshake.leftover)
        self.decided.set()
        await connection.drain()

    async def _deny_body(self, message: dict[str, Any]) -> None:
        if self.denial is None:
            raise ValueError("websocket.http.response.body before its start")
        finished = not message.get("more_body", False)
        data = b""
        if self.denial.get("status") is not None:
            status = int(self.denial["status"])
            headers = [(bytes(name), bytes(value))
                       for name, value in self.denial.get("headers") or []]
            data = self.handshake.deny_head(status, headers, has_body=True)
            self.denial["status"] = None  # the head is written once
        data += self.handshake.deny_body(bytes(message.get("body", b"")), finished=finished)
        if finished:
            self.decided.set()
        await self._write(data)
