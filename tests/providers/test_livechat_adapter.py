"""LiveChat channel calls (send_event, typing, deactivate) against the fake LiveChat."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from fakes.livechat import ApiFailure, FakeChat, FakeLiveChat, open_fake_livechat, tenant_for

from adapters.edges import EdgeCallFailed, EndSession, SendMessage, SendTyping
from adapters.livechat import MAX_TEXT_BYTES, LiveChatChannel, LiveChatError, session_for
from adapters.policy import EdgeHttp
from lcx.config import TenantConfig
from lcx.model import Attachment

CDN_FILE = "https://cdn.livechat-files.com/api/file/lc/att/1/abc/photo.png"


class Setup:
    """The fake, a channel over one tenant wired to it, and an open chat."""

    def __init__(self, fake: FakeLiveChat, http: EdgeHttp, tenant: TenantConfig,
                 chat: FakeChat) -> None:
        self.fake, self.http, self.tenant, self.chat = fake, http, tenant, chat
        self.channel = LiveChatChannel({tenant.id: tenant}, http)

    async def send(self, command: Any) -> None:
        """Send ``command`` to the chat."""
        await self.channel.send(self.tenant, session_for(self.chat.id), command)


@asynccontextmanager
async def open_setup(**livechat: Any) -> AsyncIterator[Setup]:
    """A :class:`Setup` for the block (``livechat`` overrides the tenant's fields)."""
    with trio.fail_after(10):
        async with open_fake_livechat() as fake, httpx.AsyncClient() as client:
            chat = await fake.start_chat(customer_name="Jane")
            yield Setup(fake, EdgeHttp(client), tenant_for(fake, **livechat), chat)


def message(text: str | None = "hello", **fields: Any) -> SendMessage:
    """A SendMessage with message id ``m1``."""
    return SendMessage(conversation_id="c1", message_id="m1", text=text, **fields)


def sent(setup: Setup, *keys: str) -> list[dict[str, Any]]:
    """The events lcx sent to the chat, reduced to ``keys``."""
    return [{k: e.get(k) for k in keys} for e in setup.fake.events_sent(setup.chat.id)]


async def test_message_is_a_send_event_with_basic_auth() -> None:
    """A text message is one send_event: message, visibility all, custom_id = message id."""
    async with open_setup() as setup:
        await setup.send(message("hello"))
    assert sent(setup, "type", "text", "visibility", "custom_id", "author_id") == [
        {"type": "message", "text": "hello", "visibility": "all", "custom_id": "m1",
         "author_id": "agent@example.com"}]
    (call,) = [c for c in setup.fake.calls if c.action == "send_event"]
    assert call.version == "v3.5"
    assert call.body == {"chat_id": setup.chat.id, "event": {
        "type": "message", "text": "hello", "visibility": "all", "custom_id": "m1"}}


async def test_attachments_are_links_or_cdn_files() -> None:
    """Attachments off LiveChat's CDN are appended as links; CDN ones go as file events."""
    files = (Attachment(url="https://files.example/r.pdf", name="report.pdf"),
             Attachment(url=CDN_FILE, name="photo.png"))
    async with open_setup() as setup:
        await setup.send(message("see", attachments=files))
    assert sent(setup, "type", "text", "url", "custom_id") == [
        {"type": "message", "text": "see\nreport.pdf: https://files.example/r.pdf",
         "url": None, "custom_id": "m1"},
        {"type": "file", "text": None, "url": CDN_FILE, "custom_id": "m1#1"}]


async def test_uploaded_file_is_sent_as_a_file_event() -> None:
    """A URL from the fake's upload_file is on the CDN, so it goes as a file event."""
    async with open_setup() as setup, httpx.AsyncClient(base_url=setup.fake.api_url) as api:
        basic = base64.b64encode(b"acc-1:pat-1").decode()
        uploaded = await api.post("/v3.5/agent/action/upload_file",
                                  files={"file": ("a.txt", b"hi", "text/plain")},
                                  headers={"Authorization": f"Basic {basic}"})
        url = uploaded.json()["url"]
        await setup.send(message(None, attachments=(Attachment(url=url),)))
    assert setup.fake.uploads[url] == b"hi"
    assert sent(setup, "type", "url") == [{"type": "file", "url": url}]


async def test_long_text_is_split_at_16_kb() -> None:
    """A text over 16 KB of UTF-8 goes as several messages, never cutting a character."""
    text = "é" * (MAX_TEXT_BYTES // 2 + 5)
    async with open_setup() as setup:
        await setup.send(message(text))
    parts = [e["text"] for e in setup.fake.events_sent(setup.chat.id)]
    assert len(parts) == 2
    assert "".join(parts) == text


async def test_rich_payload_is_a_rich_message() -> None:
    """A "rich" message with template_id and elements goes as a rich_message event."""
    elements = [{"title": "Pick", "buttons": [{"text": "Yes", "postback_id": "yes"}]}]
    payload = {"template_id": "quick_replies", "elements": elements}
    async with open_setup() as setup:
        await setup.send(message(None, type="rich", payload=payload))
    assert sent(setup, "type", "template_id", "elements") == [
        {"type": "rich_message", "template_id": "quick_replies", "elements": elements}]


async def test_typing_is_send_typing_indicator() -> None:
    """SendTyping is send_typing_indicator with chat_id and is_typing."""
    async with open_setup() as setup:
        await setup.send(SendTyping(conversation_id="c1", typing=True))
        await setup.send(SendTyping(conversation_id="c1", typing=False))
    assert setup.fake.typing(setup.chat.id) == [True, False]
    bodies = [c.body for c in setup.fake.calls if c.action == "send_typing_indicator"]
    assert bodies[0] == {"chat_id": setup.chat.id, "is_typing": True}


async def test_end_session_deactivates_the_chat() -> None:
    """EndSession is deactivate_chat {"id"}; LiveChat then fires chat_deactivated."""
    async with open_setup() as setup:
        await setup.send(EndSession(conversation_id="c1"))
        deliveries = await setup.fake.wait_for_deliveries(2)
    assert setup.fake.deactivated(setup.chat.id)
    assert [c.body for c in setup.fake.calls] == [{"id": setup.chat.id}]
    assert deliveries[1].action == "chat_deactivated"


async def test_end_session_of_an_inactive_chat_succeeds() -> None:
    """Ending a chat the customer already closed (chat_inactive) counts as success."""
    async with open_setup() as setup:
        await setup.fake.deactivate(setup.chat.id)
        await setup.send(EndSession(conversation_id="c1"))
    assert setup.fake.calls[0].status == 422
    assert not setup.fake.deactivated(setup.chat.id)


async def test_message_to_an_inactive_chat_is_not_retried() -> None:
    """send_event on a closed chat fails for good, with type chat_inactive."""
    async with open_setup() as setup:
        await setup.fake.deactivate(setup.chat.id)
        with pytest.raises(LiveChatError) as caught:
            await setup.send(message())
    assert (caught.value.type, caught.value.retry) == ("chat_inactive", False)


async def test_too_many_requests_is_retryable_with_retry_after() -> None:
    """too_many_requests is retryable and keeps the Retry-After delay."""
    async with open_setup() as setup:
        setup.fake.fail(ApiFailure("too_many_requests", retry_after=2), action="send_event")
        with pytest.raises(LiveChatError) as caught:
            await setup.send(message())
    failure = caught.value
    assert (failure.type, failure.retry, failure.retry_after, failure.auth) == (
        "too_many_requests", True, 2.0, False)


async def test_wrong_credentials_are_an_auth_failure() -> None:
    """An authentication error is not retried, flagged auth and counted."""
    async with open_setup(pat="wrong") as setup:
        with pytest.raises(LiveChatError) as caught:
            await setup.send(message())
    assert (caught.value.type, caught.value.retry, caught.value.auth) == (
        "authentication", False, True)
    assert setup.http.auth_failures == 1


@pytest.mark.parametrize(("error", "status", "retry", "auth"), [
    ("service_unavailable", 400, True, False),
    ("request_timeout", 200, True, False),
    ("validation", 503, False, False),
    ("missing_access", 500, False, True),
    ("not_found", 429, False, False),
])
async def test_the_error_type_decides_not_the_status(error: str, status: int, retry: bool,
                                                     auth: bool) -> None:
    """LiveChat errors are classified by error.type whatever HTTP status carries them."""
    async with open_setup() as setup:
        setup.fake.fail(ApiFailure(error, status=status))
        with pytest.raises(LiveChatError) as caught:
            await setup.send(SendTyping(conversation_id="c1"))
    assert (caught.value.type, caught.value.retry, caught.value.auth) == (error, retry, auth)


async def test_unreachable_api_is_retryable() -> None:
    """A network failure (nothing listening) is retryable, with no error type."""
    async with open_setup(api_url="http://127.0.0.1:1") as setup:
        with pytest.raises(EdgeCallFailed) as caught:
            await setup.send(message())
    assert caught.value.retry


async def test_session_without_chat_id_is_not_retried() -> None:
    """A session missing chatId is a permanent failure, and nothing is called."""
    async with open_setup() as setup:
        with pytest.raises(LiveChatError) as caught:
            await setup.channel.send(setup.tenant, {}, message())
    assert not caught.value.retry
    assert setup.fake.calls == []


async def test_transfer_chat_fires_chat_transferred() -> None:
    """The fake's transfer_chat answers {} and fires chat_transferred."""
    async with open_setup() as setup:
        answer = await setup.channel.call(setup.tenant, "transfer_chat", {
            "id": setup.chat.id, "target": {"type": "group", "ids": [19]}})
        deliveries = await setup.fake.wait_for_deliveries(2)
    assert answer == {}
    assert deliveries[1].action == "chat_transferred"
    assert b'"group_ids": [19]' in deliveries[1].body


async def test_fake_accepts_bearer_tokens_and_checks_the_region() -> None:
    """The fake takes Bearer tokens on v3.6 too and answers misdirected_request elsewhere."""
    async with open_setup() as setup, httpx.AsyncClient(base_url=setup.fake.api_url) as api:
        body = {"chat_id": setup.chat.id, "event": {"type": "message", "text": "x"}}
        good = await api.post("/v3.6/agent/action/send_event", json=body,
                              headers={"Authorization": "Bearer dal:token-1"})
        moved = await api.post("/v3.5/agent/action/send_event", json=body, headers={
            "Authorization": "Bearer dal:token-1", "X-Region": "fra"})
        basic = base64.b64encode(b"acc-1:pat-1").decode()
        unknown = await api.post("/v3.5/agent/action/nope", json={},
                                 headers={"Authorization": f"Basic {basic}"})
    assert good.status_code == 200
    assert good.json()["event_id"].startswith(setup.chat.thread_id)
    assert moved.json()["error"] == {"type": "misdirected_request", "message": "Wrong region",
                                     "data": {"region": "dal"}}
    assert unknown.json()["error"]["type"] == "not_found"


@pytest.mark.slow
async def test_rate_limiter_keeps_to_requests_per_second() -> None:
    """At 5 requests/s, past the bucket's burst of 5, no second holds more than 5 calls."""
    async with open_setup(requests_per_second=5) as setup, trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(setup.send, SendTyping(conversation_id="c1"))
    times = [c.at for c in setup.fake.calls]
    assert len(times) == 10
    assert times[-1] - times[0] >= 0.9
    assert setup.fake.max_in_window(1.0, skip=5) <= 5
    assert setup.fake.max_in_window(1.0) <= 10
