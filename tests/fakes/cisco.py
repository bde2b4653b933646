"""A fake Cisco CCP chat proxy (PROVIDERS.md 4.1): a real HTTP server speaking its XML chat
API, where a chat is known only by its session cookie.

In-process (Trio tests)::

    async with open_fake_ccp() as ccp:
        tenant = ccp.tenant(poll_interval_seconds=0.05)   # TenantConfig pointing at it
        ...                                               # create a chat, poll it
        ccp.agent_joins(chat_id, "Carl")
        ccp.agent_says(chat_id, "Hi & welcome")           # URL-encoded body on the wire
        ccp.issue(chat_id, "XMPP Server is down"); ccp.ok(chat_id)
        ccp.down(True)                                    # 503 to everything

Scripting is synchronous: each call queues one event with the next (gappy) id. A chat is
identified by the id at the end of its ``Location``; :attr:`FakeCcp.chats` holds them by
id and :attr:`FakeCcp.sessions` maps cookie values to ids.
"""

from __future__ import annotations

import itertools
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote_plus

import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.config import CiscoConfig, TenantConfig

CHAT = "/ccp/rest/chat"
COOKIE = "JSESSIONID"
TYPING_STATUSES = ("composing", "paused")


@dataclass
class FakeChat:
    """One chat: the create request, the event queue, what the customer did."""

    id: str
    cookie: str
    author: str
    contact: dict[str, Any]
    events: list[dict[str, str]] = field(default_factory=list)
    customer_messages: list[str] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)
    left: bool = False
    polls: int = 0


def _xml(root: str, children: dict[str, str]) -> str:
    element = ET.Element(root)
    for tag, value in children.items():
        ET.SubElement(element, tag).text = value
    return ET.tostring(element, encoding="unicode")


def _response(body: str, status: int = 200, **headers: str) -> Response:
    return Response(body, status=status, headers=headers, content_type="application/xml")


def _error(status: int, message: str) -> Response:
    return _response(_xml("apiErrors", {"apiError": message}), status)


class FakeCcp:
    """The fake's state, scripting and inspection API, and its app (:meth:`app`)."""

    def __init__(self) -> None:
        self.base_url = ""
        self.chats: dict[str, FakeChat] = {}
        self.sessions: dict[str, str] = {}
        """Chat id by session cookie value (an expired session is removed)."""
        self.requests: list[tuple[str, str, str]] = []
        """``(method, path, Cookie header)`` of every request, in order."""
        self.is_down = False
        self._ids = itertools.count(1)
        self._gaps = itertools.cycle((1, 3, 2))
        self._next_event = 0
        self._changed = trio.Event()

    # -- configuration for the code under test ------------------------------------------

    def tenant(self, tenant_id: str = "t1", **overrides: Any) -> TenantConfig:
        """A tenant with ``provider = "cisco"`` pointing at the fake."""
        values: dict[str, Any] = {"api_url": self.base_url,
                                  "feed_ref_url": f"{self.base_url}/ccp-webapp/ccp/feed/100000",
                                  "poll_interval_seconds": 0.05}
        return TenantConfig(id=tenant_id, organization_id="o1", provider="cisco",
                            cisco=CiscoConfig(**(values | overrides)))

    # -- scripting ---------------------------------------------------------------------

    def agent_joins(self, chat_id: str, name: str = "Carl") -> None:
        """``PresenceEvent`` joined from the agent."""
        self._event(chat_id, "PresenceEvent", **{"from": name, "status": "joined"})

    def agent_leaves(self, chat_id: str, name: str = "Carl") -> None:
        """``PresenceEvent`` left from the agent."""
        self._event(chat_id, "PresenceEvent", **{"from": name, "status": "left"})

    def agent_says(self, chat_id: str, text: str, name: str = "Carl") -> None:
        """``MessageEvent`` from the agent, its body URL-encoded (as CCP sends it)."""
        self._event(chat_id, "MessageEvent", **{"from": name, "body": quote_plus(text)})

    def agent_types(self, chat_id: str, composing: bool = True, name: str = "Carl") -> None:
        """``TypingEvent`` composing (or paused) from the agent."""
        self._event(chat_id, "TypingEvent",
                    **{"from": name, "status": "composing" if composing else "paused"})

    def issue(self, chat_id: str, detail: str = "XMPP Server is down") -> None:
        """``StatusEvent`` chat_issue."""
        self._event(chat_id, "StatusEvent", status="chat_issue", detail=detail)

    def ok(self, chat_id: str) -> None:
        """``StatusEvent`` chat_ok."""
        self._event(chat_id, "StatusEvent", status="chat_ok", detail="")

    def finish(self, chat_id: str, error: str | None = None) -> None:
        """``StatusEvent`` chat_finished (or chat_finished_error with ``error``)."""
        status = "chat_finished" if error is None else "chat_finished_error"
        self._event(chat_id, "StatusEvent", status=status, detail=error or "")

    def expire(self, chat_id: str) -> None:
        """Forget the chat's session: its cookie gets 400 from now on."""
        self.sessions.pop(self.chats[chat_id].cookie, None)
        self._notify()

    def down(self, value: bool = True) -> None:
        """Answer 503 to every request (True) or serve again (False)."""
        self.is_down = value
        self._notify()

    # -- inspection --------------------------------------------------------------------

    def customer_messages(self, chat_id: str) -> list[str]:
        """The bodies the customer put, in order."""
        return list(self.chats[chat_id].customer_messages)

    def typing(self, chat_id: str) -> list[str]:
        """The typing statuses the customer put, in order."""
        return list(self.chats[chat_id].typing)

    def left(self, chat_id: str) -> bool:
        """Whether the customer left the chat."""
        return self.chats[chat_id].left

    def polls(self, chat_id: str) -> int:
        """How many ``GET`` polls came with the chat's cookie (answered or not)."""
        return self.chats[chat_id].polls

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked on every change of the fake)."""
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    # -- internals ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _event(self, chat_id: str, kind: str, **fields: str) -> None:
        self._next_event += next(self._gaps)
        self.chats[chat_id].events.append({"kind": kind, "id": str(self._next_event),
                                           **fields})
        self._notify()

    def _create(self, contact: dict[str, Any]) -> FakeChat:
        chat_id = str(next(self._ids) + 10_000)
        chat = FakeChat(id=chat_id, cookie=secrets.token_hex(16), author=contact["author"],
                        contact=contact)
        self.chats[chat_id] = chat
        self.sessions[chat.cookie] = chat_id
        self._event(chat_id, "PresenceEvent", **{"from": chat.author, "status": "joined"})
        return chat

    def _chat(self) -> FakeChat | None:
        chat_id = self.sessions.get(request.cookies.get(COOKIE, ""))
        return None if chat_id is None else self.chats[chat_id]

    def app(self) -> QuartTrio:
        """The quart-trio app serving this fake."""
        app = QuartTrio("fake_ccp")
        _routes(self, app)
        return app


def _contact(body: bytes) -> dict[str, Any] | None:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if root.tag != "SocialContact":
        return None
    contact: dict[str, Any] = {child.tag: (child.text or "") for child in root
                               if child.tag != "extensionFields"}
    contact["extensionFields"] = {
        f.findtext("name", ""): f.findtext("value", "")
        for f in root.iterfind("extensionFields/extensionField")}
    if not all(contact.get(name) for name in ("feedRefURL", "author", "title")):
        return None
    return contact


def _created(fake: FakeCcp, chat: FakeChat) -> Response:
    root = ET.Element("SocialContact")
    ET.SubElement(root, "id").text = chat.id
    ET.SubElement(root, "author").text = chat.author
    fields = ET.SubElement(root, "extensionFields")
    for name, value in chat.contact["extensionFields"].items() | {
            ("chatRoom", f"chat{chat.id}@conference.ccp.example")}:
        field_ = ET.SubElement(fields, "extensionField")
        ET.SubElement(field_, "name").text = name
        ET.SubElement(field_, "value").text = value
    response = _response(ET.tostring(root, encoding="unicode"), 201, Location=(
        f"{fake.base_url}/ccp-webapp/ccp/socialcontact/{chat.id}"))
    response.set_cookie(COOKIE, chat.cookie, path="/ccp", httponly=True)
    return response


def _events(chat: FakeChat, after: int, everything: bool) -> Response:
    root = ET.Element("ChatEvents")
    for event in chat.events:
        if int(event["id"]) <= after:
            continue
        if (event["kind"] == "MessageEvent" and event.get("from") == chat.author
                and not everything):
            continue
        element = ET.SubElement(root, event["kind"])
        for tag, value in event.items():
            if tag != "kind":
                ET.SubElement(element, tag).text = value
    return _response(ET.tostring(root, encoding="unicode"))


def _put_body(body: bytes, root_tag: str) -> ET.Element | None:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    return root if root.tag == root_tag else None


def _routes(fake: FakeCcp, app: QuartTrio) -> None:
    @app.before_request
    async def record() -> Response | None:
        fake.requests.append((request.method, request.path, request.headers.get("Cookie", "")))
        chat = fake._chat()
        if request.method == "GET" and chat is not None:
            chat.polls += 1
        fake._notify()
        return _error(503, "Service Unavailable") if fake.is_down else None

    @app.post(CHAT)
    async def create() -> Response:
        contact = _contact(await request.get_data())
        if contact is None:
            return _error(400, "feedRefURL, author and title are required")
        return _created(fake, fake._create(contact))

    @app.get(CHAT)
    async def events() -> Response:
        chat = fake._chat()
        if chat is None:
            return _error(400, "no chat session")
        try:
            after = int(request.args.get("eventid", "0"))
        except ValueError:
            return _error(400, "eventid must be a number")
        return _events(chat, after, request.args.get("all", "false") == "true")

    @app.put(CHAT)
    async def message() -> Response:
        chat = fake._chat()
        root = _put_body(await request.get_data(), "Message")
        if chat is None or chat.left:
            return _error(400, "no chat session")
        if root is None or not root.findtext("body"):
            return _error(400, "a Message with a body is required")
        chat.customer_messages.append(root.findtext("body", ""))
        fake._event(chat.id, "MessageEvent",
                    **{"from": chat.author, "body": quote_plus(root.findtext("body", ""))})
        return _response("")

    @app.put(f"{CHAT}/event")
    async def typing() -> Response:
        chat = fake._chat()
        root = _put_body(await request.get_data(), "TypingEvent")
        if chat is None or chat.left:
            return _error(400, "no chat session")
        status = None if root is None else root.findtext("status")
        if status not in TYPING_STATUSES:
            return _error(400, f"status must be one of {TYPING_STATUSES}")
        chat.typing.append(status)
        fake._notify()
        return _response("")

    @app.put(f"{CHAT}/leaveChat")
    async def leave() -> Response:
        chat = fake._chat()
        if chat is None or chat.left:
            return _error(400, "no chat session")
        chat.left = True
        fake._event(chat.id, "PresenceEvent", **{"from": chat.author, "status": "left"})
        return _response("")


@asynccontextmanager
async def open_fake_ccp() -> AsyncIterator[FakeCcp]:
    """Serve a :class:`FakeCcp` on 127.0.0.1, a free port, for the block."""
    fake = FakeCcp()
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url = binding.url
        yield fake
        nursery.cancel_scope.cancel()
