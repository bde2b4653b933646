"""An app may take a body that came with its head at once (``lcx.body_now``), once; a body
still on its way is left to ``receive``, which then gives it as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, reply, serving

from lcx.server.http1 import BODY_NOW


def _post(body: bytes) -> bytes:
    return b"POST /m HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


async def _read_all(receive: Receive) -> bytes:
    data = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        data += chunk
        if not message.get("more_body", False):
            return data


def _app(seen: list[tuple[bytes | None, bytes]], started: trio.Event | None = None
         ) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        now = scope["extensions"][BODY_NOW]()
        again = scope["extensions"][BODY_NOW]()
        assert again is None  # given once
        if started is not None:
            started.set()
        rest = b"" if now is not None else await _read_all(receive)
        seen.append((now, rest))
        await reply(send, b"ok")

    return app


async def test_a_body_that_came_with_its_head_is_given_at_once_and_once() -> None:
    seen: list[tuple[bytes | None, bytes]] = []
    async with serving(_app(seen)) as binding, connected(binding) as client:
        await client.stream.send_all(_post(b'{"a": 1}') + _post(b""))
        assert (await client.response()).status == 200
        assert (await client.response()).status == 200
    assert seen == [(b'{"a": 1}', b""), (b"", b"")]


async def test_a_body_still_on_its_way_is_left_to_receive() -> None:
    seen: list[tuple[bytes | None, bytes]] = []
    started = trio.Event()
    async with serving(_app(seen, started)) as binding, connected(binding) as client:
        request = _post(b'{"late": true}')
        await client.stream.send_all(request[:-5])
        await started.wait()  # the app looked while part of the body only was there
        await client.stream.send_all(request[-5:])
        assert (await client.response()).status == 200
    assert seen == [(None, b'{"late": true}')]
