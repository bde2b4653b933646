"""The Zendesk provider against the fake Sunshine Conversations API (real HTTP on
127.0.0.1): open, send, poll (with backwards pagination), webhooks, the agent closing the
ticket (by webhook and by poll) and the agent's typing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from quart import Response, request
from quart_trio import QuartTrio

from adapters.edges import (
    AgentJoined,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTyping,
    EndSession,
    PollBatch,
    Provider,
    SendMessage,
    SendTyping,
    Session,
    TenantPoller,
    WebhookReceiver,
)
from adapters.policy import EdgeHttp
from adapters.zendesk import MAX_TEXT, ZendeskProvider
from lcx.api.http_server import serve_http
from lcx.config import TenantConfig
from lcx.errors import InvalidRequest, Unauthorized
from lcx.model import AgentRef, Attachment, Context, Conversation, Subscriber
from tests.fakes.zendesk import FakeSunshine, open_fake_sunshine

LIMIT = 10.0
"""Absolute bound of every test."""


def conversation(cid: str = "c1", name: str | None = "Ada") -> Conversation:
    return Conversation(id=cid, request_id="r1", org_id="o1", tenant_id="t1",
                        sub_handle="u-1", user_group_id="g1", provider="zendesk",
                        channel="bot", status="pending",
                        subscriber=Subscriber(name=name, email="ada@example.com"),
                        context=Context(), participants=[], flags={},
                        created_at="2026-11-22T00:00:00.000Z",
                        queued_at="2026-11-22T00:00:00.000Z",
                        last_activity_at="2026-11-22T00:00:00.000Z")


class Hooks:
    """A tiny webhook receiver recording what arrives (headers, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    def app(self) -> QuartTrio:
        app = QuartTrio("hooks")

        @app.post("/events/zendesk")
        async def receive() -> Response:
            self.received.append((dict(request.headers), await request.get_data()))
            return Response("", status=200)

        return app


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    receiver = Hooks()
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, receiver.app(), host="127.0.0.1",
                                              port=0))
        receiver.url = f"{binding.url}/events/zendesk"
        yield receiver
        nursery.cancel_scope.cancel()


@pytest.fixture
async def sunshine(hooks: Hooks) -> AsyncIterator[FakeSunshine]:
    async with open_fake_sunshine(webhook_url=hooks.url) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[EdgeHttp]:
    async with httpx.AsyncClient() as client:
        yield EdgeHttp(client, timeout=5.0, breaker_failures=100)


@pytest.fixture
def tenant(sunshine: FakeSunshine) -> TenantConfig:
    return sunshine.tenant()


@pytest.fixture
def provider(tenant: TenantConfig, http: EdgeHttp) -> ZendeskProvider:
    return ZendeskProvider({tenant.id: tenant}, http)


async def opened(provider: ZendeskProvider, tenant: TenantConfig,
                 cid: str = "c1") -> Session:
    with trio.fail_after(LIMIT):
        return await provider.open(conversation(cid), tenant)


async def poll(provider: ZendeskProvider, tenant: TenantConfig,
               sessions: dict[str, Session]) -> PollBatch:
    with trio.fail_after(LIMIT):
        batch = await provider.poll(tenant, sessions)
    sessions.update(batch.sessions)
    return batch


def texts(batch: PollBatch) -> list[str | None]:
    return [e.text for _, e in batch.events if isinstance(e, EdgeMessage)]


async def test_implements_the_three_protocols(provider: ZendeskProvider) -> None:
    """The provider is a Provider, a TenantPoller and a WebhookReceiver."""
    assert isinstance(provider, TenantPoller)
    assert isinstance(provider, WebhookReceiver)
    typed: Provider = provider
    assert typed.name == provider.alias == "zendesk"


async def test_bad_credentials_are_refused(sunshine: FakeSunshine, http: EdgeHttp) -> None:
    """Wrong Basic credentials: a 401 ``unauthorized``, flagged auth and not retryable."""
    tenant = sunshine.tenant(key_secret="wrong")
    provider = ZendeskProvider({tenant.id: tenant}, http)
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as caught:
        await provider.open(conversation(), tenant)
    assert (caught.value.status, caught.value.auth, caught.value.retry) == (401, True, False)
    assert "unauthorized" in str(caught.value)


async def test_fake_refuses_missing_auth(sunshine: FakeSunshine) -> None:
    """The fake answers an unauthenticated call with the Sunshine error body."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{sunshine.base_url}/v2/apps/{sunshine.app_id}/users/x")
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "unauthorized"


async def test_open_creates_user_conversation_and_passes_control(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """open: user lcx:<tenant>:<subHandle>, a personal conversation, passControl next."""
    session = await opened(provider, tenant)
    assert session == {"appId": sunshine.app_id, "conversationId": session["conversationId"],
                       "userId": session["userId"], "userExternalId": "lcx:t1:u-1",
                       "lastMessageId": None, "lastReceived": None, "tenantId": "t1"}
    user = sunshine.users[session["userId"]]
    assert user["profile"] == {"givenName": "Ada", "email": "ada@example.com"}
    fake_conversation = sunshine.conversations[session["conversationId"]]
    assert fake_conversation.metadata["lcxConversationId"] == "c1"
    assert fake_conversation.user_id == session["userId"]
    passes = sunshine.control_passes(session["conversationId"])
    assert [(p["action"], p["switchboardIntegration"]) for p in passes] == [
        ("passControl", "next")]


async def test_open_reuses_an_existing_user(provider: ZendeskProvider, tenant: TenantConfig,
                                            sunshine: FakeSunshine) -> None:
    """A second conversation of the same end user: 409 on create, then lookup."""
    first = await opened(provider, tenant, "c1")
    second = await opened(provider, tenant, "c2")
    assert second["userId"] == first["userId"]
    assert second["conversationId"] != first["conversationId"]
    assert len(sunshine.users) == 1
    assert ("GET", f"/v2/apps/{sunshine.app_id}/users/lcx:t1:u-1") in sunshine.requests


async def test_send_message_bodies(provider: ZendeskProvider, tenant: TenantConfig,
                                   sunshine: FakeSunshine) -> None:
    """Messages go as the user; long text is split at 4,096; attachments become URLs."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    long_text = " ".join(["word"] * 2000)  # 9,999 characters
    with trio.fail_after(LIMIT):
        await provider.send(session, SendMessage(conversation_id="c1", message_id="m1",
                                                 text="hello"))
        await provider.send(session, SendMessage(conversation_id="c1", message_id="m2",
                                                 text=long_text))
        await provider.send(session, SendMessage(
            conversation_id="c1", message_id="m3", text="see",
            attachments=(Attachment(url="https://f.example/a.png", name="a.png"),)))
    sent = sunshine.user_messages(cid)
    assert sent[0] == "hello"
    assert all(len(t) <= MAX_TEXT for t in sent)
    assert " ".join(sent[1:-1]) == long_text
    assert len(sent) == 5
    assert sent[-1] == "see\na.png: https://f.example/a.png"
    stored = sunshine.conversations[cid].messages[0]
    assert stored["author"] == {"type": "user", "userId": session["userId"]}
    assert stored["metadata"]["lcxMessageId"] == "m1"


async def test_typing_sends_nothing_and_end_releases_control(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """Typing is not sent (users may only send conversation:read); the end releases
    control, and ending a removed conversation succeeds."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    before = len(sunshine.requests)
    with trio.fail_after(LIMIT):
        await provider.send(session, SendTyping(conversation_id="c1"))
        assert len(sunshine.requests) == before
        await provider.send(session, EndSession(conversation_id="c1"))
        assert [p["action"] for p in sunshine.control_passes(cid)] == [
            "passControl", "releaseControl"]
        sunshine.remove(cid)
        await provider.send(session, EndSession(conversation_id="c1"))


async def test_poll_emits_only_agent_messages_in_order(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """Business messages only, oldest first, a join before the first; the cursor moves
    and the next poll repeats nothing."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    await provider.send(session, SendMessage(conversation_id="c1", message_id="m1",
                                             text="hi"))
    first = sunshine.agent_says(cid, "Hello, I am Zoe")
    sunshine.user_says(cid, "from the web")
    second = sunshine.agent_says(cid, "How can I help?")
    sessions = {"c1": session}
    batch = await poll(provider, tenant, sessions)
    events = [e for _, e in batch.events]
    assert [type(e) for e in events] == [AgentJoined, EdgeMessage, EdgeMessage]
    assert events[0] == AgentJoined(external_id=f"{first}:joined",
                                    agent=AgentRef(id="Zoe", name="Zoe"))
    assert [e.external_id for e in events[1:]] == [first, second]
    assert texts(batch) == ["Hello, I am Zoe", "How can I help?"]
    assert {lcx for lcx, _ in batch.events} == {"c1"}
    assert sessions["c1"]["lastMessageId"] == second
    assert sessions["c1"]["agent"] == {"id": "Zoe", "name": "Zoe"}
    again = await poll(provider, tenant, sessions)
    assert again.events == ()
    assert again.sessions == {}
    third = sunshine.agent_says(cid, "Still there?")
    later = await poll(provider, tenant, sessions)
    assert [e.external_id for _, e in later.events] == [third]


async def test_poll_maps_files(provider: ZendeskProvider, tenant: TenantConfig,
                               sunshine: FakeSunshine) -> None:
    """An image from the agent becomes a file message with its attachment."""
    session = await opened(provider, tenant)
    sunshine.agent_sends_file(session["conversationId"], "https://m.example/p.png")
    batch = await poll(provider, tenant, {"c1": session})
    message = batch.events[-1][1]
    assert isinstance(message, EdgeMessage)
    assert message.type == "file"
    assert message.attachments == (Attachment(url="https://m.example/p.png", name="photo.png",
                                              content_type="image/png", size=1024),)


async def test_poll_pages_backwards_to_the_cursor(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """More than 100 new messages since the last poll: page[before] is followed until the
    cursor, and everything after it comes out once, in order."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    sessions = {"c1": session}
    sunshine.agent_says(cid, "first")
    await poll(provider, tenant, sessions)
    for n in range(130):
        sunshine.agent_says(cid, f"m{n}")
    for n in range(130, 250):
        sunshine.user_says(cid, f"u{n}")
        sunshine.agent_says(cid, f"m{n}")
    gets = sunshine.gets
    batch = await poll(provider, tenant, sessions)
    assert texts(batch) == [f"m{n}" for n in range(250)]
    assert sunshine.gets - gets == 4  # 370 new messages + the cursor: 4 pages of 100
    assert not any(isinstance(e, AgentJoined) for _, e in batch.events)
    assert (await poll(provider, tenant, sessions)).events == ()


async def test_poll_from_the_start_reads_every_page(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """Without a cursor the whole history is read (until hasMore is false)."""
    session = await opened(provider, tenant)
    for n in range(205):
        sunshine.agent_says(session["conversationId"], f"m{n}")
    batch = await poll(provider, tenant, {"c1": session})
    assert texts(batch) == [f"m{n}" for n in range(205)]


async def test_fake_pagination_shape(provider: ZendeskProvider, tenant: TenantConfig,
                                     sunshine: FakeSunshine) -> None:
    """The fake pages as PROVIDERS 3.3 says: newest 100, hasMore, beforeCursor, prev."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    ids = [sunshine.agent_says(cid, f"m{n}") for n in range(150)]
    url = f"{sunshine.base_url}/v2/apps/{sunshine.app_id}/conversations/{cid}/messages"
    auth = (sunshine.key_id, sunshine.key_secret)
    async with httpx.AsyncClient(auth=auth) as client:
        newest = (await client.get(url, params={"page[size]": "10"})).json()
        older = (await client.get(newest["links"]["prev"])).json()
    assert [m["id"] for m in newest["messages"]] == ids[50:]
    assert newest["meta"] == {"hasMore": True, "beforeCursor": ids[50],
                              "afterCursor": ids[-1]}
    assert [m["id"] for m in older["messages"]] == ids[:50]
    assert older["meta"]["hasMore"] is False
    assert "prev" not in older["links"]


async def test_poll_ends_a_missing_conversation(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine) -> None:
    """A 404 conversation gives EdgeEnded for it alone; the others are still polled."""
    gone = await opened(provider, tenant, "c1")
    alive = await opened(provider, tenant, "c2")
    sunshine.remove(gone["conversationId"])
    message = sunshine.agent_says(alive["conversationId"], "hi")
    sessions = {"c1": gone, "c2": alive}
    batch = await poll(provider, tenant, sessions)
    assert batch.events[0] == ("c1", EdgeEnded(external_id=f"{gone['conversationId']}:ended",
                                               reason="not_found"))
    assert [e.external_id for lcx, e in batch.events if lcx == "c2"] == [
        f"{message}:joined", message]
    assert sessions["c1"]["ended"] is True
    assert (await poll(provider, tenant, sessions)).events == ()


@pytest.mark.parametrize("status", [429, 503])
async def test_poll_fails_whole_on_rate_limit_or_outage(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine,
        status: int) -> None:
    """429/5xx: the whole poll fails, retryable; cursors stay (the next poll has all)."""
    session = await opened(provider, tenant)
    message = sunshine.agent_says(session["conversationId"], "hi")
    sunshine.fail_next("/messages", status)
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as caught:
        await provider.poll(tenant, {"c1": session})
    assert caught.value.retry
    assert caught.value.status == status
    batch = await poll(provider, tenant, {"c1": session})
    assert [e.external_id for _, e in batch.events] == [f"{message}:joined", message]


async def test_stream_returns_at_once(provider: ZendeskProvider, tenant: TenantConfig
                                      ) -> None:
    """stream: nothing to follow (Zendesk is polled per tenant)."""
    async def never(*_: Any) -> None:
        raise AssertionError("nothing is emitted or saved")

    with trio.fail_after(1):
        await provider.stream({"conversationId": "x"}, never, never)


async def test_webhook_batch_verifies_and_parses(
        provider: ZendeskProvider, tenant: TenantConfig, sunshine: FakeSunshine,
        hooks: Hooks) -> None:
    """A batch over two conversations: agent messages only, with the poll's external ids,
    so a message seen by both is the same event."""
    one = await opened(provider, tenant, "c1")
    two = await opened(provider, tenant, "c2")
    a = sunshine.agent_says(one["conversationId"], "to one")
    b = sunshine.agent_says(two["conversationId"], "to two")
    await provider.send(one, SendMessage(conversation_id="c1", message_id="m1", text="me"))
    mine = sunshine.conversations[one["conversationId"]].messages[-1]["id"]
    with trio.fail_after(LIMIT):
        status = await sunshine.emit_batch([(one["conversationId"], a),
                                            (two["conversationId"], b),
                                            (one["conversationId"], mine)])
    assert status == 200
    headers, body = hooks.received[-1]
    provider.verify(headers, body)
    items = provider.parse(body).items
    assert [(i.side, i.tenant_id, i.external_id, i.kind) for i in items] == [
        ("provider", "t1", one["conversationId"], "event"),
        ("provider", "t1", two["conversationId"], "event")]
    assert len({i.event_id for i in items}) == 2
    polled = await poll(provider, tenant, {"c1": one, "c2": two})
    by_id = {e.external_id: e for _, e in polled.events}
    for item in items:
        assert item.event is not None
        assert by_id[item.event.external_id] == item.event


async def test_single_message_webhook(provider: ZendeskProvider, tenant: TenantConfig,
                                      sunshine: FakeSunshine, hooks: Hooks) -> None:
    """emit_message_webhook: one event, the X-API-Key header carries the secret."""
    session = await opened(provider, tenant)
    message = sunshine.agent_says(session["conversationId"], "hi")
    with trio.fail_after(LIMIT):
        await sunshine.emit_message_webhook(session["conversationId"], message)
    headers, body = hooks.received[-1]
    assert {k.lower(): v for k, v in headers.items()}["x-api-key"] == sunshine.secret
    (item,) = provider.parse(body).items
    assert isinstance(item.event, EdgeMessage)
    assert item.event.text == "hi"


def body_for(app_id: str, events: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"app": {"id": app_id}, "webhook": {"id": "w", "version": "v2"},
                       "events": events or []}).encode()


async def test_verify_refuses_bad_key_unknown_app_and_garbage(provider: ZendeskProvider,
                                                        tenant: TenantConfig) -> None:
    """Wrong or missing key, unknown app, no envelope: Unauthorized; not JSON: invalid."""
    assert tenant.zendesk is not None
    app = tenant.zendesk.app_id
    provider.verify({"X-API-Key": tenant.zendesk.webhook_api_key}, body_for(app))
    with pytest.raises(Unauthorized):
        provider.verify({"X-API-Key": "nope"}, body_for(app))
    with pytest.raises(Unauthorized):
        provider.verify({}, body_for(app))
    with pytest.raises(Unauthorized):
        provider.verify({"X-API-Key": tenant.zendesk.webhook_api_key}, body_for("other"))
    with pytest.raises(Unauthorized):
        provider.verify({"X-API-Key": tenant.zendesk.webhook_api_key}, b'{"events": []}')
    with pytest.raises(InvalidRequest):
        provider.verify({"X-API-Key": tenant.zendesk.webhook_api_key}, b"not json")


async def test_parse_ignores_other_events_and_maps_removal(provider: ZendeskProvider,
                                                     tenant: TenantConfig) -> None:
    """Typing/read events give nothing; conversation:remove gives the poll's EdgeEnded."""
    assert tenant.zendesk is not None
    events = [{"id": "e1", "type": "conversation:read", "payload": {}},
              {"id": "e2", "type": "conversation:remove",
               "payload": {"conversation": {"id": "zc1"}}}]
    (item,) = provider.parse(body_for(tenant.zendesk.app_id, events)).items
    assert item.event == EdgeEnded(external_id="zc1:ended", reason="removed")
    bad = [{"id": "e3", "type": "conversation:message", "payload": {"nope": 1}}]
    with pytest.raises(InvalidRequest):
        provider.parse(body_for(tenant.zendesk.app_id, bad))


async def test_basic_header_is_what_the_fake_expects(sunshine: FakeSunshine) -> None:
    """The fake's Basic check (keyId:secret)."""
    token = base64.b64encode(f"{sunshine.key_id}:{sunshine.key_secret}".encode()).decode()
    assert sunshine.authorized(f"Basic {token}")
    assert not sunshine.authorized("Bearer x")


async def test_fake_enforces_text_limit_and_message_cap(http: EdgeHttp) -> None:
    """The fake refuses text over 4,096 characters (400) and locks at its cap (423)."""
    async with open_fake_sunshine(message_cap=2) as fake:
        tenant = fake.tenant()
        provider = ZendeskProvider({tenant.id: tenant}, http)
        session = await opened(provider, tenant)
        cid = session["conversationId"]
        url = f"{fake.base_url}/v2/apps/{fake.app_id}/conversations/{cid}/messages"
        body = {"author": {"type": "user", "userId": session["userId"]},
                "content": {"type": "text", "text": "x" * (MAX_TEXT + 1)}}
        async with httpx.AsyncClient(auth=(fake.key_id, fake.key_secret)) as client:
            too_long = await client.post(url, json=body)
        assert too_long.status_code == 400
        fake.agent_says(cid, "one")
        fake.agent_says(cid, "two")
        with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as caught:
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m",
                                                     text="three"))
        assert caught.value.status == 423
        assert not caught.value.retry


async def test_closing_the_ticket_ends_by_poll(provider: ZendeskProvider,
                                               tenant: TenantConfig,
                                               sunshine: FakeSunshine) -> None:
    """Without webhooks the poll sees the workspace give control back: the agent's last
    message, then the end; the conversation is not polled again."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    sessions: dict[str, Session] = {"c1": session}
    assert not [e for _, e in (await poll(provider, tenant, sessions)).events]
    sunshine.agent_says(cid, "solved, bye")
    await sunshine.agent_closes_ticket(cid, webhook=False)
    batch = await poll(provider, tenant, sessions)
    kinds = [type(e).__name__ for _, e in batch.events]
    assert kinds == ["AgentJoined", "EdgeMessage", "EdgeEnded"]
    ended = batch.events[-1][1]
    assert isinstance(ended, EdgeEnded)
    assert ended.external_id == f"{cid}:released"
    assert sessions["c1"]["ended"] is True
    asked = len(sunshine.requests)
    assert not (await poll(provider, tenant, sessions)).events
    assert len(sunshine.requests) == asked


async def test_open_conversation_is_not_ended_by_poll(provider: ZendeskProvider,
                                                      tenant: TenantConfig,
                                                      sunshine: FakeSunshine) -> None:
    """While the agent workspace holds the conversation, polls end nothing."""
    session = await opened(provider, tenant)
    sunshine.agent_says(session["conversationId"], "working on it")
    batch = await poll(provider, tenant, {"c1": session})
    assert not any(isinstance(e, EdgeEnded) for _, e in batch.events)
    assert [e.text for _, e in batch.events if isinstance(e, EdgeMessage)] == [
        "working on it"]


async def test_pass_and_release_control_webhooks_end(provider: ZendeskProvider,
                                                     tenant: TenantConfig,
                                                     sunshine: FakeSunshine,
                                                     hooks: Hooks) -> None:
    """``switchboard:passControl`` back to lcx's integration and ``releaseControl`` both
    become the poll's end; lcx's own hand-over (control to the workspace) does not."""
    one = await opened(provider, tenant, "c1")
    two = await opened(provider, tenant, "c2")
    with trio.fail_after(LIMIT):
        await sunshine.agent_closes_ticket(one["conversationId"])
        await sunshine.agent_closes_ticket(two["conversationId"], release=True)
    for (headers, body), session in zip(hooks.received[-2:], (one, two), strict=True):
        provider.verify(headers, body)
        (item,) = provider.parse(body).items
        assert item.side == "provider"
        assert item.external_id == session["conversationId"]
        assert isinstance(item.event, EdgeEnded)
        assert item.event.external_id == f"{session['conversationId']}:released"
    conversation = sunshine.conversations[one["conversationId"]]
    conversation.active = {"id": "sw-agent", "integrationType": "zd:agentWorkspace"}
    handed_over = {"id": "evt-x", "type": "switchboard:passControl",
                   "payload": {"conversation": conversation.wire()}}
    with trio.fail_after(LIMIT):
        await sunshine.emit([handed_over])
    assert provider.parse(hooks.received[-1][1]).items == ()


async def test_agent_typing_webhook_is_carried(provider: ZendeskProvider,
                                               tenant: TenantConfig,
                                               sunshine: FakeSunshine,
                                               hooks: Hooks) -> None:
    """``conversation:typing`` by a business author is the agent typing (start and stop);
    the user's own typing is ignored."""
    session = await opened(provider, tenant)
    cid = session["conversationId"]
    with trio.fail_after(LIMIT):
        await sunshine.agent_typing(cid, True)
        await sunshine.agent_typing(cid, False)
        await sunshine.agent_typing(cid, True, author_type="user")
    parsed = [provider.parse(body).items for _, body in hooks.received[-3:]]
    start, stop = parsed[0][0].event, parsed[1][0].event
    assert isinstance(start, EdgeTyping)
    assert isinstance(stop, EdgeTyping)
    assert (start.typing, stop.typing) == (True, False)
    assert start.agent is not None
    assert start.agent.name == "Zoe"
    assert parsed[2] == ()
