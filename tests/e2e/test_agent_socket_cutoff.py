"""A socket the server cuts off (4008, slow consumer) gives its TCP connection back even
when the client had sent frames nobody read: the process's open file descriptors return
to where they were. A client that reads promptly is never cut
off, however fast it sends pings."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from e2e_env import Env
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

CUT_OFFS = 6
MAX_QUEUED_FRAMES = 20


@pytest.fixture
def env_options() -> dict[str, Any]:
    return {"max_queued_frames": MAX_QUEUED_FRAMES}


def _open_fds(env: Env) -> int:
    assert env.lcx.process is not None
    return len(os.listdir(f"/proc/{env.lcx.process.pid}/fd"))


async def _settled_fds(env: Env, at_most: int, timeout: float = 15.0) -> int:
    """The server's fd count once it is at most ``at_most``, or the last one seen."""
    count = _open_fds(env)
    with trio.move_on_after(timeout):
        while count > at_most:
            await trio.sleep(0.1)
            count = _open_fds(env)
    return count


@asynccontextmanager
async def _connect(env: Env, resource: str) -> AsyncIterator[WebSocketConnection]:
    """A websocket over a socket with a tiny receive buffer: once the client stops
    reading, the server's writes back up almost at once. Closed on exit."""
    host, port = env.url.removeprefix("http://").split(":")
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = trio.SocketStream(sock)
    try:
        await sock.connect((host, int(port)))
        async with trio.open_nursery() as nursery:
            yield await wrap_client_stream(nursery, stream, host, resource)
            nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def _read_until_closed(ws: WebSocketConnection) -> int | None:
    with trio.fail_after(30):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            return closed.reason.code


async def _slow_consumer_cut(env: Env, index: int) -> int | None:
    """An agent accepts a chat, stops reading, sends pings the server cannot answer,
    and gets enough big messages to be cut off; then it reads to the close."""
    agent = f"slow{index}"
    created = await env.create_request(f"u-cut-{index}")
    cuts_before = await _cut_count(env)
    async with _connect(env, f"/ws?token={env.agent_token(agent)}") as ws:
        await ws.send_message(json.dumps({"type": "event", "event": "REQUEST_ACCEPT",
                                          "ref": "a", "data": {"requestId": created["id"]}}))
        while json.loads(await ws.get_message()).get("ref") != "a":
            pass
        text = "x" * 60_000
        for n in range(400):
            posted = await env.post_message(f"u-cut-{index}", f"m{index}-{n}", text)
            assert posted.status_code == 202, posted.text
            if n % 10 == 9:  # pings the server takes no more of once its queue is half full
                for ping in range(30):
                    await ws.send_message(json.dumps({"type": "ping", "ref": f"{n}-{ping}"}))
                if await _cut_count(env) > cuts_before:
                    break
        return await _read_until_closed(ws)


async def _cut_count(env: Env) -> int:
    metrics = (await env.http.get("/metrics")).text
    line = next(line for line in metrics.splitlines()
                if line.startswith("lcx_ws_slow_consumers_cut"))
    return int(float(line.split()[-1]))


async def test_slow_consumer_cut_offs_release_their_connections(env: Env) -> None:
    """After each 4008 cut-off the connection closes; the fd count returns to baseline."""
    baseline = _open_fds(env)
    for index in range(CUT_OFFS):
        assert await _slow_consumer_cut(env, index) == 4008
    assert await _settled_fds(env, baseline + 2) <= baseline + 2


async def test_a_prompt_reader_sending_a_ping_burst_is_not_cut(env: Env) -> None:
    """3,000 pings sent back to back by a client that reads all the while: every pong
    arrives and the socket stays open (the reader waits for the writer instead)."""
    pings = 3_000
    async with _connect(env, f"/ws?token={env.agent_token('quick')}") as ws:
        pongs: list[str] = []

        async def read() -> None:
            while len(pongs) < pings:
                frame = json.loads(await ws.get_message())
                if frame["type"] == "pong":
                    pongs.append(frame["ref"])

        async def burst() -> None:
            for n in range(pings):
                await ws.send_message(json.dumps({"type": "ping", "ref": f"p{n}"}))

        with trio.fail_after(60):
            async with trio.open_nursery() as inner:
                inner.start_soon(read)
                inner.start_soon(burst)
        assert pongs == [f"p{n}" for n in range(pings)]
        assert not ws.closed
    assert await _cut_count(env) == 0
