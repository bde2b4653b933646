"""A response with a Content-Length leaves in one write, head and body together; a
response without one (a stream) shows its head at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from lcx.api.http_server import HttpBinding, serve_http

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _app(release: trio.Event) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        headers = [(b"content-type", b"text/plain")]
        if scope["path"] == "/sized":
            headers.append((b"content-length", b"5"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await release.wait()
        await send({"type": "http.response.body", "body": b"hello", "more_body": False})
    return app


async def _first_bytes(binding: HttpBinding, path: str) -> bytes:
    """What the server wrote within 0.3 s of the request (b"" when nothing)."""
    async with await trio.open_tcp_stream(binding.host, binding.port) as stream:
        await stream.send_all(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        with trio.move_on_after(0.3):
            return await stream.receive_some(65536)
        return b""


async def _serve(release: trio.Event, check: Callable[[HttpBinding], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(lambda task_status: serve_http(
            _app(release), host="127.0.0.1", port=0, task_status=task_status))
        await check(binding)
        nursery.cancel_scope.cancel()


def test_a_sized_head_waits_for_its_body_and_leaves_with_it() -> None:
    async def check(binding: HttpBinding) -> None:
        release = events[0]
        stream = await trio.open_tcp_stream(binding.host, binding.port)
        await stream.send_all(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.move_on_after(0.3):
            early = await stream.receive_some(65536)
            raise AssertionError(f"the head left alone: {early!r}")
        release.set()
        got = await stream.receive_some(65536)
        assert got.startswith(b"HTTP/1.1 200 ")
        assert got.endswith(b"\r\n\r\nhello")
        await stream.aclose()

    events = [trio.Event()]
    trio.run(_serve, events[0], check)


def test_an_unsized_head_leaves_at_once() -> None:
    async def check(binding: HttpBinding) -> None:
        head = await _first_bytes(binding, "/stream")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert head.endswith(b"\r\n\r\n")
        release.set()

    release = trio.Event()
    trio.run(_serve, release, check)
