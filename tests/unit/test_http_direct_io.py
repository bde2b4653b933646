"""The HTTP/1.1 connection reads and writes its descriptor directly, and still yields.

Reads and writes that do not have to wait do not yield to the scheduler, but a client
whose pipelined requests keep one connection busy (an app that never waits) cannot hold
the loop: the connection yields every ``IO_BEFORE_YIELD`` reads and writes. A large
answer that does not fit the socket's buffer is written as the client reads it.
"""

from __future__ import annotations

from typing import Any

import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving

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
