"""The websocket fast path decodes exactly what wsproto decodes: the same messages, the same
pongs written back and the same close code, for the same bytes however the reads cut them
(whole frames, fragments, pings between, frames too long for it, bad UTF-8, unmasked)."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
from wsproto.frame_protocol import FrameProtocol, Opcode

from lcx.server.ws_connection import FAST_MAX_PAYLOAD, WebsocketConnection, WsState

_client = FrameProtocol(client=True, extensions=[])
"""Builds masked frames as a client sends them."""


def _text(text: str) -> bytes:
    return bytes(_client.send_data(text, fin=True))


def _binary(data: bytes) -> bytes:
    return bytes(_client.send_data(data, fin=True))


def _fragments(text: str, parts: int) -> bytes:
    step = max(1, len(text) // parts)
    pieces = [text[i:i + step] for i in range(0, len(text), step)] or [""]
    return b"".join(bytes(_client.send_data(piece, fin=index == len(pieces) - 1))
                    for index, piece in enumerate(pieces))


def _ping(payload: bytes) -> bytes:
    return bytes(_client.ping(payload))


def _close(code: int) -> bytes:
    return bytes(_client.close(code, "bye"))


def _masked(opcode: int, payload: bytes, *, first: int | None = None) -> bytes:
    """A frame built by hand (for what a client library would not send)."""
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    head = bytes([0x80 | opcode if first is None else first])
    length = len(payload)
    if length <= 125:
        head += bytes([0x80 | length])
    elif length <= 0xFFFF:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + length.to_bytes(8, "big")
    return head + mask + body


@contextmanager
def _connection(*, fast: bool) -> Iterator[tuple[WebsocketConnection, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    try:
        conn = WebsocketConnection(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                                   max_message_bytes=1 << 20)
        conn._fast = fast
        yield conn, peer
    finally:
        ours.close()
        peer.close()


def _outcome(data: bytes, cuts: list[int], *, fast: bool
             ) -> tuple[list[str | bytes], int | None, WsState, bytes]:
    """Feed ``data`` in reads ending at ``cuts``: the messages, close code, state, and
    what the connection wrote back."""
    with _connection(fast=fast) as (conn, peer):
        conn.opened(b"")
        start = 0
        for end in [*cuts, len(data)]:
            if end > start:
                conn._feed(data[start:end])
            start = max(start, end)
        written = b""
        while True:
            try:
                chunk = os.read(peer.fileno(), 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            written += chunk
        return conn.messages, conn.close_code, conn.state, written


def _same(data: bytes, cuts: list[int]) -> None:
    assert _outcome(data, cuts, fast=True) == _outcome(data, cuts, fast=False)


def _streams() -> Iterator[bytes]:
    yield _text("hello") + _text("") + _binary(b"\x00\xff" * 10) + _text("é" * 200)
    yield _text("a" * 125) + _text("b" * 126) + _text("c" * 65535) + _text("d")
    yield _text("x" * (FAST_MAX_PAYLOAD + 10)) + _text("after the long one")
    yield _text("one") + _fragments("fragmented message " * 20, 3) + _text("two")
    yield _text("one") + _ping(b"are you there") + _text("two") + _masked(Opcode.PONG, b"")
    yield _fragments("split" * 40, 2)[:30] + _ping(b"p") + _fragments("split" * 40, 2)[30:]
    yield _text("before") + _close(1001) + _text("after the close")
    yield _text("ok") + _masked(Opcode.TEXT, b"\xff\xfe bad utf-8") + _text("never")
    yield _text("ok") + bytes([0x81, 0x02]) + b"hi" + _text("never")  # unmasked
    yield _text("ok") + _masked(Opcode.TEXT, b"rsv", first=0xC1) + _text("never")
    yield _masked(Opcode.PING, b"p" * 126) + _text("never")  # a control frame too long
    yield _text("ok") + _masked(Opcode.CONTINUATION, b"stray") + _text("never")
    yield _text("one") + _masked(Opcode.TEXT, b"y" * 200)[:-1]  # the last one not complete


@pytest.mark.parametrize("stream", list(_streams()), ids=range(len(list(_streams()))))
async def test_fast_path_decodes_as_wsproto_whatever_the_reads(stream: bytes) -> None:
    """In one read, a byte at a time around the start, and in random cuts."""
    _same(stream, [])
    _same(stream, list(range(1, min(len(stream), 40))))
    rng = random.Random(len(stream))
    for _ in range(20):
        _same(stream, sorted(rng.randrange(len(stream)) for _ in range(rng.randrange(1, 8))))


async def test_fast_path_keeps_an_incomplete_frame_for_the_next_read() -> None:
    """A frame cut anywhere is decoded once its last byte arrives, on the fast path."""
    frame = _text("z" * 300)
    for cut in range(1, len(frame)):
        with _connection(fast=True) as (conn, _):
            conn.opened(b"")
            conn._feed(frame[:cut])
            assert conn.messages == []
            conn._feed(frame[cut:])
            assert conn.messages == ["z" * 300]
            assert conn._fast


async def test_fast_path_takes_over_again_once_wsproto_is_between_messages() -> None:
    """After a fragmented message (decoded by wsproto) whole frames take the fast path."""
    with _connection(fast=True) as (conn, _):
        conn.opened(b"")
        conn._feed(_fragments("frag" * 30, 3))
        assert conn._fast
        conn._feed(_text("whole"))
        assert conn.messages == ["frag" * 30, "whole"]
        assert conn._fast
