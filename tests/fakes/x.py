"""A fake X platform: the v2 direct-message API of one business account and its Account
Activity webhook emitter, served for real on loopback.

DM API: ``POST /2/dm_conversations/with/{participant_id}/messages`` with ``Authorization:
Bearer <user token>`` (else 401), ``{"text"}`` ≤ 10,000 characters (else 400); answers
201 ``{"data": {"dm_conversation_id", "dm_event_id"}}``. Per-user limit: ``limit``
DMs per window, then 429 ``Too Many Requests`` with ``x-rate-limit-limit``,
``x-rate-limit-remaining: 0`` and ``x-rate-limit-reset`` (epoch seconds); scripted 503
outages. Errors are X's problem JSON ``{"title", "detail", "type", "status"}``.

Webhooks: activity bodies signed as X signs them (``x-twitter-webhooks-signature:
sha256=<base64 HMAC-SHA256 of the raw body>`` with the consumer secret); the CRC check
is a ``GET ?crc_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http

Json = dict[str, Any]


def sign(data: bytes, consumer_secret: str) -> str:
    digest = hmac.new(consumer_secret.encode(), data, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def problem(status: int, title: str, detail: str,
            headers: dict[str, str] | None = None) -> Response:
    body = {"title": title, "detail": detail, "status": status,
            "type": "about:blank"}
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers or {})


@dataclass
class FakeX:
    """One business account (``user_id``) and its app."""

    user_id: str = "3001"
    consumer_secret: str = "x-consumer-secret"
    access_token: str = "x-user-token"
    base_url: str = ""
    webhook_url: str = ""
    limit: int = 1000
    """DMs allowed before 429 (the window resets when :meth:`reset_limit` is called)."""
    reset_in: int = 1
    """Seconds until the limit resets, as told in ``x-rate-limit-reset``."""
    sent: list[Json] = field(default_factory=list)
    _used: int = 0
    _reset_at: float = 0.0
    _failures: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _http: httpx.AsyncClient | None = None

    def config(self) -> str:
        return f"""
[tenants.x]
api_url = "{self.base_url}"
user_id = "{self.user_id}"
consumer_secret = "{self.consumer_secret}"
access_token = "{self.access_token}"
"""

    def fail_next(self, status: int, times: int = 1) -> None:
        self._failures.extend([status] * times)

    def texts(self, participant: str) -> list[str]:
        return [m["text"] for m in self.sent if m["participant"] == participant]

    def dm(self, sender: str, text: str, *, event_id: str | None = None,
           media_url: str | None = None) -> Json:
        data: Json = {"text": text}
        if media_url:
            data["attachment"] = {"type": "media", "media": {
                "media_url_https": media_url, "type": "photo"}}
        return {"type": "message_create", "id": event_id or str(next(self._ids) + 10**17),
                "created_timestamp": str(int(time.time() * 1000)),
                "message_create": {"target": {"recipient_id": self.user_id},
                                   "sender_id": sender, "message_data": data}}

    def activity(self, *events: Json, typing: list[str] = ()) -> bytes:  # type: ignore[assignment]
        users = {e["message_create"]["sender_id"]: {
            "id": e["message_create"]["sender_id"], "name": "Grace Hopper",
            "screen_name": "grace"} for e in events}
        body: Json = {"for_user_id": self.user_id, "direct_message_events": list(events),
                      "users": users}
        if typing:
            body["direct_message_indicate_typing_events"] = [
                {"created_timestamp": str(int(time.time() * 1000)), "sender_id": who,
                 "target": {"recipient_id": self.user_id}} for who in typing]
        return json.dumps(body).encode()

    async def post(self, body: bytes, *, signature: str | None = None) -> httpx.Response:
        assert self._http is not None
        return await self._http.post(self.webhook_url, content=body, headers={
            "Content-Type": "application/json",
            "x-twitter-webhooks-signature": signature or sign(body, self.consumer_secret)})

    async def customer_says(self, sender: str, text: str) -> httpx.Response:
        return await self.post(self.activity(self.dm(sender, text)))

    def app(self) -> QuartTrio:
        app = QuartTrio("fake_x")

        @app.post("/2/dm_conversations/with/<participant>/messages")
        async def send(participant: str) -> Response:
            raw = await request.get_data()
            if request.headers.get("Authorization") != f"Bearer {self.access_token}":
                return problem(401, "Unauthorized", "Unauthorized")
            if self._failures:
                return problem(self._failures.pop(0), "Service Unavailable", "try later")
            now = time.time()
            if now >= self._reset_at:
                self._used, self._reset_at = 0, now + self.reset_in
            if self._used >= self.limit:
                return problem(429, "Too Many Requests", "Too Many Requests", {
                    "x-rate-limit-limit": str(self.limit), "x-rate-limit-remaining": "0",
                    "x-rate-limit-reset": str(int(self._reset_at) + 1)})
            body = json.loads(raw)
            text = body.get("text")
            if not isinstance(text, str) or not text or len(text) > 10_000:
                return problem(400, "Invalid Request", "text must be 1 to 10000 characters")
            self._used += 1
            event_id = str(next(self._ids) + 10**18)
            self.sent.append({"participant": participant, "text": text, "id": event_id})
            return Response(json.dumps({"data": {
                "dm_conversation_id": f"{participant}-{self.user_id}",
                "dm_event_id": event_id}}), status=201, content_type="application/json")

        return app


@asynccontextmanager
async def open_fake_x() -> AsyncIterator[FakeX]:
    """Serve a :class:`FakeX` on 127.0.0.1, a free port, for the block."""
    fake = FakeX()
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url, fake._http = binding.url, http
        yield fake
        nursery.cancel_scope.cancel()
