"""The bot client's pure parts: outcome classification, Retry-After, signature, headers."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from adapters.bot_events import (
    BotClient,
    Delivered,
    Reject,
    Retry,
    classify,
    parse_retry_after,
    sign,
)

NOW = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    """Every 2xx answer means delivered."""
    assert classify(status, {}) == Delivered(status)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    """408, 425, 429 and 5xx are retried, without a delay when none is given."""
    outcome = classify(status, {})
    assert isinstance(outcome, Retry)
    assert outcome.after_seconds is None
    assert str(status) in outcome.reason


@pytest.mark.parametrize("status", [400, 404, 405, 409, 410, 413, 422])
def test_other_4xx_are_rejected_without_auth_flag(status: int) -> None:
    """400/404/410 and other 4xx are permanent failures, not auth failures."""
    assert classify(status, {}) == Reject(f"HTTP {status}", auth=False)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_rejected_and_flagged(status: int) -> None:
    """401 and 403 are not retried and are flagged for the alert metric."""
    assert classify(status, {}) == Reject(f"HTTP {status}", auth=True)


def test_redirect_is_rejected_with_a_reason() -> None:
    """Redirects are not followed: a 3xx is a permanent failure that says so."""
    outcome = classify(302, {"Location": "http://elsewhere"})
    assert isinstance(outcome, Reject)
    assert "redirect" in outcome.reason


def test_retry_after_seconds_is_kept_case_insensitively() -> None:
    """A Retry-After in seconds is returned with the retry, whatever the header's case."""
    assert classify(429, {"retry-AFTER": "7"}) == Retry("HTTP 429", 7.0)


def test_retry_after_http_date_is_relative_to_now() -> None:
    """A Retry-After HTTP-date becomes the seconds from now until then."""
    headers = {"Retry-After": "Sat, 21 Nov 2026 10:00:30 GMT"}
    assert classify(503, headers, now=NOW) == Retry("HTTP 503", 30.0)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 0 ", 0.0), ("100000", 600.0), ("Sat, 21 Nov 2026 09:00:00 GMT", 0.0),
    ("Sun, 22 Nov 2026 10:00:00 GMT", 600.0), ("soon", None), ("-5", None), ("", None),
    (None, None), ("1.5", None),
])
def test_parse_retry_after_caps_and_ignores_garbage(value: str | None,
                                                    expected: float | None) -> None:
    """Retry-After values are capped at 10 minutes; past dates give 0; junk gives None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_failure_reason_carries_the_detail() -> None:
    """The start of the answer's body is appended to the failure reason."""
    assert classify(400, {}, detail="bad field x") == Reject("HTTP 400: bad field x")


def test_sign_is_hex_hmac_sha256_of_the_raw_body() -> None:
    """The signature is sha256=<hex HMAC-SHA256(secret, body)>."""
    body = '{"id":"e1","text":"héllo"}'.encode()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"


def test_headers_carry_key_signature_and_bearer_only_when_configured() -> None:
    """Idempotency-Key always; signature only with a secret; Authorization only with a token."""
    body = b'{"id":"e1"}'
    bare = BotClient.headers(body, event_id="e1")
    assert bare == {"Content-Type": "application/json", "Idempotency-Key": "e1"}
    full = BotClient.headers(body, event_id="e1", secret="k", bearer="tok")
    assert full["X-Lcx-Signature"] == sign(body, "k")
    assert full["Authorization"] == "Bearer tok"
