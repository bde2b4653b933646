"""A fake bot: a real HTTP server that records the events lcx POSTs and answers as scripted.

In-process (Trio tests)::

    async with open_fake_bot(secret="s3cret") as bot:
        bot.script(Reply(500), Reply(429, {"Retry-After": "1"}))   # then 200s
        ...  # point tenants.<id>.bot_events_url at bot.url
        await bot.wait_for(3)
        assert [e["seq"] for e in bot.events_for("c1")] == [1, 2, 3]

As a process: ``python -m tests.fakes.bot --port 0 [--secret S]`` prints
``fake bot listening on <url>``; ``GET /_fake/received`` lists what it got (JSON).
"""

from __future__ import annotations

import argparse
import hmac
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import trio
from quart import Response, request
from quart_trio import QuartTrio

from adapters.bot_events import sign
from lcx.api.http_server import serve_http
from lcx.ids import new_id
from lcx.store.outbox import TARGET_BOT, OutboxEvent

Mode = Literal["ok", "down", "stall"]
EVENTS_PATH = "/livechat-events"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, headers (e.g. ``Retry-After``), a body, a delay first."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    """One request the fake bot got, and the status it answered."""

    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    at: float
    """``trio.current_time()`` on arrival."""
    signature_valid: bool | None
    """Whether ``X-Lcx-Signature`` matched the body (``None``: no secret configured)."""
    status: int

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_id(self) -> str:
        """The ``Idempotency-Key`` header."""
        return self.headers.get("idempotency-key", "")


class FakeBot:
    """Records every request; answers from its script, then by :attr:`mode` (``ok``: 200,
    ``down``: 503, ``stall``: no answer until :meth:`release`)."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.mode: Mode = "ok"
        self.received: list[Received] = []
        self.base_url = ""
        self._script: deque[Reply] = deque()
        self._by_event: dict[str, deque[Reply]] = {}
        self._changed = trio.Event()
        self._released = trio.Event()

    @property
    def url(self) -> str:
        """The events URL to configure as a tenant's ``bot_events_url``."""
        return self.base_url + EVENTS_PATH

    def script(self, *replies: Reply, event_id: str | None = None) -> None:
        """Queue answers: for the next requests, or for the next requests of one event."""
        queue = self._script if event_id is None else self._by_event.setdefault(event_id,
                                                                                 deque())
        queue.extend(replies)

    def release(self) -> None:
        """Answer the stalled requests (200) and leave ``stall`` mode."""
        self.mode = "ok"
        self._released.set()
        self._released = trio.Event()

    def events_for(self, conversation_id: str) -> list[dict[str, Any]]:
        """The bodies received for one conversation, in arrival order (retries included)."""
        return [r.event for r in self.received if r.event.get("conversationId") ==
                conversation_id]

    def ids(self) -> list[str]:
        """The ``Idempotency-Key`` of every request, in arrival order."""
        return [r.event_id for r in self.received]

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Wait until ``n`` requests arrived. Raises ``trio.TooSlowError`` after ``timeout``."""
        with trio.fail_after(timeout):
            while len(self.received) < n:
                await self._changed.wait()
        return self.received

    def _next_reply(self, event_id: str) -> Reply | None:
        queue = self._by_event.get(event_id)
        if queue:
            return queue.popleft()
        return self._script.popleft() if self._script else None

    def _verify(self, headers: Mapping[str, str], body: bytes) -> bool | None:
        if not self.secret:
            return None
        given = headers.get("x-lcx-signature", "")
        return hmac.compare_digest(given, sign(body, self.secret))

    async def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Record one request and produce its answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        reply = self._next_reply(lowered.get("idempotency-key", ""))
        stalled = reply is None and self.mode == "stall"
        if reply is None:
            reply = Reply(503 if self.mode == "down" else 200)
        self.received.append(Received(path, lowered, body, trio.current_time(),
                                      self._verify(lowered, body), reply.status))
        self._changed.set()
        self._changed = trio.Event()
        if stalled:
            await self._released.wait()
        await trio.sleep(reply.delay)
        return reply

    def app(self) -> QuartTrio:
        """The quart-trio app serving this fake."""
        app = QuartTrio("fake_bot")

        @app.post("/<path:path>")
        async def receive(path: str) -> Response:
            body = await request.get_data(as_text=False)
            reply = await self.handle(request.full_path.rstrip("?"), dict(request.headers),
                                      body)
            return Response(reply.body, status=reply.status, headers=dict(reply.headers))

        @app.get("/_fake/received")
        async def received() -> Response:
            listed = [{"path": r.path, "headers": r.headers, "body": r.body.decode(),
                       "signatureValid": r.signature_valid, "status": r.status}
                      for r in self.received]
            return Response(json.dumps(listed), content_type="application/json")

        return app


@asynccontextmanager
async def open_fake_bot(secret: str = "") -> AsyncIterator[FakeBot]:
    """Serve a :class:`FakeBot` on 127.0.0.1 (a free port) for the block."""
    bot = FakeBot(secret)
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, bot.app(), host="127.0.0.1",
                                              port=0))
        bot.base_url = binding.url
        yield bot
        nursery.cancel_scope.cancel()


def outbox_event(conversation_id: str, event_no: int, *, tenant_id: str = "t1",
                 event_type: str = "MESSAGE", target: str = TARGET_BOT, url: str = "",
                 created_at: str = "2026-01-01T00:00:00.000Z",
                 event_id: str | None = None) -> OutboxEvent:
    """An outbox row carrying an API.md section 4 body (``seq`` = ``event_no``)."""
    event_id = event_id or new_id()
    body = json.dumps({"id": event_id, "type": event_type, "tenantId": tenant_id,
                       "organizationId": "o1", "subHandle": "u-1", "requestId": "r-1",
                       "conversationId": conversation_id, "seq": event_no,
                       "at": created_at, "data": {"text": "héllo"}}).encode()
    return OutboxEvent(event_id, "o1", tenant_id, conversation_id, event_no, target, url,
                       event_type, body, created_at)


async def _main(port: int, secret: str) -> None:
    bot = FakeBot(secret)
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, bot.app(), host="127.0.0.1",
                                              port=port))
        print(f"fake bot listening on {binding.url}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a fake bot that records lcx events")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default="")
    arguments = parser.parse_args()
    trio.run(_main, arguments.port, arguments.secret)
