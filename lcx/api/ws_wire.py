"""Writing queued frames to an agent websocket: several frames, one write.

The public path (``websocket.send`` per frame) goes through Quart, hypercorn's ASGI
``app_send``, wsproto's event building and a locked, shielded ``send_all`` for every
frame: most of the server's CPU when a request is broadcast to many agents. The fast path
serialises every frame queued on a socket (text frames, server side: no mask, no
extension) and writes them to the connection's socket at once, without a task switch:
when nobody else is writing (hypercorn's send lock is free) the bytes go straight to the
socket with one ``os.write``; whatever the kernel does not take at once goes through
hypercorn's stream (its lock, a shielded ``send_all``), before any later frame.

It reaches into hypercorn (its ``WSStream`` behind the ASGI ``send``), so it is used only
with the exact versions it was written against (:data:`KNOWN_VERSIONS`) and only when the
connection negotiated no extension; otherwise, or when anything does not look as
expected, the public path is used. ``tests/api/test_ws_wire_paths.py`` proves both paths
put the same bytes on the wire.
"""

from __future__ import annotations

import logging
import os
import struct
from functools import partial
from importlib.metadata import version
from typing import Any, cast

import trio
from quart import websocket
from wsproto.connection import ConnectionState

log = logging.getLogger("lcx.ws")

__all__ = ["KNOWN_VERSIONS", "WireWriter", "decline_deflate", "text_frame"]

KNOWN_VERSIONS = {"hypercorn": "0.18.0", "wsproto": "1.3.2"}
"""The versions whose internals the fast path relies on."""

_TEXT_FIN = 0x81  # FIN, no RSV bits, opcode 1 (text)


def _versions_match() -> bool:
    try:
        return all(version(name) == wanted for name, wanted in KNOWN_VERSIONS.items())
    except Exception:  # a missing distribution: use the public path
        return False


FAST_PATH_AVAILABLE = _versions_match()


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 section 5.2) carrying ``payload``
    (UTF-8 JSON), as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + payload


def _hypercorn_stream() -> Any | None:
    """The hypercorn ``WSStream`` of the current websocket, or None if not recognisable."""
    if not FAST_PATH_AVAILABLE:
        return None
    from hypercorn.protocol.ws_stream import WSStream

    send = getattr(cast(Any, websocket)._get_current_object(), "_send", None)
    if not isinstance(send, partial) or len(send.args) != 1:
        return None
    stream = getattr(send.args[0], "__self__", None)
    return stream if isinstance(stream, WSStream) else None


def decline_deflate() -> None:
    """Accept the current websocket without permessage-deflate (call before ``accept``).

    Agent frames are small JSON: compressing them costs more CPU than it saves on
    loopback or LAN, and each deflate context holds memory per socket. Nothing happens
    when hypercorn is not the known version (the client may then get deflate)."""
    stream = _hypercorn_stream()
    if stream is not None and hasattr(stream, "handshake"):
        stream.handshake.extensions = None


class WireWriter:
    """Writes batches of encoded frames to the current websocket (fast path when it can).

    Made inside the websocket handler, after ``accept``. ``writes`` counts writes to the
    transport, ``frames`` the frames they carried.
    """

    __slots__ = ("_fd", "_lock", "_socket", "_stream", "frames", "holding", "owed", "writes")

    def __init__(self, *, fast: bool = True) -> None:
        self._stream = _hypercorn_stream() if fast else None
        if self._stream is not None and not self._plain(self._stream):
            self._stream = None
        self._lock: Any = None
        self._fd = -1
        self._socket: Any = None
        if self._stream is not None:
            self._lock, self._fd = self._socket_of(self._stream)
            self._socket = self._stream_socket(self._stream) if self._lock else None
        self.writes = 0
        self.frames = 0
        self.owed = b""
        """Bytes of frames given to :meth:`write_now` not written yet."""
        self.holding = False
        """Whether part of :attr:`owed`'s first frame is on the wire (this writer then
        holds hypercorn's send lock)."""

    @staticmethod
    def _socket_of(stream: Any) -> tuple[Any, int]:
        """hypercorn's send lock and the socket's descriptor behind ``stream`` (an HTTP/1.1
        upgrade on a plain TCP connection), or (None, -1)."""
        tcp = getattr(getattr(stream.send, "__self__", None), "send", None)
        server = getattr(tcp, "__self__", None)
        lock = getattr(server, "send_lock", None)
        socket_stream = getattr(server, "stream", None)
        if not isinstance(lock, trio.Lock) or not isinstance(socket_stream,
                                                              trio.SocketStream):
            return None, -1
        return lock, socket_stream.socket.fileno()

    @staticmethod
    def _stream_socket(stream: Any) -> Any:
        return stream.send.__self__.send.__self__.stream.socket

    @property
    def fast(self) -> bool:
        """Whether batches go straight to hypercorn's stream."""
        return self._stream is not None

    @property
    def direct(self) -> bool:
        """Whether batches may be written straight to the socket (no task switch)."""
        return self._lock is not None

    @staticmethod
    def _plain(stream: Any) -> bool:
        """Connected, with no extension negotiated (frames go out as they are)."""
        from hypercorn.protocol.ws_stream import ASGIWebsocketState

        connection = getattr(stream, "connection", None)
        proto = getattr(connection, "_proto", None)
        return (stream.state == ASGIWebsocketState.CONNECTED and proto is not None
                and not proto.extensions)

    async def write(self, frames: list[bytes]) -> None:
        """Send ``frames`` (UTF-8 JSON each) in order, as text messages."""
        stream = self._stream
        if stream is None:
            for frame in frames:
                await websocket.send(frame.decode())
            self.writes += len(frames)
            self.frames += len(frames)
            return

        if self.direct:
            if not self.write_now(frames):
                with trio.CancelScope(shield=True):  # never leave a frame half written
                    while self.holding:
                        await self.wait_writable()
                        self.resume_now()
                await self.send_owed()
            return
        from hypercorn.protocol.events import Data as StreamData

        if stream.closed or stream.connection.state != ConnectionState.OPEN:
            return  # as hypercorn's app_send (wsproto refuses data after a close)
        data = b"".join([text_frame(f) for f in frames])
        self.writes += 1
        self.frames += len(frames)
        with trio.CancelScope(shield=True):  # never leave a frame half written
            await stream.send(StreamData(stream_id=stream.stream_id, data=data))

    def write_now(self, frames: list[bytes]) -> bool:
        """Write ``frames`` (UTF-8 JSON each) as text messages without waiting, straight to
        the socket when nobody else is writing to it; True when they were all written.

        Otherwise the bytes not written are :attr:`owed`, to go before any later frame:
        when part of a frame is already on the wire, this writer holds hypercorn's send
        lock (:attr:`holding`) so that nothing else is written in between, and
        :meth:`resume_now` (called by the same task, once the socket is writable) writes
        the rest and lets go of the lock; when nothing was written, :meth:`send_owed`
        sends them through hypercorn. Nothing is written (and nothing owed) once the
        connection is closing. Only for a direct writer (:attr:`direct`), nothing owed.
        """
        stream = self._stream
        assert stream is not None
        assert self._lock is not None
        assert not self.owed
        if stream.closed or stream.connection.state is not ConnectionState.OPEN:
            return True  # as hypercorn's app_send (wsproto refuses data after a close)
        data = (text_frame(frames[0]) if len(frames) == 1
                else b"".join([text_frame(f) for f in frames]))
        self.writes += 1
        self.frames += len(frames)
        # the descriptor is used only while the connection's socket still owns it: once
        # hypercorn closes it the number may belong to another connection
        if self._lock.locked() or self._socket.fileno() != self._fd:
            self.owed = data
            return False
        # nobody is mid-write and nothing here yields before the write: whole frames
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return True  # broken: hypercorn's reader notices and closes the connection
        if written == len(data):
            return True
        self.owed = data[written:]
        if written:
            self._lock.acquire_nowait()  # free (checked above, nothing yielded since)
            self.holding = True
        return False

    def resume_now(self) -> bool:
        """Write more of a frame begun by :meth:`write_now` (by the task that began it),
        without waiting; True (and the send lock let go) when it is all written or the
        connection broke."""
        if not self.holding:
            return not self.owed
        done: bool = self._socket.fileno() != self._fd
        if not done:
            try:
                written = os.write(self._fd, self.owed)
            except BlockingIOError:
                written = 0
            except OSError:
                done = True  # broken: hypercorn's reader notices
            else:
                self.owed = self.owed[written:]
                done = not self.owed
        if done:
            self.owed = b""
            self.holding = False
            assert self._lock is not None
            self._lock.release()
        return done

    async def wait_writable(self) -> None:
        """Wait until the socket can take more bytes (for :meth:`resume_now`); returns at
        once when the socket is closed."""

        if self._socket is None or self._socket.fileno() != self._fd:
            return
        try:
            await trio.lowlevel.wait_writable(self._socket)
        except (OSError, trio.ClosedResourceError, trio.BusyResourceError):
            await trio.lowlevel.checkpoint()

    async def send_owed(self) -> None:
        """Send the bytes :meth:`write_now` could not begin to write through hypercorn's
        stream (its send lock, shielded: a frame is never left half written)."""
        stream = self._stream
        data, self.owed = self.owed, b""
        if not data or self.holding or stream is None:
            self.owed = data if self.holding else b""
            return
        from hypercorn.protocol.events import Data as StreamData

        if stream.closed or stream.connection.state != ConnectionState.OPEN:
            return
        with trio.CancelScope(shield=True):  # never leave a frame half written
            await stream.send(StreamData(stream_id=stream.stream_id, data=data))
