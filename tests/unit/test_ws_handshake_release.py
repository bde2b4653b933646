"""An accepted websocket handshake lets go of its HTTP machinery (wsproto's handshake and
the h11 connection inside it: a few KiB per open socket, 10,000 sockets on an instance),
and a denial can no longer be written after it."""

from __future__ import annotations

import base64

import pytest

from lcx.server.ws_handshake import parse_handshake

KEY = base64.b64encode(b"0123456789abcdef").decode()
HEAD = ("GET /ws?token=t HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def test_accepting_drops_the_wsproto_handshake() -> None:
    """The 101 is written once; afterwards the handshake holds no wsproto object, the
    scope is still whole, and a denial (or a second accept) is refused."""
    handshake = parse_handshake(HEAD, b"")
    response = handshake.accept(None, [])
    assert response.startswith(b"HTTP/1.1 101 ")
    assert handshake.wsproto is None
    assert handshake.scope(client=None, server=None, extensions={})["query_string"] == b"token=t"
    with pytest.raises(RuntimeError):
        handshake.deny_head(403, [], has_body=False)
    with pytest.raises(RuntimeError):
        handshake.accept(None, [])


def test_a_denial_before_accepting_still_works() -> None:
    """Refusing before accepting writes the response head and body as before."""
    handshake = parse_handshake(HEAD, b"")
    head = handshake.deny_head(403, [(b"content-type", b"text/plain")], has_body=True)
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"no" in handshake.deny_body(b"no", finished=True)
