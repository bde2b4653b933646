"""A fake Twilio Programmable Messaging account: the Messages API and the webhooks of its
numbers (SMS and WhatsApp), served for real on loopback.

Messages API: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with Basic
``AccountSid:AuthToken`` (else 401 code 20003), form fields ``To``, ``From`` (one of the
account's numbers) or ``MessagingServiceSid``, ``Body`` ≤ 1600 characters, ``MediaUrl``
(repeatable); answers 201 with ``sid`` and ``status: queued``. Errors are Twilio's JSON
``{"code", "message", "more_info", "status"}``: 21211 (bad ``To``), 21610 (unsubscribed),
63016 (WhatsApp outside the customer's 24 h window), and scripted 429 / 20429 with
``Retry-After`` and 500 outages.

Webhooks: form-encoded POSTs signed as Twilio signs them (``X-Twilio-Signature``: base64
HMAC-SHA1 with the auth token of the URL followed by the sorted form fields).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlencode

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http

Json = dict[str, Any]


def sign(url: str, fields: list[tuple[str, str]], auth_token: str) -> str:
    """Twilio's ``X-Twilio-Signature`` of a form POST."""
    data = url + "".join(name + value for name, value in sorted(fields))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(),
                                     hashlib.sha1).digest()).decode()


def twilio_error(status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers or {})


@dataclass
class FakeTwilio:
    """One account with one SMS number and one WhatsApp sender."""

    account_sid: str = "AC" + "1" * 32
    auth_token: str = "twilio-auth-token"
    number: str = "+15005550006"
    base_url: str = ""
    webhook_url: str = ""
    sent: list[Json] = field(default_factory=list)
    unsubscribed: set[str] = field(default_factory=set)
    whatsapp_window_closed: set[str] = field(default_factory=set)
    _failures: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _http: httpx.AsyncClient | None = None

    def config(self) -> str:
        return f"""
[tenants.twilio]
api_url = "{self.base_url}"
account_sid = "{self.account_sid}"
auth_token = "{self.auth_token}"
from_number = "{self.number}"
webhook_url = "{self.webhook_url}"
"""

    def fail_next(self, status: int, times: int = 1) -> None:
        """429 (code 20429, ``Retry-After: 1``) or a 5xx for the next sends."""
        self._failures.extend([status] * times)

    def bodies(self, to: str) -> list[str]:
        return [m["Body"] for m in self.sent if m["To"] == to]

    def sid(self, prefix: str = "SM") -> str:
        return f"{prefix}{next(self._ids):032x}"

    async def customer_texts(self, sender: str, body: str, *, whatsapp: bool = False,
                             media: list[tuple[str, str]] = (),  # type: ignore[assignment]
                             sid: str | None = None, signature: str | None = None,
                             url: str | None = None) -> httpx.Response:
        """An inbound message webhook from ``sender`` to our number."""
        prefix = "whatsapp:" if whatsapp else ""
        fields = [("MessageSid", sid or self.sid()), ("SmsSid", sid or ""),
                  ("AccountSid", self.account_sid), ("From", prefix + sender),
                  ("To", prefix + self.number), ("Body", body), ("NumMedia", str(len(media))),
                  ("SmsStatus", "received"), ("ApiVersion", "2010-04-01")]
        for n, (media_url, kind) in enumerate(media):
            fields += [(f"MediaUrl{n}", media_url), (f"MediaContentType{n}", kind)]
        return await self.post(fields, signature=signature, url=url)

    async def post(self, fields: list[tuple[str, str]], *, signature: str | None = None,
                   url: str | None = None) -> httpx.Response:
        assert self._http is not None
        target = url or self.webhook_url
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": signature or sign(target, fields, self.auth_token)}
        return await self._http.post(self.webhook_url, content=urlencode(fields),
                                     headers=headers)

    def app(self) -> QuartTrio:
        app = QuartTrio("fake_twilio")

        @app.post("/2010-04-01/Accounts/<sid>/Messages.json")
        async def create(sid: str) -> Response:
            form = await request.form
            expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode())
            if sid != self.account_sid or \
                    request.headers.get("Authorization") != f"Basic {expected.decode()}":
                return twilio_error(401, 20003, "Authenticate")
            if self._failures:
                status = self._failures.pop(0)
                if status == 429:
                    return twilio_error(429, 20429, "Too Many Requests",
                                        {"Retry-After": "1"})
                return twilio_error(status, 20500, "Internal Server Error")
            to, sender = form.get("To", ""), form.get("From", "")
            body, media = form.get("Body", ""), form.getlist("MediaUrl")
            if not to.removeprefix("whatsapp:").startswith("+"):
                return twilio_error(400, 21211, f"The 'To' number {to} is not valid.")
            if sender.removeprefix("whatsapp:") != self.number and \
                    not form.get("MessagingServiceSid"):
                return twilio_error(400, 21606, "The From phone number is not valid.")
            if not body and not media:
                return twilio_error(400, 21602, "Message body is required.")
            if len(body) > 1600:
                return twilio_error(400, 21617, "The concatenated message body exceeds "
                                    "the 1600 character limit.")
            if to.removeprefix("whatsapp:") in self.unsubscribed:
                return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
            if to.startswith("whatsapp:") and to in self.whatsapp_window_closed:
                return twilio_error(400, 63016, "Failed to send freeform message because "
                                    "you are outside the allowed window. Please use a "
                                    "Template.")
            message = {"sid": self.sid(), "To": to, "From": sender, "Body": body,
                       "MediaUrl": media, "status": "queued",
                       "account_sid": self.account_sid}
            self.sent.append(message)
            return Response(json.dumps(message), status=201,
                            content_type="application/json")

        return app


@asynccontextmanager
async def open_fake_twilio() -> AsyncIterator[FakeTwilio]:
    """Serve a :class:`FakeTwilio` on 127.0.0.1, a free port, for the block."""
    fake = FakeTwilio()
    async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url, fake._http = binding.url, http
        yield fake
        nursery.cancel_scope.cancel()
