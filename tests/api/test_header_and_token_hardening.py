"""Oversized headers get the error envelope (431) with X-Request-Id, date claims must be
JSON numbers, and every response (CSV and PDF transcripts included) says nosniff."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
from support.livechat_app import SECRET, livechat_app

from lcx.api.http_app import MAX_HEADER_BYTES


async def test_a_100_kb_authorization_header_gets_the_envelope(tmp_path: Path) -> None:
    """431 ``request_header_fields_too_large`` in the envelope, the client's request id
    echoed; a header set just under the limit is served."""
    async with livechat_app(tmp_path) as app:
        huge = {"Authorization": "Bearer " + "a" * 100_000, "X-Request-Id": "big-1"}
        response = await app.client.get("/tenants/t1/availability", headers=huge)
        assert response.status_code == 431, response.text
        assert response.json()["error"]["code"] == "request_header_fields_too_large"
        assert response.json()["error"]["details"]["maxBytes"] == MAX_HEADER_BYTES
        assert response.headers["X-Request-Id"] == "big-1"
        many = {f"X-Filler-{n}": "v" * 1000 for n in range(40)}
        assert (await app.client.get("/healthz", headers=many)).status_code == 431
        fine = {**app.tokens.bot(), "X-Filler": "v" * (MAX_HEADER_BYTES // 2)}
        assert (await app.client.get("/tenants/t1/availability", headers=fine)).status_code \
            == 200


async def test_date_claims_given_as_strings_are_refused(tmp_path: Path) -> None:
    """``exp`` (or ``iat``/``nbf``) as a numeric string is 401; as a number it is fine."""
    async with livechat_app(tmp_path) as app:
        now = int(time.time())
        claims = {"sub": "bot-1", "org": "o1", "scope": "bot"}
        for bad in ({"exp": str(now + 600)}, {"exp": now + 600, "iat": str(now)},
                    {"exp": now + 600, "nbf": str(now)}):
            token = jwt.encode({**claims, **bad}, SECRET, algorithm="HS256")
            response = await app.client.get("/tenants/t1/availability",
                                            headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (bad, response.text)
            assert "must be a number" in response.json()["error"]["message"]
        good = jwt.encode({**claims, "exp": now + 600.5, "iat": now}, SECRET, algorithm="HS256")
        response = await app.client.get("/tenants/t1/availability",
                                        headers={"Authorization": f"Bearer {good}"})
        assert response.status_code == 200, response.text


async def test_transcript_downloads_say_nosniff(tmp_path: Path) -> None:
    """CSV, PDF and JSON answers, and errors, carry ``X-Content-Type-Options: nosniff``."""
    async with livechat_app(tmp_path) as app:
        supervisor = app.tokens.supervisor()
        for fmt, media in (("csv", "text/csv"), ("pdf", "application/pdf"),
                           ("json", "application/json")):
            response = await app.client.get("/organizations/o1/livechat-messages",
                                            params={"format": fmt}, headers=supervisor)
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith(media)
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        missing = await app.client.get("/no/such/path")
        assert missing.headers["X-Content-Type-Options"] == "nosniff"
