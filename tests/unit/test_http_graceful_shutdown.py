"""Shutting down: idle keep-alive connections are closed at once, a request being answered
finishes (its answer says the connection closes), one that outlasts the graceful
timeout is cancelled; serve_http returns without waiting for anything else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio.testing
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply

from lcx.api.http_server import HttpBinding, serve_http


class Gates:
    """What the app waits on and signals."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()
        self.cancelled = trio.Event()

    async def app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["path"] == "/wait":
            self.entered.set()
            try:
                await self.release.wait()
            except trio.Cancelled:
                self.cancelled.set()
                raise
        await reply(send, scope["path"].encode())


async def accepts(binding: HttpBinding) -> bool:
    """Whether the server's port takes a new connection."""
    try:
        stream = await trio.open_tcp_stream(binding.host, binding.port)
    except OSError:
        return False
    await stream.aclose()
    return True


@asynccontextmanager
async def server(gates: Gates, stop: trio.Event, graceful: float
                 ) -> AsyncIterator[HttpBinding]:
    """serve_http with a shutdown trigger; leaving waits for it to return by itself."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            yield await nursery.start(partial(
                serve_http, gates.app, host="127.0.0.1", port=0,
                shutdown_trigger=stop.wait, graceful_timeout=graceful))


async def test_idle_connections_are_closed_at_once() -> None:
    gates, stop = Gates(), trio.Event()
    with trio.fail_after(5):  # well under graceful_timeout
        async with server(gates, stop, graceful=30) as binding, connected(binding) as reader:
            await reader.stream.send_all(get("/a"))
            assert (await reader.response()).body == b"/a"
            stop.set()
            assert await reader.closed()


async def test_a_request_being_answered_finishes_and_its_connection_closes() -> None:
    gates, stop = Gates(), trio.Event()
    with trio.fail_after(5):
        async with server(gates, stop, graceful=30) as binding, connected(binding) as reader:
            await reader.stream.send_all(get("/wait"))
            await gates.entered.wait()
            stop.set()
            await trio.testing.wait_all_tasks_blocked()  # the server is shutting down
            assert not await accepts(binding)
            gates.release.set()
            response = await reader.response()
            assert (response.body, response.headers["connection"]) == (b"/wait", "close")
            assert await reader.closed()
    assert not gates.cancelled.is_set()


async def test_a_request_past_the_graceful_timeout_is_cancelled() -> None:
    gates, stop = Gates(), trio.Event()
    with trio.fail_after(5):
        async with server(gates, stop, graceful=0.2) as binding, connected(binding) as reader:
            await reader.stream.send_all(get("/wait"))
            await gates.entered.wait()
            stop.set()
            assert await reader.closed()
    assert gates.cancelled.is_set()


async def test_no_connection_is_accepted_after_shutdown() -> None:
    gates, stop = Gates(), trio.Event()
    async with server(gates, stop, graceful=30) as binding:
        stop.set()
    assert not await accepts(binding)
