"""A real websocket client speaking the agent protocol (API.md section 5), for tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

Frame = dict[str, Any]


class AgentClient:
    """One agent connection: every received frame is kept in ``frames``, in order."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self._arrived = trio.Event()
        self._refs = itertools.count(1)
        self.closed_code: int | None = None

    async def _read(self) -> None:
        try:
            while True:
                self.frames.append(json.loads(await self.ws.get_message()))
                self._arrived.set()
                self._arrived = trio.Event()
        except ConnectionClosed as exc:
            self.closed_code = exc.reason.code
            self._arrived.set()

    async def send(self, frame: Frame) -> None:
        """Send one frame as JSON text."""
        await self.ws.send_message(json.dumps(frame))

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 5.0,
                       *, start: int = 0) -> Frame:
        """The first frame (from index ``start``) matching ``predicate``, waiting for it."""
        with trio.fail_after(timeout):
            while True:
                for frame in self.frames[start:]:
                    if predicate(frame):
                        return frame
                if self.closed_code is not None:
                    raise AssertionError(f"socket closed ({self.closed_code}) while waiting")
                await self._arrived.wait()

    async def next_frame(self, index: int) -> Frame | None:
        """The frame at ``index``, waiting for it; ``None`` once the socket closed first."""
        while len(self.frames) <= index:
            if self.closed_code is not None:
                return None
            await self._arrived.wait()
        return self.frames[index]

    async def call(self, event: str | None, data: Any, *, kind: str = "event",
                   timeout: float = 5.0) -> Frame:
        """Send a frame with a fresh ref and return its ``ack`` or ``ERROR`` frame."""
        ref = f"r{next(self._refs)}"
        frame: Frame = {"type": kind, "ref": ref, "data": data}
        if event is not None:
            frame["event"] = event
        await self.send(frame)
        return await self.wait_for(
            lambda f: f.get("ref") == ref and (f["type"] == "ack" or f.get("event") == "ERROR"),
            timeout)

    async def notification(self, kind: str, timeout: float = 5.0, **match: Any) -> Frame:
        """The first NOTIFICATION of ``kind`` whose data has the given values."""
        return await self.wait_for(
            lambda f: f.get("event") == "NOTIFICATION" and f["data"].get("kind") == kind
            and all(f["data"].get(k) == v for k, v in match.items()), timeout)

    def messages(self, conversation_id: str) -> list[Frame]:
        """The ``message`` frames received for a conversation, in arrival order."""
        return [f["data"] for f in self.frames
                if f["type"] == "message" and f["data"]["conversationId"] == conversation_id]


@asynccontextmanager
async def ws_client(url: str, **options: Any) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client connection whose TCP stream is closed on exit (trio-websocket
    0.12 leaves it open when the server closed first: a ``ResourceWarning`` later)."""
    async with open_websocket_url(url, **options) as ws:
        try:
            yield ws
        finally:
            with trio.CancelScope(shield=True):
                await ws._stream.aclose()


@asynccontextmanager
async def agent_connection(base_url: str, token: str) -> AsyncIterator[AgentClient]:
    """Connect an agent to ``/ws`` (token in the query) and wait for AUTHORIZATION_GRANTED.

    Whatever the block raises propagates unchanged.
    """
    url = base_url.replace("http://", "ws://") + f"/ws?token={token}"
    async with open_websocket_url(url) as ws:
        try:
            async with trio.open_nursery() as nursery:
                client = AgentClient(ws)
                nursery.start_soon(client._read)
                await client.wait_for(
                    lambda f: f.get("event") in ("AUTHORIZATION_GRANTED", "ERROR"))
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            # trio-websocket 0.12 leaves its TCP stream open when the server closed first
            with trio.CancelScope(shield=True):
                await ws._stream.aclose()
