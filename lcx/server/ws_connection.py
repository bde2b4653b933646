"""One accepted websocket's frames, in and out, over a trio socket stream (RFC 6455).

:class:`WebsocketConnection` decodes what the client sends with wsproto's
:class:`~wsproto.frame_protocol.FrameProtocol` (its lowest layer: about a quarter cheaper
per frame than wsproto's ``Connection`` events, measured; the close handshake it leaves to
its user is kept here) and assembles messages up to ``max_message_bytes`` (a larger one
closes with 1009). No extension is ever negotiated, so frames go out as they are built.

Writing has one ordered buffer of bytes the kernel did not take yet (:attr:`pending`):
:meth:`write_nowait` writes straight to the socket (one ``os.write``, no task switch) when
nothing is pending and queues the rest behind what is; :meth:`drain` writes the pending
bytes as the socket takes them. A write cut short by a cancellation leaves its bytes
pending, in order, so a frame is never left half written and no write is shielded: a peer
that stops reading holds no task past the caller's own bound. Callers bound the bytes
they queue (one batch, one frame or one control frame at a time, each waiting for
:meth:`drain` before the next).

Decoding takes a fast path while the peer sends what agents send: whole masked text or
binary frames, pings and pongs. :func:`_split_frames` cuts those out of the bytes read
(keeping an incomplete last frame for the next read) for about a fifth of wsproto's cost
per frame; from the first frame it does not take (a fragment, a close, anything odd or
wrong) every byte goes to wsproto, which then decodes the connection to its end and says
what is wrong with a bad frame.

Reading is done by whichever task calls :meth:`receive`, without a task in between:
the ASGI ``receive`` (Quart's reader task) until a task claims the reads
(:meth:`claim_reads`, the agent websocket's own reader), after which only that task
reads and the ASGI ``receive`` just waits for the end.
"""

from __future__ import annotations

import enum
import logging
import math
import os

import trio
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed

__all__ = ["CLOSE_TIMEOUT_SECONDS", "ConnectionClosing", "WebsocketConnection", "WsState"]

log = logging.getLogger("lcx.ws")

CLOSE_TIMEOUT_SECONDS = 5.0
"""How long a closing handshake may take (our close frame written, the peer's one read)
before the connection is dropped without it."""
RECEIVE_BYTES = 65536
"""The most bytes taken from the socket per read."""


class WsState(enum.Enum):
    """Where the connection is in its life."""

    CONNECTING = 0
    """The handshake is not answered yet: nothing is read or written as frames."""
    OPEN = 1
    LOCAL_CLOSING = 2
    """We sent a close frame; the peer's is awaited."""
    CLOSED = 3
    """The close handshake is over, failed or was abandoned: nothing more is read."""


class ConnectionClosing(Exception):
    """Raised by :meth:`WebsocketConnection.receive` when no message will come any more."""


class WebsocketConnection:
    """The frames of one websocket over ``stream`` (see the module docstring).

    Offered to the app as ``scope["extensions"]["lcx.wire"]``. ``close_code`` is the
    code the connection ended with (the peer's close code, 1006 when it went away
    without one) once :attr:`over`.
    """

    __slots__ = ("_claimed", "_drain_lock", "_ended", "_fast", "_fd", "_out", "_parts",
                 "_proto", "_read_scope", "_rest", "_size", "_socket", "_stream", "_unclaimed",
                 "close_code", "close_deadline", "detached", "max_message_bytes", "messages",
                 "state")

    def __init__(self, stream: trio.SocketStream, *, max_message_bytes: int) -> None:
        self._stream = stream
        self._socket = stream.socket
        self._fd = stream.socket.fileno()
        self._proto = FrameProtocol(client=False, extensions=[])
        self._fast = True
        """Frames are cut by :func:`_split_frames` (False once wsproto decodes instead)."""
        self._rest = b""
        """On the fast path: the start of a frame not complete yet."""
        self._out = bytearray()
        self._drain_lock: trio.Lock | None = None
        """Made by the first :meth:`drain` that has to wait (most sockets never do)."""
        self._parts: list[str | bytes] = []
        self._size = 0
        self._claimed = False
        self._read_scope: trio.CancelScope | None = None
        self._ended = trio.Event()
        self._unclaimed: trio.Event | None = None
        self.max_message_bytes = max_message_bytes
        self.messages: list[str | bytes] = []
        """Messages decoded and not received yet (a list: an empty deque costs 600 bytes
        more, per socket)."""
        self.state = WsState.CONNECTING
        self.close_code: int | None = None
        self.close_deadline = math.inf
        """When the closing handshake is given up (trio time), once it began."""
        self.detached = False
        """The socket is no longer ours (the server is closing it): nothing is written."""

    # -- state -------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether messages may be sent (accepted, no close sent or received)."""
        return self.state is WsState.OPEN

    @property
    def over(self) -> bool:
        """Whether no message will be received any more."""
        return self._ended.is_set()

    @property
    def pending(self) -> int:
        """Bytes queued for the socket and not taken by the kernel yet."""
        return len(self._out)

    def opened(self, leftover: bytes) -> None:
        """The handshake was accepted; ``leftover`` is what the client sent after it."""
        self.state = WsState.OPEN
        if leftover:
            self._feed(leftover)

    def _end(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        self.state = WsState.CLOSED
        self._ended.set()
        self._wake_unclaimed()

    def _closing(self) -> None:
        if self.close_deadline == math.inf:
            self.close_deadline = trio.current_time() + CLOSE_TIMEOUT_SECONDS

    def abort(self) -> None:
        """Give up on the connection: nothing more is read or written."""
        self._out.clear()
        self._end(CloseReason.ABNORMAL_CLOSURE)

    def detach(self) -> None:
        """The server is about to close the socket: never touch its descriptor again."""
        self.detached = True
        self.abort()

    # -- writing -----------------------------------------------------------------------

    def write_nowait(self, data: bytes | bytearray) -> bool:
        """Write ``data`` after whatever is pending, without waiting: straight to the socket
        when nothing is pending. True when it is all written (or dropped: the connection
        is broken or gone); otherwise the rest is pending and someone must :meth:`drain`."""
        out = self._out
        if self.detached:
            return True
        if out:
            out += data
            return False
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:  # reset or broken pipe: the reader sees the end
            self._out.clear()
            return True
        if written == len(data):
            return True
        out += memoryview(data)[written:]
        return False

    def _write_pending(self) -> None:
        out = self._out
        try:
            written = os.write(self._fd, out)
        except BlockingIOError:
            return
        except OSError:
            out.clear()
            return
        del out[:written]

    async def drain(self) -> None:
        """Wait until every pending byte is written (or the connection broke). Cancelling
        it leaves the bytes not written pending, in order."""
        if not self._out:
            return
        lock = self._drain_lock
        if lock is None:
            lock = self._drain_lock = trio.Lock()
        async with lock:
            while self._out and not self.detached:
                try:
                    await trio.lowlevel.wait_writable(self._socket)
                except (OSError, trio.ClosedResourceError):
                    self._out.clear()
                    break
                self._write_pending()

    async def _write(self, data: bytes | bytearray) -> None:
        if self.write_nowait(data):
            await trio.lowlevel.checkpoint()
        else:
            await self.drain()

    async def send_message(self, message: str | bytes) -> None:
        """Send one message (text for ``str``) as one frame; dropped once closing."""
        if self.state is not WsState.OPEN:
            await trio.lowlevel.checkpoint()
            return
        await self._write(self._proto.send_data(message, fin=True))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send a close frame (once) and wait, at most until :attr:`close_deadline`, for it
        to be written; the peer's close is then read by whoever receives."""
        if self.state is WsState.OPEN:
            self.state = WsState.LOCAL_CLOSING
            self._closing()
            self.write_nowait(self._proto.close(code, reason))
        with trio.move_on_at(self.close_deadline):
            await self.drain()
            return
        self.abort()  # the peer takes nothing: drop it

    # -- reading -----------------------------------------------------------------------

    def claim_reads(self) -> None:
        """From now on only the calling task reads (:meth:`receive`) until it lets go
        (:meth:`release_reads`); a read in progress elsewhere (the ASGI ``receive``) is
        called off and its caller waits."""
        self._claimed = True
        if self._read_scope is not None:
            self._read_scope.cancel()

    def release_reads(self) -> None:
        """The claiming task reads no more: the ASGI ``receive`` reads again (it reads the
        peer's close after the app closed)."""
        self._claimed = False
        self._wake_unclaimed()

    def _wake_unclaimed(self) -> None:
        if self._unclaimed is not None:
            self._unclaimed.set()
            self._unclaimed = None

    async def receive(self) -> str | bytes:
        """The next message (``str`` for a text one), reading the socket when none is
        decoded yet; answers pings and the peer's close on the way.

        Raises:
            ConnectionClosing: no message will come any more (:attr:`close_code` says why).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        messages = self.messages
        while not messages:
            if self._ended.is_set():
                raise ConnectionClosing
            await self._read()
        return messages.pop(0)

    async def receive_unclaimed(self) -> str | bytes:
        """:meth:`receive` for the ASGI ``receive``: while a task claimed the reads, waits
        until it lets go or the connection is over."""
        while True:
            if not self._claimed:
                with trio.CancelScope() as scope:
                    self._read_scope = scope
                    try:
                        return await self.receive()
                    finally:
                        self._read_scope = None
            if self._ended.is_set():
                raise ConnectionClosing
            self._unclaimed = trio.Event()
            await self._unclaimed.wait()

    async def _read(self) -> None:
        if self._out:  # pongs and close replies go out before more is read
            await self._drain_for_reader()
        if self.state is WsState.LOCAL_CLOSING:
            with trio.move_on_at(self.close_deadline):
                data = await self._recv()
                self._feed(data)
                return
            self.abort()
            return
        self._feed(await self._recv())

    async def _drain_for_reader(self) -> None:
        if self.state is WsState.OPEN:
            await self.drain()
            return
        with trio.move_on_at(self.close_deadline):
            await self.drain()
            return
        self.abort()

    async def _recv(self) -> bytes:
        try:
            return await self._socket.recv(RECEIVE_BYTES)
        except OSError:
            return b""

    def _feed(self, data: bytes) -> None:
        if not data:
            self._end(CloseReason.ABNORMAL_CLOSURE)  # gone without a close frame
            return
        if self.state is WsState.CLOSED:
            return
        if self._fast:
            self._decode_fast(self._rest + data if self._rest else data)
            return
        self._proto.receive_bytes(data)
        self._decode()

    def _decode_fast(self, data: bytes) -> None:
        frames, used, refused = _split_frames(data)
        for opcode, payload in frames:
            if opcode == _TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(CloseReason.INVALID_FRAME_PAYLOAD_DATA)
                    return
                self._message_part(text, True)
            elif opcode == _BINARY:
                self._message_part(payload, True)
            elif opcode == _PING and self.state is WsState.OPEN:
                self.write_nowait(self._proto.pong(payload))
            if self.state is WsState.CLOSED:
                return
        rest = data[used:] if used else data
        if not refused:  # nothing, or the start of a frame not complete yet
            self._rest = rest
            return
        self._fast = False  # wsproto decodes from the frame the fast path does not take
        self._rest = b""
        self._proto.receive_bytes(rest)
        self._decode()

    def _decode(self) -> None:
        try:
            for frame in self._proto.received_frames():
                opcode, payload = frame.opcode, frame.payload
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    self._message_part(payload, frame.message_finished)  # type: ignore[arg-type]
                elif opcode is Opcode.PING:
                    if self.state is WsState.OPEN:
                        self.write_nowait(self._proto.pong(payload))  # type: ignore[arg-type]
                elif opcode is Opcode.CLOSE:
                    self._peer_closed(*payload)
                    return
        except ParseFailed as exc:
            self._fail(exc.code)
            return
        if self.state is not WsState.CLOSED and _wsproto_idle(self._proto):
            self._fast = True  # between frames again: back to the fast path

    def _message_part(self, payload: str | bytes, finished: bool) -> None:
        if self.state is not WsState.OPEN:
            return  # closing: what the peer still sends is not delivered
        size = self._size + len(payload)
        if size > self.max_message_bytes:
            self._parts.clear()
            self._size = 0
            self.close_code = CloseReason.MESSAGE_TOO_BIG
            self.state = WsState.LOCAL_CLOSING
            self._closing()
            self.write_nowait(self._proto.close(CloseReason.MESSAGE_TOO_BIG))
            return
        if finished and not self._parts:
            self.messages.append(payload)
            return
        self._parts.append(payload)
        self._size = size
        if finished:
            parts, self._parts, self._size = self._parts, [], 0
            self.messages.append("".join(parts) if isinstance(payload, str)  # type: ignore[arg-type]
                                 else b"".join(parts))  # type: ignore[arg-type]

    def _peer_closed(self, code: int, reason: str) -> None:
        if self.state is WsState.OPEN:
            self._closing()
            self.write_nowait(self._proto.close(code, reason or None))
        self._end(code)

    def _fail(self, code: int) -> None:
        """The peer broke the protocol: say why (a close frame) and stop reading."""
        if self.state is WsState.OPEN:
            self._closing()
            self.write_nowait(self._proto.close(code, None))
        self._end(code)



_TEXT, _BINARY, _PING, _PONG = 0x1, 0x2, 0x9, 0xA
_FAST_FIRST = frozenset({0x80 | _TEXT, 0x80 | _BINARY, 0x80 | _PING, 0x80 | _PONG})
"""First bytes the fast path takes: FIN, no reserved bit, an unfragmented data frame or
a ping or pong."""
FAST_MAX_PAYLOAD = 65536
"""The longest frame payload the fast path takes (a longer one goes to wsproto, which
takes it a read at a time)."""
_SHORT, _TWO_BYTES = 125, 126
_MORE = -1


def _frame_end(data: bytes, start: int) -> int:
    """Where the frame beginning at ``start`` ends (maybe beyond ``data``) if the fast path
    takes it; :data:`_MORE` when its head is not all there yet to tell; ``0`` when the
    fast path leaves it to wsproto (which also refuses what breaks the protocol: an
    unmasked frame, a control frame over 125 bytes, a length not in its shortest form)."""
    size = len(data) - start
    if data[start] not in _FAST_FIRST:
        return 0
    if size < 2:
        return _MORE
    second = data[start + 1]
    if not second & 0x80:
        return 0
    length = second & 0x7F
    if length <= _SHORT:
        return start + 6 + length
    if length != _TWO_BYTES or data[start] & 0x08:  # 8-byte lengths, long control frames
        return 0
    if size < 4:
        return _MORE
    length = int.from_bytes(data[start + 2:start + 4], "big")
    return start + 8 + length if _SHORT < length <= FAST_MAX_PAYLOAD else 0


def _split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], int, bool]:
    """The complete frames at the start of ``data`` that the fast path takes, as (opcode,
    unmasked payload); how many bytes they took; whether the next frame is one the fast
    path does not take (else what follows them is the start of a frame, or nothing)."""
    frames: list[tuple[int, bytes]] = []
    start, size = 0, len(data)
    while start < size:
        end = _frame_end(data, start)
        if end == 0:
            return frames, start, True
        if end == _MORE or end > size:
            break
        head = start + (2 if data[start + 1] & 0x7F <= _SHORT else 4)
        count = end - head - 4
        if count:
            key = int.from_bytes((data[head:head + 4] * (count // 4 + 1))[:count], "big")
            payload = (int.from_bytes(data[head + 4:end], "big") ^ key).to_bytes(count, "big")
        else:
            payload = b""
        frames.append((data[start] & 0x0F, payload))
        start = end
    return frames, start, False


def _wsproto_idle(proto: FrameProtocol) -> bool:
    """Whether wsproto holds no part of a frame or message (then the fast path may take
    over again); False when its internals are not the ones known here."""
    decoder = getattr(proto, "_frame_decoder", None)
    messages = getattr(proto, "_message_decoder", None)
    buffer = getattr(decoder, "buffer", None)
    return (decoder is not None and messages is not None and buffer is not None
            and getattr(decoder, "header", True) is None
            and getattr(messages, "opcode", True) is None and len(buffer) == 0)
