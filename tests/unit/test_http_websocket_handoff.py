"""A websocket upgrade is handed over with every byte read of it: as the first request
of a connection (even split across reads), or pipelined behind an HTTP request that is
answered first."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from support.raw_http import Receive, Send, answer_lifespan, connected, get, reply, serving
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """HTTP: answers "http"; websocket: echoes one message in upper case, then closes."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    if scope["type"] == "http":
        await reply(send, b"http")
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": message["text"].upper()})
    await send({"type": "websocket.close", "code": 1000})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def talk(reader: Any, client: WSConnection, before: bytes, split: int | None) -> str:
    """Upgrade (after ``before``), send "hello", return the echo."""
    first = before + client.send(Request(host="x", target="/ws"))
    if split is not None:  # the head arrives in two reads
        await reader.stream.send_all(first[:split])
        await trio.sleep(0.01)  # (only so that the two parts are likely two reads)
        first = first[split:]
    await reader.stream.send_all(first)
    if before:
        assert (await reader.response()).body == b"http"
    if reader.buffer:  # (wsproto takes b"" for the connection's end)
        client.receive_data(reader.buffer)
    echoed = ""
    while True:
        for event in client.events():
            if isinstance(event, AcceptConnection):
                await reader.stream.send_all(client.send(TextMessage(data="hello")))
            elif isinstance(event, Message):
                echoed += str(event.data)
            elif isinstance(event, CloseConnection):
                return echoed
        client.receive_data(await reader.stream.receive_some(65536))


@pytest.mark.parametrize(("before", "split"), [
    (b"", None), (b"", 20), (get("/plain"), None)])
async def test_the_upgrade_reaches_the_websocket_with_its_bytes(
        before: bytes, split: int | None) -> None:
    async with serving(app) as binding, connected(binding) as reader:
        assert await talk(reader, WSConnection(ConnectionType.CLIENT), before, split) == "HELLO"
