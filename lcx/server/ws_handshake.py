"""The opening handshake of a websocket (RFC 6455 section 4) and its ASGI scope.

wsproto's :class:`~wsproto.handshake.H11Handshake` validates the upgrade request and
writes the ``101`` (or the denial response); :class:`Handshake` keeps it with the
request's own head (all its headers, for the scope) and what followed the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

__all__ = ["BadHandshake", "Handshake", "parse_handshake"]


class BadHandshake(Exception):
    """The upgrade request is not a valid websocket handshake; ``response`` answers it."""

    def __init__(self, response: bytes) -> None:
        super().__init__("bad websocket handshake")
        self.response = response


@dataclass(slots=True)
class Handshake:
    """A valid upgrade request, not answered yet."""

    wsproto: H11Handshake | None
    """Dropped once the handshake is accepted (:meth:`accepted`): an open socket keeps
    no HTTP parser nor wsproto connection."""
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    subprotocols: list[str]
    leftover: bytes
    """What the client sent after the request head (frames it did not wait to send)."""

    def scope(self, *, client: tuple[str, int] | None, server: tuple[str, int] | None,
              extensions: dict[str, Any]) -> dict[str, Any]:
        """The ASGI ``websocket`` scope (as hypercorn builds it)."""
        path, _, query = self.target.partition(b"?")
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "scheme": "ws",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": client,
            "server": server,
            "subprotocols": self.subprotocols,
            "extensions": extensions,
        }

    def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The ``101 Switching Protocols`` response (no extension: deflate is declined).

        Raises:
            wsproto.utilities.LocalProtocolError: ``subprotocol`` was not offered.
        """
        response = self._wsproto().send(AcceptConnection(
            subprotocol=subprotocol, extensions=[], extra_headers=headers))
        self.wsproto = None  # accepted: nothing more is said in HTTP
        return response

    def _wsproto(self) -> H11Handshake:
        if self.wsproto is None:
            raise RuntimeError("the handshake was accepted already")
        return self.wsproto

    def deny_head(self, status: int, headers: list[tuple[bytes, bytes]], *,
                  has_body: bool) -> bytes:
        """The head of a denial response (``websocket.http.response.start``)."""
        return self._wsproto().send(RejectConnection(status_code=status, headers=headers,
                                                  has_body=has_body))

    def deny_body(self, body: bytes, *, finished: bool) -> bytes:
        """A part of the denial response's body."""
        return self._wsproto().send(RejectData(data=body, body_finished=finished))


def _bad_request(status: int = 400, headers: list[tuple[bytes, bytes]] | None = None
                 ) -> bytes:
    """An empty error response that closes the connection."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode("ascii")]
    lines += [name + b": " + value for name, value in headers or []]
    lines += [b"content-length: 0", b"connection: close", b"", b""]
    return b"\r\n".join(lines)


def parse_handshake(head: bytes, leftover: bytes) -> Handshake:
    """Parse and validate the request ``head`` (through its blank line).

    Raises:
        BadHandshake: not a websocket upgrade wsproto accepts (its 400 or 426 attached).
    """
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(head)
    try:
        request = parser.next_event()
    except h11.RemoteProtocolError as exc:
        raise BadHandshake(_bad_request(exc.error_status_hint)) from None
    if not isinstance(request, h11.Request):
        raise BadHandshake(_bad_request())
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(head)
        event = next(handshake.events(), None)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        extra = list(hint.headers) if isinstance(hint, RejectConnection) else []
        raise BadHandshake(_bad_request(status, extra)) from None
    if not isinstance(event, Request):
        raise BadHandshake(_bad_request())
    return Handshake(wsproto=handshake, target=request.target,
                     http_version=request.http_version.decode("ascii"),
                     headers=list(request.headers), subprotocols=list(event.subprotocols),
                     leftover=leftover)
