"""Cisco CCX / Customer Collaboration Platform chat proxy (PROVIDERS.md 4.1) as a provider.

lcx plays the *customer*: :meth:`CiscoProvider.open` creates a chat on the tenant's chat
feed (``POST /ccp/rest/chat`` with a ``<SocialContact>``), :meth:`~CiscoProvider.stream`
polls its events (``GET /ccp/rest/chat?eventid=<last>&all=false``) and
:meth:`~CiscoProvider.send` puts messages, typing and the customer's leaving.

CCP knows a chat only by its **session cookie** (no chat id in any URL): the cookies live in
the session (JSON), so any instance can resume the chat after a takeover, and every call
carries them in an explicit ``Cookie`` header. The shared httpx client's cookie jar is
never relied on: its copies of CCP cookies are removed after each call and the explicit
header keeps it from adding any (see :func:`_forget_cookies`).

Parsing is pure (:func:`parse_events`, :class:`IssueWatch`); the poll loop only fetches,
emits and saves. Every call goes through :class:`~adapters.policy.EdgeHttp` with the
breaker account ``cisco:<api_url>``.

Session (stored as JSON, handed back to every call)::

    {"cookies": {name: value},        # the chat's session cookies (Set-Cookie of create)
     "location": str,                 # the social contact URL (Location of create)
     "apiUrl": str, "account": str,   # where, and the breaker account
     "author": str,                   # who lcx is in the chat (filters our own events)
     "eventId": int,                  # the cursor: the highest event id processed
     "pollSeconds": float,            # the tenant's poll interval
     "issue": {"detail", "polls"}}    # only while a chat_issue waits for chat_ok
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any, cast
from urllib.parse import unquote_plus, urlsplit

import defusedxml  # type: ignore[import-untyped]  # defusedxml ships no type stubs
import defusedxml.ElementTree  # type: ignore[import-untyped]  # (the same package)
import httpx
import msgspec
import trio

from adapters.edges import (
    AgentJoined,
    AgentLeft,
    AnyEdgeCommand,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EdgeEvent,
    EdgeMessage,
    EdgeTyping,
    Emit,
    EndSession,
    Save,
    SendMessage,
    SendTyping,
    Session,
)
from adapters.policy import EdgeHttp
from lcx.config import CiscoConfig, TenantConfig
from lcx.model import AgentRef, Attachment, Conversation

__all__ = ["CHAT_PATH", "DEFAULT_ISSUE_POLLS", "ChatStatus", "CiscoEvent", "CiscoProvider",
           "IssueWatch", "message_body", "parse_events", "social_contact"]

log = logging.getLogger("lcx.provider.cisco")

CHAT_PATH = "/ccp/rest/chat"
XML = "application/xml"
DEFAULT_ISSUE_POLLS = 6
"""Answered polls a ``chat_issue`` may stay without ``chat_ok`` before the chat is ended."""
LOST_STATUSES = frozenset({400, 404})
"""Poll answers that mean the session cookie is unknown or expired: the chat is gone."""


def account(api_url: str) -> str:
    """The circuit-breaker account of one CCP server."""
    return f"cisco:{api_url}"


class ChatStatus(EdgeEvent, frozen=True, kw_only=True):
    """A ``StatusEvent`` that does not end the chat (``chat_ok``, ``chat_issue``): consumed
    by :class:`IssueWatch`, never emitted."""

    status: str
    detail: str = ""


CiscoEvent = AnyEdgeEvent | ChatStatus
"""What :func:`parse_events` yields: normalized events, and the statuses the stream keeps."""


# -- XML, pure ------------------------------------------------------------------------


def _parse_xml(text: str, what: str) -> ET.Element:
    """Parse untrusted XML (no entities, no DTDs).

    Raises:
        EdgeCallFailed: malformed or forbidden XML (retryable: the next poll may be fine).
    """
    try:
        return cast(ET.Element, defusedxml.ElementTree.fromstring(text))
    except (ET.ParseError, defusedxml.DefusedXmlException) as exc:
        raise EdgeCallFailed(f"{what}: malformed XML: {exc}", retry=True) from exc


def _xml(root: str, children: dict[str, str]) -> str:
    element = ET.Element(root)
    for tag, value in children.items():
        ET.SubElement(element, tag).text = value
    return ET.tostring(element, encoding="unicode")


def social_contact(conversation: Conversation, config: CiscoConfig) -> str:
    """The ``<SocialContact>`` that creates the chat of one lcx conversation."""
    subscriber = conversation.subscriber
    element = ET.Element("SocialContact")
    ET.SubElement(element, "feedRefURL").text = config.feed_ref_url
    ET.SubElement(element, "author").text = _author(conversation)
    ET.SubElement(element, "title").text = f"lcx {conversation.id}"
    fields = ET.SubElement(element, "extensionFields")
    values = {"lcxConversationId": conversation.id}
    if subscriber.email:
        values["email"] = subscriber.email
    for name, value in values.items():
        field = ET.SubElement(fields, "extensionField")
        ET.SubElement(field, "name").text = name
        ET.SubElement(field, "value").text = value
    return ET.tostring(element, encoding="unicode")


def message_body(text: str | None, attachments: tuple[Attachment, ...] = ()) -> str:
    """The text of one ``<Message>``: the text, then one line per attachment URL."""
    lines = [text] if text else []
    lines += [f"{a.name}: {a.url}" if a.name else a.url for a in attachments]
    return "\n".join(lines).strip()


def _author(conversation: Conversation) -> str:
    return conversation.subscriber.name or conversation.sub_handle


def _text(element: ET.Element, tag: str) -> str:
    return (element.findtext(tag) or "").strip()


def _event_id(element: ET.Element) -> int | None:
    try:
        return int(_text(element, "id"))
    except ValueError:
        return None


def _status_event(external_id: str, status: str, detail: str) -> CiscoEvent | None:
    if status == "chat_finished":
        return EdgeEnded(external_id=external_id, reason="chat finished")
    if status == "chat_finished_error":
        reason = f"chat error: {detail}" if detail else "chat error"
        return EdgeEnded(external_id=external_id, reason=reason)
    if status in ("chat_ok", "chat_issue"):
        return ChatStatus(external_id=external_id, status=status, detail=detail)
    return None


def _event(element: ET.Element, event_id: int, customer: str | None) -> CiscoEvent | None:
    external_id, sender = f"cisco:{event_id}", _text(element, "from")
    status = _text(element, "status")
    if element.tag == "StatusEvent":
        return _status_event(external_id, status, _text(element, "detail"))
    if customer is not None and sender == customer:
        return None  # our own message, presence or typing echoed back
    agent = AgentRef(id=sender, name=sender or None)
    match element.tag, status:
        case "MessageEvent", _:
            return EdgeMessage(external_id=external_id, author=agent,
                               text=unquote_plus(element.findtext("body") or ""))
        case "PresenceEvent", "joined":
            return AgentJoined(external_id=external_id, agent=agent)
        case "PresenceEvent", "left":
            return AgentLeft(external_id=external_id, agent=agent)
        case "TypingEvent", "composing" | "paused":
            return EdgeTyping(external_id=external_id, agent=agent,
                              typing=status == "composing")
    return None


def parse_events(xml: str, last_event_id: int, *, customer: str | None = None
                 ) -> tuple[list[CiscoEvent], int]:
    """The events of a ``<ChatEvents>`` document newer than ``last_event_id``, in id order,
    and the new cursor (the highest id seen, at least ``last_event_id``).

    Messages, presence and typing from ``customer`` (lcx itself) are dropped, as are
    unknown event kinds and events without a numeric id. ``chat_finished`` and
    ``chat_finished_error`` become :class:`EdgeEnded`; ``chat_ok`` and ``chat_issue``
    become :class:`ChatStatus`. Pure.

    Raises:
        EdgeCallFailed: the document is not well-formed XML (retryable).
    """
    root = _parse_xml(xml, "cisco events")
    numbered = [(event_id, element) for element in root
                if (event_id := _event_id(element)) is not None and event_id > last_event_id]
    numbered.sort(key=lambda pair: pair[0])
    events = [event for event_id, element in numbered
              if (event := _event(element, event_id, customer)) is not None]
    return events, max([last_event_id] + [event_id for event_id, _ in numbered])


@dataclass
class IssueWatch:
    """Ends a chat whose ``chat_issue`` is not followed by ``chat_ok`` within ``limit``
    answered polls. Pure: fed each answered poll's statuses, in order."""

    limit: int = DEFAULT_ISSUE_POLLS
    detail: str | None = None
    polls: int = 0

    def answered(self, statuses: list[ChatStatus]) -> EdgeEnded | None:
        """Record one answered poll; the end it causes, if the issue has lasted too long."""
        pending = self.detail is not None
        for status in statuses:
            if status.status == "chat_ok":
                self.detail, self.polls, pending = None, 0, False
            else:
                self.detail = status.detail or self.detail or "unknown"
        if self.detail is None or not pending:
            return None
        self.polls += 1
        if self.polls < self.limit:
            return None
        return EdgeEnded(reason=f"chat issue: {self.detail}")

    def state(self) -> dict[str, Any] | None:
        """What the session keeps of it (None: no issue pending)."""
        return None if self.detail is None else {"detail": self.detail, "polls": self.polls}

    @classmethod
    def restore(cls, state: Any, limit: int) -> IssueWatch:
        """The watch a session kept (see :meth:`state`)."""
        if not isinstance(state, dict):
            return cls(limit)
        return cls(limit, str(state.get("detail") or "unknown"), int(state.get("polls", 0)))


# -- the session ----------------------------------------------------------------------


class ChatSession(msgspec.Struct, kw_only=True, rename="camel"):
    """The stored session, typed (see the module docstring)."""

    cookies: dict[str, str]
    location: str
    api_url: str
    account: str
    author: str
    event_id: int = 0
    poll_seconds: float = 5.0


def _session(session: Session) -> ChatSession:
    try:
        return msgspec.convert(session, ChatSession, strict=False)
    except msgspec.ValidationError as exc:
        raise EdgeCallFailed(f"cisco session is incomplete: {exc}", retry=False) from exc


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            log.warning("cisco: unparsable Set-Cookie ignored")
            continue
        cookies |= {name: morsel.value for name, morsel in jar.items()}
    return cookies


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _forget_cookies(client: httpx.AsyncClient, url: str) -> None:
    """Drop what the shared client stored of the CCP host's cookies (httpx keeps every
    Set-Cookie): a chat's cookies must never reach another chat. No call relies on them."""
    host = urlsplit(url).hostname or ""
    jar = client.cookies.jar
    for cookie in list(jar):
        if cookie.domain.lstrip(".") in (host, f"{host}.local"):
            jar.clear(cookie.domain, cookie.path, cookie.name)


# -- the provider ---------------------------------------------------------------------


class CiscoProvider:
    """The ``cisco`` provider (see the module docstring).

    ``http`` (and its httpx client) belongs to the caller. ``issue_polls``: answered polls
    a ``chat_issue`` may last before the chat is ended.
    """

    name = "cisco"

    def __init__(self, http: EdgeHttp, *, issue_polls: int = DEFAULT_ISSUE_POLLS) -> None:
        self.http = http
        self.issue_polls = issue_polls

    async def _call(self, chat: ChatSession | None, api_url: str, method: str, path: str,
                    *, what: str, body: str | None = None) -> httpx.Response:
        """One CCP call with the chat's cookies in an explicit ``Cookie`` header (empty for
        create), which keeps the shared client's jar from adding any."""
        headers = {"Cookie": _cookie_header(chat.cookies) if chat else "", "Accept": XML}
        if body is not None:
            headers["Content-Type"] = XML
        url = api_url + CHAT_PATH + path
        try:
            return await self.http.request(account(api_url), method, url, what=what,
                                           headers=headers, content=body)
        finally:
            _forget_cookies(self.http.client, url)

    async def open(self, conversation: Conversation, tenant: TenantConfig) -> Session:
        """Create the chat (``POST /ccp/rest/chat``); its session (cookies, contact URL,
        cursor 0). Not idempotent: each call creates another chat.

        Raises:
            EdgeCallFailed: no ``cisco`` config or no session cookie in the answer (not
                retryable), or the call failed (classified).
        """
        config = _cisco(tenant)
        response = await self._call(None, config.api_url, "POST", "", what="cisco create chat",
                                    body=social_contact(conversation, config))
        cookies = _set_cookies(response)
        if not cookies:
            raise EdgeCallFailed("cisco create chat: no session cookie", retry=False,
                                 status=response.status_code)
        return {"cookies": cookies, "location": response.headers.get("location", ""),
                "apiUrl": config.api_url, "account": account(config.api_url),
                "author": _author(conversation), "eventId": 0,
                "pollSeconds": config.poll_interval_seconds}

    async def stream(self, session: Session, emit: Emit, save: Save) -> None:
        """Poll the chat's events every ``pollSeconds`` until it ends (returns after
        emitting the :class:`EdgeEnded`). A failed or malformed poll waits for the next
        interval: a provider that is down costs one call per interval (or none while the
        breaker is open). After each batch the cursor (``eventId``) is saved; a session
        CCP no longer knows (400/404) emits ``EdgeEnded("chat session lost")``.

        Raises:
            EdgeCallFailed: credentials refused (401/403) or another non-retryable answer.
        """
        chat = _session(session)
        watch = IssueWatch.restore(session.get("issue"), self.issue_polls)
        while True:
            deadline = trio.current_time() + chat.poll_seconds
            try:
                events, cursor = await self._poll(chat)
            except EdgeCallFailed as exc:
                if exc.retry:
                    log.info("cisco poll failed", extra={"error": str(exc)})
                elif exc.status in LOST_STATUSES:
                    await emit(EdgeEnded(reason="chat session lost"))
                    return
                else:
                    raise
            else:
                if await self._apply(session, chat, events, cursor, watch, emit, save):
                    return
            await trio.sleep_until(deadline)

    async def _poll(self, chat: ChatSession) -> tuple[list[CiscoEvent], int]:
        response = await self._call(chat, chat.api_url, "GET",
                                    f"?eventid={chat.event_id}&all=false",
                                    what="cisco get events")
        return parse_events(response.text, chat.event_id, customer=chat.author)

    async def _apply(self, session: Session, chat: ChatSession, events: list[CiscoEvent],
                     cursor: int, watch: IssueWatch, emit: Emit, save: Save) -> bool:
        """Emit one batch, move and save the cursor; whether the chat ended."""
        before = watch.state()
        statuses = [e for e in events if isinstance(e, ChatStatus)]
        emitted = [e for e in events if not isinstance(e, ChatStatus)]
        ending = next((e for e in emitted if isinstance(e, EdgeEnded)), None)
        if ending is not None:
            emitted = emitted[:emitted.index(ending) + 1]
        elif (ending := watch.answered(statuses)) is not None:
            emitted.append(ending)
        for event in emitted:
            await emit(event)
        if cursor != chat.event_id or watch.state() != before:
            chat.event_id = session["eventId"] = cursor
            session.pop("issue", None)
            if (state := watch.state()) is not None:
                session["issue"] = state
            await save(session)
        return ending is not None

    async def send(self, session: Session, command: AnyEdgeCommand) -> None:
        """Put a message (text, then attachment URLs; nothing when both are empty), a
        typing state (``composing``/``paused``) or the customer's leaving. Leaving a chat
        whose session is already gone (400) succeeds.

        Raises:
            EdgeCallFailed: with its retry classification.
        """
        chat = _session(session)
        match command:
            case SendMessage():
                body = message_body(command.text, command.attachments)
                if body:
                    await self._call(chat, chat.api_url, "PUT", "", what="cisco send message",
                                     body=_xml("Message", {"body": body}))
            case SendTyping():
                status = "composing" if command.typing else "paused"
                await self._call(chat, chat.api_url, "PUT", "/event", what="cisco send typing",
                                 body=_xml("TypingEvent", {"from": chat.author,
                                                           "status": status}))
            case EndSession():
                await self._leave(chat, command.conversation_id)

    async def _leave(self, chat: ChatSession, conversation_id: str) -> None:
        try:
            await self._call(chat, chat.api_url, "PUT", "/leaveChat", what="cisco leave chat")
        except EdgeCallFailed as exc:
            if exc.status != 400:
                raise
            log.info("cisco chat already gone", extra={"conversationId": conversation_id})


def _cisco(tenant: TenantConfig) -> CiscoConfig:
    if tenant.cisco is None or not tenant.cisco.api_url:
        raise EdgeCallFailed(f"tenant {tenant.id!r} has no [cisco] config", retry=False)
    return tenant.cisco
