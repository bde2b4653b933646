"""Request bodies reach the app through ``receive``: sized or chunked, whole or in pieces
as they arrive, after a ``100 Continue`` when asked; a body the app leaves unread is
skipped so that the next request on the connection is read right."""

from __future__ import annotations

from typing import Any

import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving


def body_app(pieces: list[list[bytes]], first: trio.Event | None = None) -> Any:
    """Echoes the body it read (each request's pieces are kept, ``first`` is set on the
    first piece); /skip reads nothing."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["path"] == "/skip":
            await reply(send, b"skipped")
            return
        got: list[bytes] = []
        pieces.append(got)
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            got.append(message["body"])
            if first is not None:
                first.set()
            if not message["more_body"]:
                break
        await reply(send, b"".join(got))
    return app


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + "".join(line + "\r\n" for line in extra) + "\r\n").encode() + body


async def test_a_sized_body_that_arrived_with_its_head_comes_in_one_piece() -> None:
    pieces: list[list[bytes]] = []
    async with serving(body_app(pieces)) as binding, connected(binding) as reader:
        await reader.stream.send_all(post("/", b'{"a": 1}'))
        assert (await reader.response()).body == b'{"a": 1}'
    assert pieces == [[b'{"a": 1}']]


async def test_a_chunked_body_is_streamed_as_it_arrives() -> None:
    pieces: list[list[bytes]] = []
    first = trio.Event()
    async with serving(body_app(pieces, first)) as binding, connected(binding) as reader:
        await reader.stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await first.wait()  # the first piece reached the app before the rest was sent
        await reader.stream.send_all(b"6\r\n world\r\n0\r\n\r\n")
        assert (await reader.response()).body == b"hello world"
    assert pieces[0][0] == b"hello"
    assert b"".join(pieces[0]) == b"hello world"


async def test_a_sized_body_sent_in_parts_is_given_in_parts() -> None:
    pieces: list[list[bytes]] = []
    first = trio.Event()
    async with serving(body_app(pieces, first)) as binding, connected(binding) as reader:
        request = post("/", b"0123456789")
        await reader.stream.send_all(request[:-6])
        await first.wait()
        await reader.stream.send_all(request[-6:])
        assert (await reader.response()).body == b"0123456789"
    assert pieces[0][0] == b"0123"


async def test_expect_100_continue_gets_its_interim_answer_before_the_body() -> None:
    pieces: list[list[bytes]] = []
    async with serving(body_app(pieces)) as binding, connected(binding) as reader:
        request = post("/", b"payload", "Expect: 100-continue")
        head, body = request.split(b"\r\n\r\n", 1)
        await reader.stream.send_all(head + b"\r\n\r\n")
        interim = await reader.response(head_only=True)
        assert interim.status == 100
        await reader.stream.send_all(body)
        assert (await reader.response()).body == b"payload"


async def test_an_unread_body_is_skipped_and_the_next_request_served() -> None:
    pieces: list[list[bytes]] = []
    async with serving(body_app(pieces)) as binding, connected(binding) as reader:
        await reader.stream.send_all(post("/skip", b"x" * 200_000) + post("/", b"next"))
        assert (await reader.response()).body == b"skipped"
        assert (await reader.response()).body == b"next"
    assert pieces == [[b"next"]]


async def test_a_request_without_body_gives_one_empty_piece() -> None:
    pieces: list[list[bytes]] = []
    async with serving(body_app(pieces)) as binding, connected(binding) as reader:
        await reader.stream.send_all(get("/"))
        assert (await reader.response()).body == b""
    assert pieces == [[b""]]
