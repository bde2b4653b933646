"""What is not HTTP/1.1 gets a bare 400 and the connection closed; a head over the
server's limit gets a bare 431 without the app seeing it; what was well-formed before
the bad bytes is still answered."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import pytest
import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving

from lcx.api.http_server import MAX_HEAD_BYTES


def counting_app(paths: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        paths.append(scope["path"])
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # as Quart: nobody to answer
            if not message["more_body"]:
                break
        await reply(send, b"ok")
    return app


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n",  # HTTP/1.1 requires Host (as h11 did)
])
async def test_a_malformed_request_gets_400_and_the_connection_closed(garbage: bytes) -> None:
    paths: list[str] = []
    async with serving(counting_app(paths)) as binding, connected(binding) as reader:
        await reader.stream.send_all(garbage)
        response = await reader.response()
        assert (response.status, response.headers["connection"]) == (400, "close")
        assert await reader.closed()
    assert paths == []


async def test_a_bad_chunked_body_cuts_the_request_short_with_400() -> None:
    paths: list[str] = []
    async with serving(counting_app(paths)) as binding, connected(binding) as reader:
        await reader.stream.send_all(b"POST /up HTTP/1.1\r\nHost: x\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
        assert (await reader.response()).status == 400
        assert await reader.closed()
    assert paths == ["/up"]


async def test_requests_before_bad_bytes_are_answered_first() -> None:
    paths: list[str] = []
    async with serving(counting_app(paths)) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/first") + b"BROKEN\x01\r\n\r\n")
        assert (await reader.response()).status == 200
        assert (await reader.response()).status == 400
        assert await reader.closed()
    assert paths == ["/first"]


async def test_a_head_over_the_limit_gets_431_without_the_app() -> None:
    paths: list[str] = []
    async with serving(counting_app(paths)) as binding, connected(binding) as reader:
        filler = "".join(f"X-Filler-{n}: {'v' * 1000}\r\n" for n in range(MAX_HEAD_BYTES // 1000))
        with suppress(trio.BrokenResourceError):  # closed before it took everything
            await reader.stream.send_all(get("/", filler.rstrip("\r\n")))
        response = await reader.response()
        assert (response.status, response.headers["connection"]) == (431, "close")
    assert paths == []


async def test_a_large_head_under_the_limit_reaches_the_app() -> None:
    paths: list[str] = []
    async with serving(counting_app(paths)) as binding, connected(binding) as reader:
        filler = "\r\n".join(f"X-Filler-{n}: {'v' * 1000}" for n in range(100))
        await reader.stream.send_all(get("/big", filler))
        assert (await reader.response()).status == 200
    assert paths == ["/big"]
