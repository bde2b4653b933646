"""A fake Facebook Messenger platform: the Graph Send API of one page and its webhook
emitter, served for real on loopback.

Send API: ``POST /{page id}/messages?access_token=<page token>`` (else 400 code 190),
``recipient.id`` a PSID that wrote to the page, ``message.text`` ≤ 2000 characters or an
``attachment``, or a ``sender_action``; ``messaging_type: RESPONSE`` only within 24 h of
the user's last message (else 400 code 10, subcode 2018278), ``MESSAGE_TAG`` with
``HUMAN_AGENT`` for 7 days. Answers ``{"recipient_id", "message_id"}``; errors
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``. Scripted
failures: a rate limit (code 613) or an outage (HTTP 500).

Webhooks: page events signed as Meta signs them (``X-Hub-Signature-256: sha256=<hex
HMAC-SHA256 of the exact bytes>`` keyed with the app secret); the subscription check is
a ``GET ?hub.mode=subscribe&hub.challenge&hub.verify_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
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
DAY_MS = 24 * 3600 * 1000


def sign(body: bytes, app_secret: str) -> str:
    """Meta's ``X-Hub-Signature-256`` value."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def graph_error(status: int, code: int, message: str, subcode: int | None = None) -> Response:
    error: Json = {"message": message, "type": "OAuthException", "code": code,
                   "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Response(json.dumps({"error": error}), status=status,
                    content_type="application/json")


@dataclass
class FakeMessenger:
    """One page: who wrote to it, what it sent back, scripted failures, webhooks."""

    page_id: str = "page-1"
    page_token: str = "page-token-1"
    app_secret: str = "app-secret-1"
    verify_token: str = "verify-1"
    base_url: str = ""
    webhook_url: str = ""
    now_ms: int = 1_700_000_000_000
    """The fake's clock (ms): move it to leave the 24 h window."""
    last_user_ms: dict[str, int] = field(default_factory=dict)
    sent: list[Json] = field(default_factory=list)
    """Accepted Send API bodies, in order."""
    calls: int = 0
    _failures: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _http: httpx.AsyncClient | None = None

    def config(self) -> str:
        """The ``[tenants.messenger]`` table pointing at the fake."""
        return f"""
[tenants.messenger]
api_url = "{self.base_url}"
page_id = "{self.page_id}"
page_access_token = "{self.page_token}"
app_secret = "{self.app_secret}"
verify_token = "{self.verify_token}"
"""

    def fail_next(self, kind: str, times: int = 1) -> None:
        """``rate_limit`` (400 code 613) or ``outage`` (500) for the next calls."""
        self._failures.extend([kind] * times)

    def clear_failures(self) -> None:
        self._failures.clear()

    def texts(self, psid: str) -> list[str]:
        return [b["message"]["text"] for b in self.sent
                if b["recipient"]["id"] == psid and "text" in b.get("message", {})]

    def actions(self, psid: str) -> list[str]:
        return [b["sender_action"] for b in self.sent
                if b["recipient"]["id"] == psid and "sender_action" in b]

    # -- webhooks ---------------------------------------------------------------------

    def event(self, psid: str, **fields: Any) -> Json:
        return {"sender": {"id": psid}, "recipient": {"id": self.page_id},
                "timestamp": self.now_ms, **fields}

    def body(self, *events: Json) -> bytes:
        return json.dumps({"object": "page", "entry": [{
            "id": self.page_id, "time": self.now_ms, "messaging": list(events)}]}).encode()

    def user_message(self, psid: str, text: str, **extra: Any) -> Json:
        self.last_user_ms[psid] = self.now_ms
        return self.event(psid, message={"mid": f"m_{next(self._ids)}", "text": text,
                                         **extra})

    async def post(self, body: bytes, *, signature: str | None = None) -> httpx.Response:
        """POST ``body`` to the webhook URL, signed (or with ``signature``)."""
        assert self._http is not None
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": signature or sign(body, self.app_secret)}
        return await self._http.post(self.webhook_url, content=body, headers=headers)

    async def user_says(self, psid: str, text: str) -> httpx.Response:
        return await self.post(self.body(self.user_message(psid, text)))

    # -- the Send API -----------------------------------------------------------------

    def app(self) -> QuartTrio:
        app = QuartTrio("fake_messenger")

        @app.post("/<page>/messages")
        async def send(page: str) -> Response:
            self.calls += 1
            raw = await request.get_data()  # always read: an unread body stalls keep-alive
            if request.args.get("access_token") != self.page_token or page != self.page_id:
                return graph_error(400, 190, "Invalid OAuth access token.")
            if self._failures:
                kind = self._failures.pop(0)
                if kind == "rate_limit":
                    return graph_error(400, 613, "Calls to this api have exceeded the "
                                       "rate limit.")
                return graph_error(500, 2, "An unexpected error has occurred.")
            body: Json = json.loads(raw)
            psid = (body.get("recipient") or {}).get("id")
            if psid not in self.last_user_ms:
                return graph_error(400, 100, "No matching user found", 2018001)
            problem = self._invalid(body, self.now_ms - self.last_user_ms[psid])
            if problem is not None:
                return problem
            self.sent.append(body)
            return Response(json.dumps({"recipient_id": psid,
                                        "message_id": f"m_out_{next(self._ids)}"}),
                            content_type="application/json")

        return app

    @staticmethod
    def _invalid(body: Json, since_ms: int) -> Response | None:
        if "sender_action" in body:
            ok = body["sender_action"] in ("typing_on", "typing_off", "mark_seen")
            return None if ok else graph_error(400, 100, "Invalid sender_action")
        message = body.get("message") or {}
        text = message.get("text")
        if text is None and "attachment" not in message:
            return graph_error(400, 100, "message must have text or an attachment")
        if text is not None and len(text) > 2000:
            return graph_error(400, 100, "param message[text] must be at most 2000 chars")
        kind, tag = body.get("messaging_type"), body.get("tag")
        if kind == "RESPONSE" and since_ms > DAY_MS:
            return graph_error(400, 10, "This message is sent outside of allowed window.",
                               2018278)
        if kind == "MESSAGE_TAG" and (tag != "HUMAN_AGENT" or since_ms > 7 * DAY_MS):
            return graph_error(400, 10, "This message is sent outside of allowed window.",
                               2018278)
        if kind not in ("RESPONSE", "MESSAGE_TAG", "UPDATE"):
            return graph_error(400, 100, "Invalid messaging_type")
        return None


@asynccontextmanager
async def open_fake_messenger() -> AsyncIterator[FakeMessenger]:
    """Serve a :class:`FakeMessenger` on 127.0.0.1, a free port, for the block."""
    fake = FakeMessenger()
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url, fake._http = binding.url, http
        yield fake
        nursery.cancel_scope.cancel()
