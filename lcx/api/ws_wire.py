"""Writing queued frames to an agent websocket (several frames, one write) and reading its
frames, straight through lcx's own websocket connection when the server is lcx's.

On lcx's server the scope offers the connection (``scope["extensions"]["lcx.wire"]``, a
:class:`~lcx.server.ws_connection.WebsocketConnection`): a batch of text frames is
serialised here and written with one ``os.write`` when nothing is pending on the socket,
without a task switch; what the kernel does not take stays pending on the connection, in
order before anything written later, and is written by :meth:`WireWriter.send_owed`.
Frames are read by the handler's own task (:func:`claim_reads`), not through Quart's
reader task and channel.

With any other ASGI server the public path is used: ``websocket.send`` per frame and
``websocket.receive``. ``tests/api/test_ws_wire_paths.py`` proves both paths put the same
bytes on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from quart import websocket

from lcx.server.websocket import WIRE_EXTENSION
from lcx.server.ws_connection import ConnectionClosing, WebsocketConnection

__all__ = ["ConnectionClosing", "WireWriter", "native_connection", "reading", "text_frame"]

_TEXT_FIN = 0x81  # FIN, no RSV bits, opcode 1 (text)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 section 5.2) carrying ``payload``
    (UTF-8 JSON), as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + payload


def native_connection() -> WebsocketConnection | None:
    """The current websocket's lcx connection, or None on another server."""
    extensions = websocket.scope.get("extensions") or {}
    connection = extensions.get(WIRE_EXTENSION)
    return connection if isinstance(connection, WebsocketConnection) else None


@asynccontextmanager
async def reading() -> AsyncIterator[Callable[[], Awaitable[str | bytes]]]:
    """The current websocket's ``receive`` for the block: on lcx's server the calling
    task reads the socket itself (no task in between) and :exc:`ConnectionClosing` says
    the peer is gone; elsewhere Quart's ``websocket.receive`` (a disconnect cancels the
    handler). Call before ``accept`` so that no frame goes to Quart's reader first."""
    connection = native_connection()
    if connection is None:
        yield websocket.receive
        return
    connection.claim_reads()
    try:
        yield connection.receive
    finally:
        connection.release_reads()


class WireWriter:
    """Writes batches of encoded frames to the current websocket (directly when it can).

    Made inside the websocket handler, after ``accept``. ``writes`` counts writes to the
    transport, ``frames`` the frames they carried.
    """

    __slots__ = ("_connection", "frames", "writes")

    def __init__(self, *, fast: bool = True) -> None:
        self._connection = native_connection() if fast else None
        self.writes = 0
        self.frames = 0

    @property
    def fast(self) -> bool:
        """Whether batches are written straight to the connection (one write each)."""
        return self._connection is not None

    direct = fast
    """Whether batches may be written without a task switch (:meth:`write_now`)."""

    @property
    def owed(self) -> bool:
        """Whether bytes are pending on the connection (:meth:`send_owed` writes them)."""
        connection = self._connection
        return connection is not None and connection.pending > 0

    async def write(self, frames: list[bytes]) -> None:
        """Send ``frames`` (UTF-8 JSON each) in order, as text messages."""
        if self._connection is None:
            for frame in frames:
                await websocket.send(frame.decode())
            self.writes += len(frames)
            self.frames += len(frames)
            return
        if not self.write_now(frames):
            await self.send_owed()

    def write_now(self, frames: list[bytes]) -> bool:
        """Write ``frames`` (UTF-8 JSON each) as text messages without waiting; True when
        the kernel took them all. Otherwise the rest is pending on the connection, before
        anything written later, until :meth:`send_owed`. Nothing is written once the
        connection is closing. Only for a direct writer (:attr:`direct`)."""
        connection = self._connection
        assert connection is not None
        if not connection.open:
            return True  # closing: data after a close frame is refused
        data = (text_frame(frames[0]) if len(frames) == 1
                else b"".join([text_frame(f) for f in frames]))
        self.writes += 1
        self.frames += len(frames)
        return connection.write_nowait(data)

    def write_framed_now(self, data: bytes, frames: int) -> bool:
        """:meth:`write_now` for ``frames`` frames already framed (:func:`text_frame`, the
        same bytes for many sockets): True when the kernel took them all."""
        connection = self._connection
        assert connection is not None
        if not connection.open:
            return True  # closing: data after a close frame is refused
        self.writes += 1
        self.frames += frames
        return connection.write_nowait(data)

    async def send_owed(self) -> None:
        """Write what is pending on the connection, waiting for the socket to take it
        (cancelling leaves the rest pending, in order: no frame is ever half sent)."""
        connection = self._connection
        if connection is not None:
            await connection.drain()
