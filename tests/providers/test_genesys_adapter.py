"""The Genesys provider against the fake Genesys (real HTTP and websocket on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx
import pytest
import trio

from adapters.edges import (
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTyping,
    EndSession,
    SendMessage,
    SendTyping,
    Session,
)
from adapters.genesys import MAX_BODY_CHARS, GenesysProvider, message_parts
from adapters.policy import EdgeHttp
from lcx.model import AgentRef, Attachment, Context, Conversation, Subscriber
from lcx.runtime.policy import Backoff
from tests.fakes.genesys import GUEST, FakeGenesys, open_fake_genesys

FAST = Backoff(initial_seconds=0.05, maximum_seconds=0.2)
LIMIT = 10.0
"""Absolute bound of every test."""


def conversation(name: str | None = "Ada") -> Conversation:
    return Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1",
                        sub_handle="u-1", user_group_id="g1", provider="genesys",
                        channel="bot", status="pending",
                        subscriber=Subscriber(name=name, email="ada@example.com"),
                        context=Context(), participants=[], flags={},
                        created_at="2026-11-22T00:00:00.000Z",
                        queued_at="2026-11-22T00:00:00.000Z",
                        last_activity_at="2026-11-22T00:00:00.000Z")


class Events:
    """What a stream emitted, in order."""

    def __init__(self) -> None:
        self.items: list[AnyEdgeEvent] = []
        self.saved: list[Session] = []
        self._changed = trio.Event()

    async def emit(self, event: AnyEdgeEvent) -> None:
        self.items.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def save(self, session: Session) -> None:
        self.saved.append(dict(session))

    async def wait_for(self, predicate: Callable[[list[AnyEdgeEvent]], bool]) -> None:
        with trio.fail_after(5):
            while not predicate(self.items):
                await self._changed.wait()

    def of(self, kind: type) -> list[AnyEdgeEvent]:
        return [e for e in self.items if isinstance(e, kind)]

    def texts(self) -> list[str | None]:
        return [e.text for e in self.items if isinstance(e, EdgeMessage)]


@pytest.fixture
async def genesys() -> AsyncIterator[FakeGenesys]:
    async with open_fake_genesys(heartbeat_seconds=0.2) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[EdgeHttp]:
    async with httpx.AsyncClient() as client:
        yield EdgeHttp(client, timeout=5.0, breaker_failures=3, breaker_cooldown=30.0)


@pytest.fixture
def provider(http: EdgeHttp) -> GenesysProvider:
    return GenesysProvider(http, backoff=FAST, heartbeat_timeout=2.0, connect_timeout=5.0)


async def opened(provider: GenesysProvider, genesys: FakeGenesys) -> Session:
    return await provider.open(conversation(), genesys.tenant())


async def start_stream(nursery: trio.Nursery, provider: GenesysProvider, genesys: FakeGenesys,
                       session: Session, events: Events, connections: int = 1) -> trio.Event:
    """Start ``stream`` and wait until it caught up (its member list read, the last step)
    after its socket connected; the returned event is set when ``stream`` returns."""
    done = trio.Event()
    members = ("GET", f"{GUEST}/{session['conversationId']}/members")

    async def follow() -> None:
        await provider.stream(session, events.emit, events.save)
        done.set()

    nursery.start_soon(follow)
    await genesys.wait_connected(session["conversationId"], connections)
    await genesys.wait_until(lambda: genesys.requests.count(members) >= connections)
    return done


async def test_token_is_cached(provider: GenesysProvider, genesys: FakeGenesys) -> None:
    """Two platform calls share one OAuth token request."""
    with trio.fail_after(LIMIT):
        assert await provider.find_queue(genesys.tenant()) == "queue-1"
        assert await provider.find_queue(genesys.tenant()) == "queue-1"
    assert genesys.token_requests == ["lcx-client"]


async def test_token_is_refreshed_before_it_expires(http: EdgeHttp) -> None:
    """A token is fetched again once its lifetime (less the margin) has passed."""
    async with open_fake_genesys(token_ttl=1) as fake:
        provider = GenesysProvider(http)
        with trio.fail_after(LIMIT):
            await provider.find_queue(fake.tenant())
            await provider.find_queue(fake.tenant())
            assert len(fake.token_requests) == 1
            await trio.sleep(0.6)
            await provider.find_queue(fake.tenant())
        assert len(fake.token_requests) == 2


async def test_a_401_refreshes_the_token_once(provider: GenesysProvider,
                                              genesys: FakeGenesys) -> None:
    """A revoked token is replaced after a 401; a second 401 is an auth failure."""
    with trio.fail_after(LIMIT):
        await provider.find_queue(genesys.tenant())
        genesys.expire_tokens()
        await provider.find_queue(genesys.tenant())
        assert len(genesys.token_requests) == 2
        genesys.fail_next("/routing/queues", 401, times=2)
        with pytest.raises(EdgeCallFailed) as failed:
            await provider.find_queue(genesys.tenant())
    assert failed.value.auth
    assert not failed.value.retry
    assert len(genesys.token_requests) == 3


async def test_bad_credentials_are_an_auth_failure(provider: GenesysProvider,
                                                   genesys: FakeGenesys) -> None:
    """400 unauthorized_client from the login host is not retryable and flagged auth."""
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as failed:
        await provider.find_queue(genesys.tenant(client_secret="wrong"))
    assert (failed.value.retry, failed.value.auth, failed.value.status) == (False, True, 400)


async def test_open_creates_the_guest_chat(provider: GenesysProvider,
                                           genesys: FakeGenesys) -> None:
    """open posts the documented body and returns the session keys."""
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
    chat = genesys.chats[session["conversationId"]]
    assert chat.request == {
        "organizationId": "org-1", "deploymentId": "dep-1",
        "routingTarget": {"targetType": "QUEUE", "targetAddress": "Support"},
        "memberInfo": {"displayName": "Ada", "email": "ada@example.com",
                       "customFields": {"lcxConversationId": "c1", "lcxTenantId": "t1"}}}
    assert session == {"conversationId": chat.id, "memberId": chat.guest, "jwt": chat.jwt,
                       "eventStreamUri": f"{genesys.base_url.replace('http', 'ws')}"
                                         f"/v1/token/{chat.jwt}",
                       "tenantId": "t1", "apiUrl": genesys.base_url,
                       "organizationId": "org-1"}
    assert genesys.token_requests == []


async def test_open_with_an_unknown_queue_is_not_retryable(provider: GenesysProvider,
                                                           genesys: FakeGenesys) -> None:
    """400 chat.error.invalid.queue is a permanent failure."""
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as failed:
        await provider.open(conversation(), genesys.tenant(queue_name="Nope"))
    assert (failed.value.retry, failed.value.status) == (False, 400)
    assert "chat.error.invalid.queue" in str(failed.value)


async def test_messages_need_a_connected_socket(provider: GenesysProvider,
                                                genesys: FakeGenesys) -> None:
    """Before the event stream is connected a post is refused (conversation state)."""
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        with pytest.raises(EdgeCallFailed) as failed:
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m1",
                                                     text="too early"))
    assert not failed.value.retry
    assert "chat.error.conversation.state" in str(failed.value)


async def test_send_message_typing_and_end(provider: GenesysProvider,
                                           genesys: FakeGenesys) -> None:
    """Messages (long ones split, attachments as URLs), typing and end reach Genesys."""
    events = Events()
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        chat_id = session["conversationId"]
        async with trio.open_nursery() as nursery:
            done = await start_stream(nursery, provider, genesys, session, events)
            long_text = "word " * 1700
            await provider.send(session, SendMessage(
                conversation_id="c1", message_id="m1", text="Hello",
                attachments=(Attachment(url="https://files/x.pdf", name="x.pdf"),)))
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m2",
                                                     text=long_text))
            await provider.send(session, SendTyping(conversation_id="c1"))
            await provider.send(session, SendTyping(conversation_id="c1", typing=False))
            await provider.send(session, EndSession(conversation_id="c1"))
            await provider.send(session, EndSession(conversation_id="c1"))
            await done.wait()
    sent = genesys.guest_messages(chat_id)
    assert sent[0] == "Hello\nx.pdf: https://files/x.pdf"
    assert "".join(sent[1:]).replace(" ", "") == long_text.replace(" ", "")
    assert len(sent) == 4
    assert all(len(body) <= MAX_BODY_CHARS for body in sent)
    assert genesys.typing_count(chat_id) == 1
    assert genesys.ended(chat_id)
    assert events.items == [EdgeEnded(reason="guest left", external_id=f"{chat_id}:ended")]


def test_message_parts_cut_past_the_last_part() -> None:
    """Text beyond max_parts pieces is cut and marked; nothing to say gives no part."""
    parts = message_parts("a" * 25, limit=10, max_parts=2)
    assert parts == ["a" * 10, "a" * 6 + " […]"]
    assert message_parts(None) == []


async def test_rate_limit_is_retryable_with_retry_after(provider: GenesysProvider,
                                                        genesys: FakeGenesys) -> None:
    """429 with Retry-After is EdgeCallFailed(retry=True, retry_after=seconds)."""
    genesys.fail_next(GUEST_SUFFIX, 429, {"Retry-After": "3"})
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as failed:
        await opened(provider, genesys)
    assert (failed.value.retry, failed.value.retry_after, failed.value.status) == \
        (True, 3.0, 429)


GUEST_SUFFIX = "/webchat/guest/conversations"


async def test_bad_request_is_not_retryable(provider: GenesysProvider,
                                            genesys: FakeGenesys) -> None:
    """A 400 is a permanent failure and not an auth problem."""
    genesys.fail_next(GUEST_SUFFIX, 400)
    with trio.fail_after(LIMIT), pytest.raises(EdgeCallFailed) as failed:
        await opened(provider, genesys)
    assert (failed.value.retry, failed.value.auth) == (False, False)


async def test_refused_guest_token_is_an_auth_failure(provider: GenesysProvider,
                                                      genesys: FakeGenesys) -> None:
    """A 401 on a guest call (wrong JWT) is flagged auth and not retried."""
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        with pytest.raises(EdgeCallFailed) as failed:
            await provider.send(session | {"jwt": "stolen"},
                                SendTyping(conversation_id="c1"))
    assert (failed.value.retry, failed.value.auth, failed.value.status) == (False, True, 401)


async def test_breaker_opens_after_repeated_server_errors(provider: GenesysProvider,
                                                          genesys: FakeGenesys) -> None:
    """Three 500s in a row open the account's breaker: the next call fails fast."""
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        genesys.fail_next("/typing", 500, times=3)
        for _ in range(3):
            with pytest.raises(EdgeCallFailed) as failed:
                await provider.send(session, SendTyping(conversation_id="c1"))
            assert failed.value.retry
            assert failed.value.status == 500
        before = len(genesys.requests)
        with pytest.raises(EdgeCallFailed) as failed:
            await provider.send(session, SendTyping(conversation_id="c1"))
    assert failed.value.retry
    assert "circuit open" in str(failed.value)
    assert len(genesys.requests) == before
    assert provider.http.breaker("genesys:org-1").open


async def test_stream_follows_the_agent(provider: GenesysProvider,
                                        genesys: FakeGenesys) -> None:
    """Join once, messages in order, own echo ignored, typing, leave ends the stream."""
    events = Events()
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        chat_id = session["conversationId"]
        async with trio.open_nursery() as nursery:
            done = await start_stream(nursery, provider, genesys, session, events)
            genesys.agent_joins(chat_id)
            first = genesys.agent_says(chat_id, "Hello, I am Gina")
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m1",
                                                     text="Hi Gina"))
            genesys.agent_types(chat_id)
            second = genesys.agent_says(chat_id, "How can I help?")
            await events.wait_for(lambda items: len(items) == 4)
            genesys.agent_leaves(chat_id)
            await done.wait()
    gina = AgentRef(id="agent-1", name="Gina")
    assert events.items == [
        AgentJoined(agent=gina, external_id="agent-1:joined"),
        EdgeMessage(external_id=first, author=gina, text="Hello, I am Gina"),
        EdgeTyping(agent=gina),
        EdgeMessage(external_id=second, author=gina, text="How can I help?"),
        AgentLeft(agent=gina, external_id="agent-1:left"),
        EdgeEnded(reason="agent disconnected", external_id=f"{chat_id}:ended")]


async def test_dropped_socket_reconnects_without_loss(provider: GenesysProvider,
                                                      genesys: FakeGenesys) -> None:
    """Messages said while the socket was down are fetched after reconnecting, once;
    a takeover stream replays them with the same external ids."""
    events, replay = Events(), Events()
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        chat_id = session["conversationId"]
        async with trio.open_nursery() as nursery:
            await start_stream(nursery, provider, genesys, session, events)
            genesys.agent_joins(chat_id)
            genesys.agent_says(chat_id, "one")
            await events.wait_for(lambda items: events.texts() == ["one"])
            genesys.drop_sockets(chat_id)
            genesys.agent_says(chat_id, "two")
            genesys.agent_says(chat_id, "three")
            await events.wait_for(lambda items: events.texts() == ["one", "two", "three"])
            await genesys.wait_connected(chat_id, 2)
            genesys.agent_says(chat_id, "four")
            await events.wait_for(lambda items: len(events.texts()) == 4)
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(provider.stream, session, replay.emit, replay.save))
            await replay.wait_for(lambda items: len(replay.texts()) == 4)
            nursery.cancel_scope.cancel()
    assert events.texts() == ["one", "two", "three", "four"]
    assert len(events.of(AgentJoined)) == 1
    assert [e.external_id for e in replay.items] == [e.external_id for e in events.items]


async def test_silent_socket_is_replaced(http: EdgeHttp) -> None:
    """Without frames for heartbeat_timeout the stream reconnects; heartbeats keep it."""
    async with open_fake_genesys(heartbeat_seconds=None) as fake:
        provider = GenesysProvider(http, backoff=FAST, heartbeat_timeout=0.3)
        with trio.fail_after(LIMIT):
            session = await opened(provider, fake)
            async with trio.open_nursery() as nursery:
                await start_stream(nursery, provider, fake, session, Events())
                await fake.wait_connected(session["conversationId"], 3)
                nursery.cancel_scope.cancel()
    async with open_fake_genesys(heartbeat_seconds=0.05) as fake:
        provider = GenesysProvider(http, backoff=FAST, heartbeat_timeout=0.3)
        with trio.fail_after(LIMIT):
            session = await opened(provider, fake)
            async with trio.open_nursery() as nursery:
                await start_stream(nursery, provider, fake, session, Events())
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()
        assert fake.connections(session["conversationId"]) == 1


async def test_refused_socket_is_permanent(provider: GenesysProvider,
                                           genesys: FakeGenesys) -> None:
    """A socket refused with 401 ends the stream with a non-retryable auth failure."""
    with trio.fail_after(LIMIT):
        session = await opened(provider, genesys)
        bad = session | {"eventStreamUri": session["eventStreamUri"] + "x"}
        with pytest.raises(EdgeCallFailed) as failed:
            await provider.stream(bad, Events().emit, Events().save)
    assert (failed.value.retry, failed.value.auth, failed.value.status) == (False, True, 401)
