"""The small HTTP/1.1 client of the bot client, against a raw socket server that answers
with scripted bytes: body framings, keep-alive reuse, stale connections, bad answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

from adapters.http1 import Origin, ProtocolFailure, open_pool

REQUEST = b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
CLOSE = b"<close>"
"""An answer starting with this is sent without it, then the connection is closed."""
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Script:
    """What the server answers: one function per request it reads, per connection."""

    answer: Callable[[int, int], bytes | None]
    """(connection number, request number on it) -> bytes to send (closing after them if
    they start with :data:`CLOSE`); None: close without an answer."""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _serve_one(script: Script, stream: trio.SocketStream) -> None:
    number = script.connections
    script.connections += 1
    buffer = b""
    on_connection = 0
    async with stream:
        while True:
            while len(buffer) < len(REQUEST):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            script.requests.append(buffer[:len(REQUEST)])
            buffer = buffer[len(REQUEST):]
            answer = script.answer(number, on_connection)
            on_connection += 1
            if answer is None:
                return
            if answer.startswith(CLOSE):
                await stream.send_all(answer[len(CLOSE):])
                return
            await stream.send_all(answer)


@asynccontextmanager
async def serving(answer: Callable[[int, int], bytes | None]
                  ) -> AsyncIterator[tuple[Script, Origin]]:
    """A server on 127.0.0.1 answering per ``answer``."""
    script = Script(answer)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(
            trio.serve_tcp, partial(_serve_one, script), 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        yield script, Origin("http", "127.0.0.1", port)
        nursery.cancel_scope.cancel()


async def test_keep_alive_reuses_one_connection() -> None:
    """Answers with a Content-Length keep the connection for the next request."""
    body = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
    async with serving(lambda c, r: body) as (script, origin), open_pool() as pool:
        answers = [await pool.request(origin, REQUEST) for _ in range(3)]
    assert [a.status for a in answers] == [201] * 3
    assert answers[0].body_start == b"hello"
    assert ("x-a", "b") in answers[0].headers
    assert script.connections == 1
    assert pool.opened == 1


async def test_headers_keep_their_order_case_and_values() -> None:
    """The headers of an answer (parsed on demand) are every line in order, names in
    lower case, values stripped, the same answer after answer."""
    body = (b"HTTP/1.1 503 Busy\r\nRetry-After:  7 \r\nX-Two: a:b\r\n"
            b"CONTENT-LENGTH: 0\r\nx-two: c\r\n\r\n")
    async with serving(lambda c, r: body) as (script, origin), open_pool() as pool:
        answers = [await pool.request(origin, REQUEST) for _ in range(2)]
    assert [a.headers for a in answers] == [(("retry-after", "7"), ("x-two", "a:b"),
                                              ("content-length", "0"), ("x-two", "c"))] * 2
    assert script.connections == 1


async def test_chunked_body_is_read_and_the_connection_kept() -> None:
    """A chunked answer (with an extension and a trailer) is read to its end; only the
    first ``keep`` bytes are returned."""
    body = (b"HTTP/1.1 422 Unprocessable\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
    async with serving(lambda c, r: body) as (script, origin), open_pool() as pool:
        first = await pool.request(origin, REQUEST, keep=8)
        second = await pool.request(origin, REQUEST)
    assert first.body_start == b"hello wo"
    assert second.body_start == b"hello world"
    assert script.connections == 1


async def test_interim_answers_are_skipped() -> None:
    """A 100 Continue before the answer is not the answer."""
    body = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    async with serving(lambda c, r: body) as (_, origin), open_pool() as pool:
        assert (await pool.request(origin, REQUEST)).status == 200


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
])
async def test_connection_close_and_http_1_0_are_not_reused(answer: bytes) -> None:
    """An answer that closes its connection (or HTTP/1.0) means a new one next time."""
    async with serving(lambda c, r: answer) as (script, origin), open_pool() as pool:
        for _ in range(2):
            assert (await pool.request(origin, REQUEST)).status == 200
    assert script.connections == 2


async def test_body_until_close_is_read() -> None:
    """Without a length the body ends with the connection, which is then not reused."""
    answer = CLOSE + b"HTTP/1.1 500 Oops\r\n\r\nbroken"
    async with serving(lambda c, r: answer) as (script, origin), open_pool() as pool:
        with trio.fail_after(5):
            got = await pool.request(origin, REQUEST)
            again = await pool.request(origin, REQUEST)
    assert got.status == again.status == 500
    assert got.body_start == b"broken"
    assert script.connections == 2


async def test_a_connection_closed_while_idle_is_replaced_once() -> None:
    """The server closed the idle connection: the request goes out again on a new one."""
    def answer(connection: int, request: int) -> bytes | None:
        return OK if request == 0 else None

    async with serving(answer) as (script, origin), open_pool() as pool:
        for _ in range(3):
            assert (await pool.request(origin, REQUEST)).status == 200
    assert script.connections == 3
    assert len(script.requests) == 5  # requests 2 and 3 were each sent twice


async def test_a_fresh_connection_closed_without_answer_fails() -> None:
    """No answer on a new connection is a failure, not a loop."""
    async with serving(lambda c, r: None) as (script, origin), open_pool() as pool:
        with pytest.raises(ProtocolFailure):
            await pool.request(origin, REQUEST)
    assert script.connections == 1


@pytest.mark.parametrize("answer", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
async def test_malformed_answers_are_protocol_failures(answer: bytes) -> None:
    """What is not HTTP/1 is refused, and the connection is not reused."""
    async with serving(lambda c, r: answer) as (script, origin), open_pool() as pool:
        for _ in range(2):
            with pytest.raises(ProtocolFailure):
                await pool.request(origin, REQUEST)
    assert script.connections == 2


async def test_a_cancelled_request_does_not_leave_its_connection_for_reuse() -> None:
    """A request cut off by its caller's deadline closes its connection."""
    def answer(connection: int, request: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf" if connection == 0 else OK

    async with serving(answer) as (script, origin), open_pool() as pool:
        with trio.move_on_after(0.2):
            await pool.request(origin, REQUEST)
        assert (await pool.request(origin, REQUEST)).status == 200
    assert script.connections == 2


async def test_idle_connections_expire_after_keepalive() -> None:
    """A connection idle longer than ``keepalive`` is not used again."""
    async with serving(lambda c, r: OK) as (script, origin), \
            open_pool(keepalive=0.05) as pool:
        await pool.request(origin, REQUEST)
        await trio.sleep(0.1)
        await pool.request(origin, REQUEST)
    assert script.connections == 2
