"""Responses on the wire: a stream without a length is chunked (or closes, to HTTP/1.0),
HEAD answers carry no body, every answer has a ``date`` and no ``server``, an app that
fails or does not answer gets a bare 500, and the app's lifespan runs around serving."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest
import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving

from lcx.api.http_server import serve_http


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/fail":
        raise RuntimeError("the app broke")
    elif path == "/silent":
        return
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await reply(send, b"sized body", headers=[(b"x-app", b"yes")])


async def test_a_stream_without_length_is_chunked() -> None:
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/stream"))
        response = await reader.response()
        assert response.chunked
        assert response.body == b"one two three"
        await reader.stream.send_all(get("/sized"))  # and the connection is kept
        assert (await reader.response()).body == b"sized body"


async def test_a_stream_to_http_1_0_ends_with_the_connection() -> None:
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/stream", version="1.0"))
        response = await reader.response()
    assert not response.chunked
    assert response.body == b"one two three"
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/sized", "/stream"])
async def test_a_head_answer_has_the_get_headers_and_no_body(path: str) -> None:
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get(path, method="HEAD") + get("/sized"))
        head = await reader.response(head_only=True)
        after = await reader.response()  # what follows is the next answer, not a body
    get_headers = {"/sized": "content-length", "/stream": "transfer-encoding"}
    assert get_headers[path] in head.headers
    assert after.body == b"sized body"


async def test_a_204_has_no_body_and_no_framing() -> None:
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/empty") + get("/sized"))
        empty = await reader.response()
        assert empty.status == 204
        assert "transfer-encoding" not in empty.headers
        assert (await reader.response()).body == b"sized body"


async def test_answers_have_a_date_and_no_server_header() -> None:
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/sized"))
        response = await reader.response()
    assert response.headers["x-app"] == "yes"
    assert response.headers["date"].endswith(" GMT")
    assert "server" not in response.headers


@pytest.mark.parametrize("path", ["/fail", "/silent"])
async def test_an_app_that_fails_or_does_not_answer_gets_a_bare_500(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="lcx.server")
    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get(path))
        response = await reader.response()
        assert (response.status, response.body) == (500, b"")
        assert await reader.closed()
    assert ("the app broke" in caplog.text) == (path == "/fail")


async def test_the_lifespan_runs_before_serving_and_after() -> None:
    events: list[str] = []

    async def lifespan_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        events.append("request")
        await reply(send, b"")

    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:  # ends when serve_http returns
            binding = await nursery.start(partial(serve_http, lifespan_app, host="127.0.0.1",
                                                  port=0, shutdown_trigger=stop.wait))
            assert events == ["lifespan.startup"]
            async with connected(binding) as reader:
                await reader.stream.send_all(get("/"))
                await reader.response()
            stop.set()
    assert events == ["lifespan.startup", "request", "lifespan.shutdown"]


async def test_an_app_without_lifespan_is_served() -> None:
    async def plain(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError("only http")
        await reply(send, b"plain")

    async with serving(plain) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/"))
        assert (await reader.response()).body == b"plain"
