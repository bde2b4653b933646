"""The HTTP/1.1 connection reads and writes its descriptor directly, and still yields.

Reads and writes that do not have to wait do not yield to the scheduler, but a client
whose pipelined requests keep one connection busy (an app that never waits) cannot hold
the loop: the connection yields every ``IO_BEFORE_YIELD`` reads and writes. A large
answer that does not fit the socket's buffer is written as the client reads it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving

import lcx.api.http_server
from lcx.server.http1 import IO_BEFORE_YIELD


async def test_a_connection_flooded_with_pipelined_requests_lets_other_tasks_run() -> None:
    ticks: list[int] = []
    answered: list[int] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        answered.append(len(ticks))
        await reply(send, b"ok")  # never waits for anything

    async def ticker() -> None:
        while True:
            ticks.append(1)
            await trio.lowlevel.checkpoint()

    requests = 20 * IO_BEFORE_YIELD
    async with serving(app) as binding, connected(binding) as reader, \
            trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await reader.stream.send_all(b"".join(get(f"/{n}") for n in range(requests)))
        for _ in range(requests):
            assert (await reader.response()).status == 200
        nursery.cancel_scope.cancel()
    assert len(answered) == requests
    assert answered[-1] > answered[0]  # the ticker ran while the requests were answered


async def test_an_answer_larger_than_the_socket_buffer_arrives_whole() -> None:
    body = bytes(range(256)) * 40_000  # ~10 MB: many waits for room

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        await reply(send, body)

    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/big"))
        response = await reader.response()
    assert response.body == body


async def test_a_request_head_that_stops_coming_is_cut_at_the_keep_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The keep-alive also bounds a request head that arrives in pieces and stops: the
    keeper closes the connection once the keep-alive of its wait passed, while another
    connection's requests meanwhile are answered."""
    monkeypatch.setattr(lcx.api.http_server, "KEEP_ALIVE_SECONDS", 0.3)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        await reply(send, b"ok")

    async with serving(app) as binding, connected(binding) as busy:
        started = trio.current_time()
        async with connected(binding) as slow:
            await slow.stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n")  # and no more
            while trio.current_time() - started < 0.2:
                await busy.stream.send_all(get("/"))
                assert (await busy.response()).status == 200
            with trio.fail_after(2):
                assert await slow.closed()
            assert trio.current_time() - started >= 0.3
