"""The benches' bot client for the hot endpoints: lcx's own keep-alive HTTP/1.1 pool.

The driver shares the machine with the server it measures, and httpx cost it more CPU per
request than the server spent serving it (a relay pair, a new request); this client
writes one prepared head per request on ``adapters.http1``'s pool instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio
from benchkit import bot_token

from adapters.http1 import Http1Pool, Origin


class Poster:
    """``POST <path>`` as the bench bot to one instance, on a shared :class:`Http1Pool`."""

    def __init__(self, base_url: str, pool: Http1Pool, path: str = "/messages") -> None:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._origin = Origin("http", host, port)
        self._pool = pool
        self._head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {bot_token()}\r\n"
                      "Content-Type: application/json\r\nContent-Length: ").encode()

    async def post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST ``body``; the status and the start of the answer's body."""
        data = msgspec.json.encode(body)
        with trio.fail_after(30):
            response = await self._pool.request(
                self._origin, b"%s%d\r\n\r\n%s" % (self._head, len(data), data), keep=300)
        return response.status, response.body_start
