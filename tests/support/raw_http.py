"""Raw-socket HTTP/1.1 for tests of the server: serve a bare ASGI app, read responses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from lcx.api.http_server import HttpBinding, serve_http

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Complete the lifespan startup and shutdown (for bare test apps)."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def reply(send: Send, body: bytes, status: int = 200,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with ``body`` and its Content-Length."""
    await send({"type": "http.response.start", "status": status, "headers": [
        *(headers or []), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asynccontextmanager
async def serving(app: Callable[..., Awaitable[None]], **options: Any
                  ) -> AsyncIterator[HttpBinding]:
    """Serve ``app`` on 127.0.0.1 with a free port; cancelled on leaving."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binding: HttpBinding = await nursery.start(
                lambda task_status: serve_http(app, host="127.0.0.1", port=0,
                                               task_status=task_status, **options))
            yield binding
            nursery.cancel_scope.cancel()


@dataclass
class Response:
    """One response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes
    chunked: bool
    raw_head: bytes


@dataclass
class Reader:
    """Reads responses one after another off a stream (keeps what it read ahead)."""

    stream: trio.SocketStream
    buffer: bytes = field(default=b"")

    async def _more(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._more()
        found, self.buffer = self.buffer.split(marker, 1)
        return found

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._more()
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found

    async def response(self, *, head_only: bool = False) -> Response:
        """The next response (its head only, for a HEAD request or a 1xx)."""
        raw_head = await self._until(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        chunked = headers.get("transfer-encoding") == "chunked"
        body = b""
        if head_only or status < 200 or status in (204, 304):
            pass
        elif chunked:
            while size := int(await self._until(b"\r\n"), 16):
                body += await self._exactly(size)
                await self._exactly(2)
            await self._exactly(2)
        elif "content-length" in headers:
            body = await self._exactly(int(headers["content-length"]))
        else:  # delimited by the close
            while True:
                try:
                    await self._more()
                except EOFError:
                    break
            body, self.buffer = self.buffer, b""
        return Response(status, headers, body, chunked, raw_head)

    async def closed(self) -> bool:
        """Whether the server closed the connection (after what was read), within 5 s."""
        with trio.fail_after(5):
            try:
                chunk = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: closed with our bytes unread
                return True
        self.buffer += chunk
        return chunk == b""


@asynccontextmanager
async def connected(binding: HttpBinding) -> AsyncIterator[Reader]:
    """A connection to the server with its response reader."""
    stream = await trio.open_tcp_stream(binding.host, binding.port)
    async with stream:
        yield Reader(stream)


def get(path: str = "/", *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    """The bytes of a request without a body."""
    lines = [f"{method} {path} HTTP/{version}", "Host: x", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
