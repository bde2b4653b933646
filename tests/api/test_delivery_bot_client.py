"""The bot client over real sockets: network failures, timeouts, bad URLs, error details."""

from __future__ import annotations

import socket

import trio
from fakes.bot import Reply, open_fake_bot

from adapters.bot_events import Delivered, Reject, Retry, open_bot_client, sign


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"


async def test_post_sends_exact_body_and_headers() -> None:
    """The body arrives byte for byte, with the event id and a valid signature."""
    body = '{"id":"e1","text":"héllo"}'.encode()
    async with open_fake_bot(secret="k") as bot, open_bot_client() as client:
        outcome = await client.post(bot.url, body, event_id="e1", secret="k")
    (received,) = bot.received
    assert outcome == Delivered(200)
    assert received.body == body
    assert received.headers["idempotency-key"] == "e1"
    assert received.headers["x-lcx-signature"] == sign(body, "k")
    assert received.signature_valid


async def test_connection_refused_is_retried() -> None:
    """Nobody listening is a transient network failure."""
    async with open_bot_client() as client:
        outcome = await client.post(closed_port_url(), b"{}", event_id="e1")
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("network error: ConnectError")


async def test_a_stalled_bot_times_out_and_is_retried() -> None:
    """No answer within the client's timeout is a transient failure, reported in time."""
    async with open_fake_bot() as bot, open_bot_client(timeout=0.2) as client:
        bot.mode = "stall"
        started = trio.current_time()
        outcome = await client.post(bot.url, b"{}", event_id="e1")
        assert trio.current_time() - started < 1.0
        bot.release()
    assert isinstance(outcome, Retry)
    assert "timeout" in outcome.reason


async def test_unsupported_url_is_rejected() -> None:
    """A URL httpx cannot use is a permanent failure."""
    async with open_bot_client() as client:
        outcome = await client.post("ftp://example.invalid/x", b"{}", event_id="e1")
    assert isinstance(outcome, Reject)
    assert outcome.reason.startswith("invalid URL")


async def test_error_answers_carry_status_body_and_retry_after() -> None:
    """A 4xx reason quotes the body's start; a 503's Retry-After is returned."""
    async with open_fake_bot() as bot, open_bot_client() as client:
        bot.script(Reply(422, body=b"missing field: seq" + b"x" * 5000),
                   Reply(503, {"Retry-After": "3"}))
        rejected = await client.post(bot.url, b"{}", event_id="e1")
        retried = await client.post(bot.url, b"{}", event_id="e1")
    assert isinstance(rejected, Reject)
    assert rejected.reason.startswith("HTTP 422: missing field: seq")
    assert len(rejected.reason) < 300
    assert retried == Retry("HTTP 503", 3.0)


async def test_the_url_query_and_host_reach_the_bot() -> None:
    """The path with its query string arrives as configured, with a Host header naming
    the port, event after event."""
    async with open_fake_bot() as bot, open_bot_client() as client:
        url = bot.url + "?triggerType=x&tenantId=t%201"
        first = await client.post(url, b"{}", event_id="e1")
        second = await client.post(url, b"{}", event_id="e2")
    assert first == second == Delivered(200)
    port = bot.url.split(":")[2].split("/")[0]
    for received in bot.received:
        assert received.path.endswith("?triggerType=x&tenantId=t%201")
        assert received.headers["host"] == f"127.0.0.1:{port}"
        assert received.headers["user-agent"].startswith("lcx/")


async def test_a_malformed_url_is_rejected() -> None:
    """A URL that does not parse, or has no host, is a permanent failure."""
    async with open_bot_client() as client:
        for url in ("http://[::1/x", "http:///events"):
            outcome = await client.post(url, b"{}", event_id="e1")
            assert isinstance(outcome, Reject), url
            assert outcome.reason.startswith("invalid URL"), url


async def test_a_line_break_in_a_header_value_is_rejected() -> None:
    """An Idempotency-Key or token with CR/LF could inject headers: refused, not sent."""
    async with open_fake_bot() as bot, open_bot_client() as client:
        outcome = await client.post(bot.url, b"{}", event_id="e1\r\nX-Evil: 1")
        token = await client.post(bot.url, b"{}", event_id="e2", bearer="t\nX: y")
    assert isinstance(outcome, Reject)
    assert isinstance(token, Reject)
    assert bot.received == []


async def test_events_share_one_keep_alive_connection() -> None:
    """Event after event goes over the same connection, each with its own signature."""
    async with open_fake_bot(secret="k") as bot, open_bot_client() as client:
        for n in range(5):
            assert await client.post(bot.url, b'{"n":%d}' % n, event_id=f"e{n}",
                                     secret="k") == Delivered(200)
        opened = client._pool.opened
    assert opened == 1
    assert all(received.signature_valid for received in bot.received)
    assert [r.headers["idempotency-key"] for r in bot.received] == [f"e{n}" for n in range(5)]
