"""The keep-alive timer (restarted after every response without waiting for it to run)
still closes a connection idle for longer than the keep-alive, and never one whose
request is being answered, however long that takes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import lcx.api.http_server
from lcx.api.http_server import HttpBinding, serve_http

KEEP_ALIVE = 0.3

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/slow":
        await trio.sleep(3 * KEEP_ALIVE)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def exchange(stream: trio.SocketStream, path: str) -> bytes:
    await stream.send_all(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    got = b""
    while not got.endswith(b"ok"):
        chunk = await stream.receive_some(65536)
        assert chunk, "the server closed the connection mid-request"
        got += chunk
    return got


async def run(check: Callable[[HttpBinding], Awaitable[None]]) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(lambda task_status: serve_http(
                app, host="127.0.0.1", port=0, task_status=task_status))
            await check(binding)
            nursery.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def short_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lcx.api.http_server, "KEEP_ALIVE_SECONDS", KEEP_ALIVE)


async def test_an_idle_connection_is_closed_after_the_keep_alive() -> None:
    async def check(binding: HttpBinding) -> None:
        async with await trio.open_tcp_stream(binding.host, binding.port) as stream:
            for _ in range(3):  # each response restarts the timer
                assert (await exchange(stream, "/")).startswith(b"HTTP/1.1 200 ")
                await trio.sleep(KEEP_ALIVE / 3)
            with trio.fail_after(5 * KEEP_ALIVE):
                assert await stream.receive_some(65536) == b""  # closed by the server

    await run(check)


async def test_a_request_longer_than_the_keep_alive_is_answered() -> None:
    async def check(binding: HttpBinding) -> None:
        async with await trio.open_tcp_stream(binding.host, binding.port) as stream:
            assert (await exchange(stream, "/")).startswith(b"HTTP/1.1 200 ")
            assert (await exchange(stream, "/slow")).startswith(b"HTTP/1.1 200 ")

    await run(check)
