"""Connections: requests one after another on one connection, pipelined requests answered
in order, ``Connection: close`` and HTTP/1.0 closing after their answer."""

from __future__ import annotations

from typing import Any

import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving


async def echo_path(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Answers with the request's path, slowly for /slow (so that answers could race)."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    if scope["path"] == "/slow":
        await trio.sleep(0.05)
    await reply(send, scope["path"].encode())


async def test_one_connection_carries_requests_one_after_another() -> None:
    async with serving(echo_path) as binding, connected(binding) as reader:
        for path in ("/a", "/b", "/c"):
            await reader.stream.send_all(get(path))
            response = await reader.response()
            assert (response.status, response.body) == (200, path.encode())
            assert "connection" not in response.headers


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving(echo_path) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/slow") + get("/fast") + get("/slow") + get("/z"))
        bodies = [(await reader.response()).body for _ in range(4)]
    assert bodies == [b"/slow", b"/fast", b"/slow", b"/z"]


async def test_connection_close_is_answered_then_closed() -> None:
    async with serving(echo_path) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/a", "Connection: close"))
        response = await reader.response()
        assert response.body == b"/a"
        assert response.headers["connection"] == "close"
        assert await reader.closed()


async def test_http_1_0_is_answered_then_closed() -> None:
    async with serving(echo_path) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/old", version="1.0"))
        response = await reader.response()
        assert response.body == b"/old"
        assert response.headers["connection"] == "close"
        assert await reader.closed()


async def test_the_scope_is_what_the_request_said() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        seen.append(scope)
        await reply(send, b"")

    async with serving(app) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/a%20b/c?x=1&y=%20", "X-Thing:  v  "))
        await reader.response()
    [scope] = seen
    assert (scope["method"], scope["path"], scope["raw_path"], scope["query_string"]) == (
        "GET", "/a b/c", b"/a%20b/c", b"x=1&y=%20")
    assert (scope["http_version"], scope["scheme"], scope["root_path"]) == ("1.1", "http", "")
    assert scope["headers"] == [(b"host", b"x"), (b"x-thing", b"v")]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", binding.port)
