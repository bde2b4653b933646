"""The Cisco CCP provider: its pure event parsing, and the adapter against the fake CCP
(real HTTP on 127.0.0.1, small real poll intervals)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import trio

from adapters.cisco import ChatStatus, CiscoProvider, IssueWatch, parse_events
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
from adapters.policy import EdgeHttp
from lcx.model import AgentRef, Attachment, Context, Conversation, Subscriber
from tests.fakes.cisco import FakeCcp, open_fake_ccp

LIMIT = 10.0
"""Absolute bound of every I/O test."""
POLL = 0.05


def conversation(name: str | None = "Ada") -> Conversation:
    return Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1",
                        sub_handle="u-1", user_group_id="g1", provider="cisco",
                        channel="bot", status="pending",
                        subscriber=Subscriber(name=name, email="ada@example.com"),
                        context=Context(), participants=[], flags={},
                        created_at="2026-11-22T00:00:00.000Z",
                        queued_at="2026-11-22T00:00:00.000Z",
                        last_activity_at="2026-11-22T00:00:00.000Z")


def doc(*events: str) -> str:
    return "<ChatEvents>" + "".join(events) + "</ChatEvents>"


# -- parse_events (pure) --------------------------------------------------------------


def test_message_body_is_url_decoded() -> None:
    """A MessageEvent becomes an EdgeMessage with its URL-decoded body and the agent."""
    events, cursor = parse_events(doc(
        "<MessageEvent><id>3</id><from>Carl</from><body>Hi+there%21+%26+%3Cb%3E</body>"
        "</MessageEvent>"), 0)
    assert events == [EdgeMessage(external_id="cisco:3", author=AgentRef(id="Carl",
                                                                         name="Carl"),
                                  text="Hi there! & <b>")]
    assert cursor == 3


def test_presence_and_typing() -> None:
    """Agent presence and typing map to joined/left and typing on/off; the customer's own
    presence is dropped."""
    events, _ = parse_events(doc(
        "<PresenceEvent><id>1</id><from>Ada</from><status>joined</status></PresenceEvent>",
        "<PresenceEvent><id>2</id><from>Carl</from><status>joined</status></PresenceEvent>",
        "<TypingEvent><id>4</id><from>Carl</from><status>composing</status></TypingEvent>",
        "<TypingEvent><id>5</id><from>Carl</from><status>paused</status></TypingEvent>",
        "<PresenceEvent><id>7</id><from>Carl</from><status>left</status></PresenceEvent>"),
        0, customer="Ada")
    carl = AgentRef(id="Carl", name="Carl")
    assert events == [AgentJoined(external_id="cisco:2", agent=carl),
                      EdgeTyping(external_id="cisco:4", agent=carl, typing=True),
                      EdgeTyping(external_id="cisco:5", agent=carl, typing=False),
                      AgentLeft(external_id="cisco:7", agent=carl)]


@pytest.mark.parametrize(("status", "detail", "expected"), [
    ("chat_finished", "", EdgeEnded(external_id="cisco:9", reason="chat finished")),
    ("chat_finished_error", "agent crashed",
     EdgeEnded(external_id="cisco:9", reason="chat error: agent crashed")),
    ("chat_issue", "XMPP Server is down",
     ChatStatus(external_id="cisco:9", status="chat_issue", detail="XMPP Server is down")),
    ("chat_ok", "", ChatStatus(external_id="cisco:9", status="chat_ok")),
])
def test_status_variants(status: str, detail: str, expected: object) -> None:
    """Finished statuses end the chat; ok/issue become statuses for the issue watch."""
    events, _ = parse_events(doc(f"<StatusEvent><id>9</id><status>{status}</status>"
                                 f"<detail>{detail}</detail></StatusEvent>"), 0)
    assert events == [expected]


def test_gappy_ids_sorted_and_old_ids_ignored() -> None:
    """Events at or below the cursor are dropped, the rest sorted by id; the cursor is the
    highest id seen, and stays put on an empty document."""
    events, cursor = parse_events(doc(
        "<MessageEvent><id>12</id><from>Carl</from><body>b</body></MessageEvent>",
        "<MessageEvent><id>5</id><from>Carl</from><body>old</body></MessageEvent>",
        "<MessageEvent><id>9</id><from>Carl</from><body>a</body></MessageEvent>",
        "<WeirdEvent><id>15</id></WeirdEvent>",
        "<MessageEvent><id>x</id><from>Carl</from><body>no id</body></MessageEvent>"), 5)
    assert [e.text for e in events if isinstance(e, EdgeMessage)] == ["a", "b"]
    assert cursor == 15
    assert parse_events(doc(), 15) == ([], 15)


def test_malformed_and_hostile_xml_is_retryable() -> None:
    """Broken XML and entity declarations are refused as a retryable failure."""
    for text in ("<ChatEvents>", '<!DOCTYPE x [<!ENTITY a "b">]><ChatEvents>&a;</ChatEvents>'):
        with pytest.raises(EdgeCallFailed) as failed:
            parse_events(text, 0)
        assert failed.value.retry


def test_issue_watch() -> None:
    """An issue ends the chat after ``limit`` answered polls without chat_ok; ok clears it."""
    issue = ChatStatus(status="chat_issue", detail="XMPP down")
    ok = ChatStatus(status="chat_ok")
    watch = IssueWatch(limit=2)
    assert watch.answered([issue]) is None
    assert watch.answered([]) is None
    assert watch.answered([ok]) is None
    assert watch.state() is None
    assert watch.answered([issue]) is None
    assert watch.answered([]) is None
    assert watch.answered([]) == EdgeEnded(reason="chat issue: XMPP down")


# -- against the fake -----------------------------------------------------------------


class Events:
    """What a stream emitted, in order, and the sessions it saved."""

    def __init__(self) -> None:
        self.items: list[AnyEdgeEvent] = []
        self.saved: list[Session] = []
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def emit(self, event: AnyEdgeEvent) -> None:
        self.items.append(event)
        self._notify()

    async def save(self, session: Session) -> None:
        self.saved.append(dict(session))
        self._notify()

    async def wait_for(self, predicate: Callable[[Events], bool]) -> None:
        with trio.fail_after(5):
            while not predicate(self):
                await self._changed.wait()

    def texts(self) -> list[str | None]:
        return [e.text for e in self.items if isinstance(e, EdgeMessage)]


@pytest.fixture
async def ccp() -> AsyncIterator[FakeCcp]:
    async with open_fake_ccp() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[EdgeHttp]:
    async with httpx.AsyncClient() as client:
        yield EdgeHttp(client, timeout=5.0, breaker_failures=100, breaker_cooldown=30.0)


@pytest.fixture
def provider(http: EdgeHttp) -> CiscoProvider:
    return CiscoProvider(http, issue_polls=3)


def chat_id(session: Session) -> str:
    return str(session["location"]).rsplit("/", 1)[1]


async def opened(provider: CiscoProvider, ccp: FakeCcp) -> tuple[Session, str]:
    session = await provider.open(conversation(), ccp.tenant())
    return session, chat_id(session)


async def run_stream(nursery: trio.Nursery, provider: CiscoProvider, session: Session,
                     events: Events) -> trio.Event:
    """Start ``stream``; the returned event is set when it returns."""
    done = trio.Event()

    async def follow() -> None:
        await provider.stream(session, events.emit, events.save)
        done.set()

    nursery.start_soon(follow)
    return done


async def test_open_body_and_cookie_session(provider: CiscoProvider, ccp: FakeCcp,
                                            http: EdgeHttp) -> None:
    """open posts a SocialContact and keeps the session cookie and Location in the
    session; the shared client's jar keeps no copy."""
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
    contact = ccp.chats[chat].contact
    assert contact["author"] == "Ada"
    assert contact["title"] == "lcx c1"
    assert contact["feedRefURL"].endswith("/ccp-webapp/ccp/feed/100000")
    assert contact["extensionFields"] == {"lcxConversationId": "c1", "email": "ada@example.com"}
    assert session["cookies"] == {"JSESSIONID": ccp.chats[chat].cookie}
    assert session["location"] == f"{ccp.base_url}/ccp-webapp/ccp/socialcontact/{chat}"
    assert session["eventId"] == 0
    assert session["pollSeconds"] == POLL
    assert session["account"] == f"cisco:{ccp.base_url}"
    assert len(http.client.cookies.jar) == 0


async def test_two_chats_never_share_cookies(provider: CiscoProvider, ccp: FakeCcp,
                                             http: EdgeHttp) -> None:
    """Each chat's calls carry only its own cookie; creates carry none, even when the
    shared client's jar holds one for the host."""
    with trio.fail_after(LIMIT):
        first, _ = await opened(provider, ccp)
        http.client.cookies.set("JSESSIONID", first["cookies"]["JSESSIONID"],
                                domain="127.0.0.1")
        second, _ = await opened(provider, ccp)
        await provider.send(first, SendTyping(conversation_id="c1"))
    creates = [cookie for method, _, cookie in ccp.requests if method == "POST"]
    assert creates == ["", ""]
    assert ccp.requests[-1][2] == f"JSESSIONID={first['cookies']['JSESSIONID']}"
    assert first["cookies"] != second["cookies"]


async def test_stream_emits_in_order_and_saves_cursor(provider: CiscoProvider,
                                                      ccp: FakeCcp) -> None:
    """Joined, messages and typing arrive in order; the customer's own presence is
    dropped; the cursor is saved after each batch; chat_finished ends the stream."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, provider, session, events)
            await events.wait_for(lambda e: len(e.saved) >= 1)  # the customer's join
            ccp.agent_joins(chat, "Carl")
            ccp.agent_says(chat, "Hello & welcome, 100% sure?")
            await events.wait_for(lambda e: len(e.items) >= 2)
            ccp.agent_types(chat, composing=True)
            ccp.agent_types(chat, composing=False)
            ccp.finish(chat)
            await done.wait()
    carl = AgentRef(id="Carl", name="Carl")
    kinds = [(type(e).__name__, getattr(e, "typing", None)) for e in events.items]
    assert kinds == [("AgentJoined", None), ("EdgeMessage", None), ("EdgeTyping", True),
                     ("EdgeTyping", False), ("EdgeEnded", None)]
    assert events.items[0] == AgentJoined(external_id=events.items[0].external_id, agent=carl)
    assert events.texts() == ["Hello & welcome, 100% sure?"]
    cursors = [s["eventId"] for s in events.saved]
    assert cursors == sorted(set(cursors))
    assert cursors[-1] == int(ccp.chats[chat].events[-1]["id"]) == session["eventId"]


async def test_resume_from_saved_session(provider: CiscoProvider, ccp: FakeCcp,
                                         http: EdgeHttp) -> None:
    """A second stream (another instance after a takeover) resumes from the saved session
    and emits only the new events."""
    first, second = Events(), Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.agent_joins(chat)
        ccp.agent_says(chat, "one")
        async with trio.open_nursery() as nursery:
            await run_stream(nursery, provider, session, first)
            await first.wait_for(lambda e: e.texts() == ["one"] and bool(e.saved))
            nursery.cancel_scope.cancel()
        saved = dict(first.saved[-1])
        ccp.agent_says(chat, "two")
        ccp.finish(chat)
        other = CiscoProvider(http)
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, other, saved, second)
            await done.wait()
    assert second.texts() == ["two"]
    assert not any(isinstance(e, AgentJoined) for e in second.items)


async def test_issue_then_ok_does_not_end(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """chat_issue followed by chat_ok within the allowed polls keeps the chat going."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, provider, session, events)
            ccp.issue(chat)
            await events.wait_for(lambda e: any("issue" in s for s in e.saved))
            ccp.ok(chat)
            await events.wait_for(lambda e: "issue" not in e.saved[-1])
            polls = ccp.polls(chat)
            await ccp.wait_until(lambda: ccp.polls(chat) >= polls + 5)
            assert not done.is_set()
            ccp.finish(chat)
            await done.wait()
    assert [e.reason for e in events.items if isinstance(e, EdgeEnded)] == ["chat finished"]


async def test_issue_without_ok_ends(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """chat_issue without chat_ok within ``issue_polls`` polls ends the chat."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.issue(chat, "XMPP Server is down")
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, provider, session, events)
            await done.wait()
    assert events.items[-1] == EdgeEnded(reason="chat issue: XMPP Server is down")
    assert session["issue"] == {"detail": "XMPP Server is down", "polls": 3}


async def test_finished_error_ends_with_reason(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """chat_finished_error ends the stream with the detail in the reason."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.finish(chat, error="agent desktop crashed")
        ccp.agent_says(chat, "after the end")
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, provider, session, events)
            await done.wait()
    assert [type(e) for e in events.items] == [EdgeEnded]
    assert events.items[0] == EdgeEnded(external_id=events.items[0].external_id,
                                        reason="chat error: agent desktop crashed")


async def test_down_polls_once_per_interval_and_recovers(provider: CiscoProvider,
                                                         ccp: FakeCcp) -> None:
    """While CCP answers 503 the stream polls at most once per interval, then picks up
    the events queued meanwhile."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.down(True)
        async with trio.open_nursery() as nursery:
            done = await run_stream(nursery, provider, session, events)
            start, before = trio.current_time(), ccp.polls(chat)
            await trio.sleep(10 * POLL)
            during, elapsed = ccp.polls(chat) - before, trio.current_time() - start
            ccp.agent_says(chat, "back")
            ccp.down(False)
            await events.wait_for(lambda e: e.texts() == ["back"])
            ccp.finish(chat)
            await done.wait()
    assert 1 <= during <= elapsed / POLL + 1


async def test_lost_session_ends_stream(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """A poll answered 400 (session unknown or expired) ends with "chat session lost"."""
    events = Events()
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.expire(chat)
        await provider.stream(session, events.emit, events.save)
    assert events.items == [EdgeEnded(reason="chat session lost")]


async def test_send_message_typing_and_leave(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """Messages (escaped text then attachment URLs), typing composing/paused and leaving
    reach CCP with the chat's cookie; leaving twice succeeds."""
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        await provider.send(session, SendMessage(
            conversation_id="c1", message_id="m1", text="a < b & c",
            attachments=(Attachment(url="https://f.example/x.pdf", name="x.pdf"),)))
        await provider.send(session, SendMessage(conversation_id="c1", message_id="m2"))
        await provider.send(session, SendTyping(conversation_id="c1", typing=True))
        await provider.send(session, SendTyping(conversation_id="c1", typing=False))
        await provider.send(session, EndSession(conversation_id="c1"))
        await provider.send(session, EndSession(conversation_id="c1"))
    assert ccp.customer_messages(chat) == ["a < b & c\nx.pdf: https://f.example/x.pdf"]
    assert ccp.typing(chat) == ["composing", "paused"]
    assert ccp.left(chat)


async def test_leave_on_expired_session_succeeds(provider: CiscoProvider,
                                                 ccp: FakeCcp) -> None:
    """Leaving a chat whose session CCP already dropped (400) counts as done."""
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.expire(chat)
        await provider.send(session, EndSession(conversation_id="c1"))


async def test_send_classifies_failures(provider: CiscoProvider, ccp: FakeCcp) -> None:
    """A message to a down CCP is retryable; to an expired session it is not."""
    with trio.fail_after(LIMIT):
        session, chat = await opened(provider, ccp)
        ccp.down(True)
        with pytest.raises(EdgeCallFailed) as down:
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m",
                                                     text="x"))
        ccp.down(False)
        ccp.expire(chat)
        with pytest.raises(EdgeCallFailed) as gone:
            await provider.send(session, SendMessage(conversation_id="c1", message_id="m",
                                                     text="x"))
    assert down.value.retry
    assert not gone.value.retry


async def test_fake_typing_validation(ccp: FakeCcp, provider: CiscoProvider) -> None:
    """The fake answers 400 to a typing status other than composing/paused."""
    with trio.fail_after(LIMIT):
        session, _ = await opened(provider, ccp)
        async with httpx.AsyncClient() as client:
            answer = await client.put(
                f"{ccp.base_url}/ccp/rest/chat/event",
                content="<TypingEvent><from>Ada</from><status>typing</status></TypingEvent>",
                headers={"Cookie": f"JSESSIONID={session['cookies']['JSESSIONID']}",
                         "Content-Type": "application/xml"})
    assert answer.status_code == 400
