"""A fake LiveChat: the Agent Chat Web API (v3.5 and v3.6) and a webhook emitter, served for
real on loopback (PROVIDERS.md 2.7).

In-process (Trio tests)::

    async with open_fake_livechat(webhook_url=lcx_url + "/events/livechat") as fake:
        chat = await fake.start_chat(customer_name="Jane")        # POSTs incoming_chat
        await fake.customer_says(chat.id, "hello")                 # POSTs incoming_event
        fake.fail(ApiFailure("too_many_requests"), action="send_event")
        ...  # point tenants.<id>.livechat.api_url at fake.api_url
        assert [e["text"] for e in fake.events_sent(chat.id)] == ["hi Jane"]

Agent API (``POST /v3.5|v3.6/agent/action/<action>``): ``send_event``,
``send_typing_indicator``, ``deactivate_chat`` (fires ``chat_deactivated``),
``transfer_chat`` (fires ``chat_transferred``), ``upload_file`` (multipart, 10 MB cap);
anything else is ``not_found``. Auth: ``Basic base64(account_id:pat)`` or ``Bearer
<region>:<token>`` (a token or ``X-Region`` of another region: ``misdirected_request``);
anything else: ``authentication``. Errors are ``{"error": {"type", "message"}}`` with the
UNVERIFIED status convention of PROVIDERS.md 2.4. Not emulated: the configuration API
(webhook registration) and pagination.

Webhooks go to :attr:`FakeLiveChat.webhook_url` with the documented envelope; modes:
``wrong_secret``, ``duplicate`` (every delivery twice), ``signature_secret`` (adds
``X-Signature``), ``retries`` (re-POST on non-200 or network failure), ``author_type``
(the registration filter: ``"customer"`` keeps lcx's own events from echoing back).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import string
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.config import LivechatConfig, TenantConfig

ERROR_STATUS = {"validation": 400, "authentication": 401, "authorization": 403,
                "missing_access": 403, "not_found": 404, "entity_too_large": 413,
                "misdirected_request": 421, "chat_inactive": 422, "too_many_requests": 429,
                "internal": 500, "service_unavailable": 503, "request_timeout": 504}
"""UNVERIFIED status per ``error.type`` (PROVIDERS.md 2.4); adapters key on the type."""
MAX_TEXT_BYTES = 16 * 1024
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
CDN = "https://cdn.livechat-files.com/api/file/lc/att"
RICH_TEMPLATES = frozenset({"cards", "sticker", "quick_replies"})
VERSIONS = frozenset({"v3.5", "v3.6"})

Json = dict[str, Any]


def _ref(size: int = 10) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(size))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- pure builders of what LiveChat sends (also handy for parse tests) --------------------


def envelope(action: str, payload: Json, *, secret_key: str, organization_id: str,
             webhook_id: str = "wh-1", additional_data: Json | None = None) -> Json:
    """A webhook delivery envelope (PROVIDERS.md 2.5)."""
    return {"webhook_id": webhook_id, "secret_key": secret_key, "action": action,
            "organization_id": organization_id, "payload": payload,
            "additional_data": additional_data or {}}


def message_event(event_id: str, author_id: str, text: str, **extra: Any) -> Json:
    """A stored ``message`` event."""
    return {"id": event_id, "type": "message", "text": text, "author_id": author_id,
            "created_at": _now(), "visibility": "all", **extra}


def file_event(event_id: str, author_id: str, *, name: str = "photo.png",
               content_type: str = "image/png", size: int = 1024) -> Json:
    """A stored ``file`` event (on LiveChat's CDN)."""
    return {"id": event_id, "type": "file", "author_id": author_id, "created_at": _now(),
            "visibility": "all", "name": name, "url": f"{CDN}/{_ref()}/{name}",
            "content_type": content_type, "size": size}


def rich_event(event_id: str, author_id: str, *, template_id: str = "quick_replies",
               elements: list[Json] | None = None) -> Json:
    """A stored ``rich_message`` event."""
    elements = elements or [{"title": "Pick one", "buttons": [
        {"text": "Yes", "type": "message", "postback_id": "action_yes"}]}]
    return {"id": event_id, "type": "rich_message", "author_id": author_id,
            "created_at": _now(), "visibility": "all", "template_id": template_id,
            "elements": elements}


def system_event(event_id: str, text: str, *, kind: str = "manual") -> Json:
    """A stored ``system_message`` event (no author)."""
    return {"id": event_id, "type": "system_message", "text": text, "created_at": _now(),
            "visibility": "all", "system_message_type": kind}


def signature(body: bytes, secret: str) -> str:
    """The ``X-Signature`` value a signing proxy adds: hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- state and records --------------------------------------------------------------------


class ApiFailure(Exception):
    """A LiveChat error answer; raised by handlers, or queued with :meth:`FakeLiveChat.fail`."""

    def __init__(self, type: str, message: str = "", *, data: Json | None = None,
                 retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(type, message)
        self.type, self.message, self.data = type, message, data
        self.retry_after = retry_after
        self._status = status

    @property
    def status(self) -> int:
        """The HTTP status the fake answers with (:data:`ERROR_STATUS` unless overridden)."""
        return self._status or ERROR_STATUS.get(self.type, 400)

    def body(self) -> Json:
        """The error envelope."""
        error: Json = {"type": self.type, "message": self.message or self.type}
        if self.data is not None:
            error["data"] = self.data
        return {"error": error}


@dataclass
class FakeChat:
    """One chat: its customer, the stored events and what lcx did to it."""

    id: str
    thread_id: str
    customer_id: str
    customer_name: str
    customer_email: str | None
    active: bool = True
    events: list[Json] = field(default_factory=list)
    sent: list[Json] = field(default_factory=list)
    """Events lcx sent through ``send_event``, in order."""
    typing: list[bool] = field(default_factory=list)
    deactivated_by_api: bool = False

    def next_event_id(self) -> str:
        """LiveChat-style ``<thread>_<n>``."""
        return f"{self.thread_id}_{len(self.events) + 1}"


@dataclass(frozen=True)
class ApiCall:
    """One agent-API request and the status it got."""

    at: float
    """``trio.current_time()`` on arrival."""
    version: str
    action: str
    status: int
    body: Json


@dataclass
class Delivery:
    """One webhook sent by the emitter and the statuses of its attempts (0: no answer)."""

    action: str
    body: bytes
    statuses: list[int] = field(default_factory=list)


class FakeLiveChat:
    """The fake's state, API handlers and webhook emitter (served by :meth:`app`)."""

    def __init__(self, *, account_id: str = "acc-1", pat: str = "pat-1",
                 bearer_tokens: tuple[str, ...] = ("dal:token-1",), region: str = "dal",
                 organization_id: str = "org-1", secret_key: str = "whsec-1",
                 agent_id: str = "agent@example.com", webhook_url: str = "") -> None:
        self.account_id, self.pat = account_id, pat
        self.bearer_tokens, self.region = bearer_tokens, region
        self.organization_id, self.secret_key = organization_id, secret_key
        self.agent_id = agent_id
        """The agent whose PAT lcx uses: the author of what lcx sends."""
        self.webhook_url = webhook_url
        self.signature_secret = ""
        self.wrong_secret = False
        self.duplicate = False
        self.retries = 0
        self.author_type: Literal["customer", "agent"] | None = "customer"
        self.base_url = ""
        self.chats: dict[str, FakeChat] = {}
        self.calls: list[ApiCall] = []
        self.deliveries: list[Delivery] = []
        self.uploads: dict[str, bytes] = {}
        self._failures: dict[str | None, deque[ApiFailure]] = {}
        self._http: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()

    @property
    def api_url(self) -> str:
        """What to configure as ``livechat.api_url``."""
        return self.base_url

    # --- scripting and inspection -----------------------------------------------------

    def fail(self, *failures: ApiFailure, action: str | None = None) -> None:
        """Answer the next requests (of ``action``, or of any action) with these errors."""
        self._failures.setdefault(action, deque()).extend(failures)

    def chat(self, chat_id: str) -> FakeChat:
        """The chat with this id (KeyError if none)."""
        return self.chats[chat_id]

    def events_sent(self, chat_id: str) -> list[Json]:
        """What lcx sent with ``send_event`` to the chat, in order."""
        return self.chats[chat_id].sent

    def typing(self, chat_id: str) -> list[bool]:
        """The ``is_typing`` values lcx sent to the chat, in order."""
        return self.chats[chat_id].typing

    def deactivated(self, chat_id: str) -> bool:
        """Whether lcx deactivated the chat through the API."""
        return self.chats[chat_id].deactivated_by_api

    def per_second(self, action: str | None = None) -> list[int]:
        """Requests (of ``action``) per one-second bucket since the first one."""
        times = [c.at for c in self.calls if action in (None, c.action)]
        counts = [0] * (int(times[-1] - times[0]) + 1 if times else 0)
        for at in times:
            counts[int(at - times[0])] += 1
        return counts

    def max_in_window(self, window: float = 1.0, *, skip: int = 0) -> int:
        """The most requests in any ``window`` seconds, ignoring the first ``skip``."""
        times = [c.at for c in self.calls][skip:]
        return max((sum(1 for t in times if start <= t < start + window) for start in times),
                   default=0)

    async def wait_for_deliveries(self, n: int, timeout: float = 5.0) -> list[Delivery]:
        """Wait until ``n`` webhooks were sent. Raises ``trio.TooSlowError`` after ``timeout``."""
        with trio.fail_after(timeout):
            while len(self.deliveries) < n:
                await self._changed.wait()
        return self.deliveries

    # --- the agent API ------------------------------------------------------------------

    def handle(self, version: str, action: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, Json, dict[str, str]]:
        """Answer one JSON agent-API request: status, body, headers. Records the call."""
        try:
            answer = self._answer(version, action, headers, body)
            status, reply, extra = 200, answer, {}
        except ApiFailure as failure:
            status, reply = failure.status, failure.body()
            extra = {} if failure.retry_after is None else {
                "Retry-After": f"{failure.retry_after:g}"}
        parsed = _json_object(body)
        self.calls.append(ApiCall(trio.current_time(), version, action, status, parsed or {}))
        return status, reply, extra

    def _answer(self, version: str, action: str, headers: Mapping[str, str],
                body: bytes) -> Json:
        if version not in VERSIONS:
            raise ApiFailure("unsupported_version")
        self._authenticate({k.lower(): v for k, v in headers.items()})
        self._scripted(action)
        handler = self._handlers().get(action)
        if handler is None:
            raise ApiFailure("not_found", f"unknown action {action}")
        payload = _json_object(body)
        if payload is None:
            raise ApiFailure("validation", "body must be a JSON object")
        return handler(payload)

    def _handlers(self) -> dict[str, Callable[[Json], Json]]:
        return {"send_event": self._send_event, "send_typing_indicator": self._typing,
                "deactivate_chat": self._deactivate, "transfer_chat": self._transfer}

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded == f"{self.account_id}:{self.pat}":
                return
        elif scheme.lower() == "bearer" and credentials in self.bearer_tokens:
            region = headers.get("x-region") or credentials.partition(":")[0]
            if region != self.region:
                raise ApiFailure("misdirected_request", "Wrong region",
                                 data={"region": self.region})
            return
        raise ApiFailure("authentication", "Invalid access token")

    def _scripted(self, action: str) -> None:
        for key in (action, None):
            queue = self._failures.get(key)
            if queue:
                raise queue.popleft()

    def _active_chat(self, chat_id: Any) -> FakeChat:
        if not isinstance(chat_id, str) or not chat_id:
            raise ApiFailure("validation", "chat_id is required")
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ApiFailure("not_found", "Chat not found")
        if not chat.active:
            raise ApiFailure("chat_inactive", "Chat is not active")
        return chat

    def _send_event(self, payload: Json) -> Json:
        chat = self._active_chat(payload.get("chat_id"))
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ApiFailure("validation", "event.type is required")
        _check_event(event)
        stored = {**event, "id": chat.next_event_id(), "author_id": self.agent_id,
                  "created_at": _now(), "visibility": event.get("visibility", "all")}
        chat.events.append(stored)
        chat.sent.append(stored)
        if self.author_type in (None, "agent"):
            self._fire("incoming_event", {"chat_id": chat.id, "thread_id": chat.thread_id,
                                          "event": stored})
        return {"event_id": stored["id"]}

    def _typing(self, payload: Json) -> Json:
        chat = self._active_chat(payload.get("chat_id"))
        if not isinstance(payload.get("is_typing"), bool):
            raise ApiFailure("validation", "is_typing must be a boolean")
        chat.typing.append(payload["is_typing"])
        return {}

    def _deactivate(self, payload: Json) -> Json:
        chat = self._active_chat(payload.get("id"))
        chat.active = False
        chat.deactivated_by_api = True
        self._fire("chat_deactivated", {"chat_id": chat.id, "thread_id": chat.thread_id,
                                        "user_id": self.agent_id})
        return {}

    def _transfer(self, payload: Json) -> Json:
        chat = self._active_chat(payload.get("id"))
        target = payload.get("target")
        if not isinstance(target, dict) or target.get("type") not in ("group", "agent") \
                or not target.get("ids"):
            raise ApiFailure("validation", "target{type, ids} is required")
        key = "group_ids" if target["type"] == "group" else "agent_ids"
        self._fire("chat_transferred", _transferred(chat, self.agent_id, {key: target["ids"]}))
        return {}

    def upload(self, headers: Mapping[str, str], name: str,
               data: bytes) -> tuple[int, Json, dict[str, str]]:
        """Answer ``upload_file`` (multipart already read): a CDN URL, or an error."""
        try:
            self._authenticate({k.lower(): v for k, v in headers.items()})
            if len(data) > MAX_UPLOAD_BYTES:
                raise ApiFailure("entity_too_large", "file exceeds 10 MB")
            if not name or name.lower().endswith((".exe", ".bat", ".sh")):
                raise ApiFailure("validation", "file name missing or executable")
            url = f"{CDN}/{_ref()}/{name}"
            self.uploads[url] = data
            return 200, {"url": url}, {}
        except ApiFailure as failure:
            return failure.status, failure.body(), {}

    # --- the webhook emitter ------------------------------------------------------------

    async def emit(self, action: str, payload: Json) -> Delivery:
        """POST one webhook to :attr:`webhook_url` (twice in ``duplicate`` mode; the last
        delivery is returned). Without a URL the delivery is only recorded."""
        secret = "not-the-secret" if self.wrong_secret else self.secret_key
        body = json.dumps(envelope(action, payload, secret_key=secret,
                                   organization_id=self.organization_id)).encode()
        delivery = Delivery(action, body)
        for _ in range(2 if self.duplicate else 1):
            delivery = Delivery(action, body)
            await self._post(delivery)
            self.deliveries.append(delivery)
            self._changed.set()
            self._changed = trio.Event()
        return delivery

    async def _post(self, delivery: Delivery) -> None:
        if not self.webhook_url or self._http is None:
            return
        headers = {"Content-Type": "application/json"}
        if self.signature_secret:
            headers["X-Signature"] = signature(delivery.body, self.signature_secret)
        for _ in range(1 + self.retries):
            try:
                answer = await self._http.post(self.webhook_url, content=delivery.body,
                                               headers=headers)
                delivery.statuses.append(answer.status_code)
            except httpx.HTTPError:
                delivery.statuses.append(0)
            if delivery.statuses[-1] == 200:
                return

    def _fire(self, action: str, payload: Json) -> None:
        """Emit a webhook in the background (as LiveChat does after an API call)."""
        if self._nursery is not None:
            self._nursery.start_soon(self.emit, action, payload)

    async def start_chat(self, *, customer_name: str = "Jane Doe",
                         customer_email: str | None = "jane@example.com",
                         text: str | None = None) -> FakeChat:
        """A customer opens a chat (optionally with a first message): ``incoming_chat``."""
        chat = FakeChat(_ref(), _ref(), str(uuid.uuid4()), customer_name, customer_email)
        self.chats[chat.id] = chat
        if text is not None:
            chat.events.append(message_event(chat.next_event_id(), chat.customer_id, text))
        await self.emit("incoming_chat", {"chat": self._chat_json(chat)})
        return chat

    async def customer_event(self, chat_id: str, event: Json) -> str:
        """Store an event in the chat and send ``incoming_event``; its id."""
        chat = self.chats[chat_id]
        chat.events.append(event)
        await self.emit("incoming_event", {"chat_id": chat.id, "thread_id": chat.thread_id,
                                           "event": event})
        return str(event["id"])

    async def customer_says(self, chat_id: str, text: str) -> str:
        """The customer sends a message; the event id."""
        chat = self.chats[chat_id]
        return await self.customer_event(
            chat_id, message_event(chat.next_event_id(), chat.customer_id, text))

    async def customer_sends_file(self, chat_id: str, **file: Any) -> str:
        """The customer sends a file (``name``, ``content_type``, ``size``); the event id."""
        chat = self.chats[chat_id]
        return await self.customer_event(
            chat_id, file_event(chat.next_event_id(), chat.customer_id, **file))

    async def agent_says(self, chat_id: str, text: str, author_id: str | None = None) -> str:
        """An agent or bot (default: the account's agent) writes: an echo for lcx."""
        chat = self.chats[chat_id]
        event = message_event(chat.next_event_id(), author_id or self.agent_id, text)
        return await self.customer_event(chat_id, event)

    async def postback(self, chat_id: str, event_id: str, postback_id: str,
                       toggled: bool = True) -> Delivery:
        """The customer clicks a rich-message button: ``incoming_rich_message_postback``."""
        chat = self.chats[chat_id]
        return await self.emit("incoming_rich_message_postback", {
            "user_id": chat.customer_id, "chat_id": chat.id, "thread_id": chat.thread_id,
            "event_id": event_id, "postback": {"id": postback_id, "toggled": toggled}})

    async def deactivate(self, chat_id: str,
                         by: Literal["customer", "agent", "router"] = "customer") -> Delivery:
        """The chat is closed on LiveChat's side: ``chat_deactivated``."""
        chat = self.chats[chat_id]
        chat.active = False
        payload: Json = {"chat_id": chat.id, "thread_id": chat.thread_id}
        if by != "router":
            payload["user_id"] = chat.customer_id if by == "customer" else self.agent_id
        return await self.emit("chat_deactivated", payload)

    async def transfer(self, chat_id: str, *, group_ids: tuple[int, ...] = (),
                       agent_ids: tuple[str, ...] = ()) -> Delivery:
        """A LiveChat agent transfers the chat: ``chat_transferred``."""
        chat = self.chats[chat_id]
        to: Json = {"group_ids": list(group_ids), "agent_ids": list(agent_ids)}
        return await self.emit("chat_transferred", _transferred(chat, "jones@example.com", to))

    def _chat_json(self, chat: FakeChat) -> Json:
        customer = {"id": chat.customer_id, "type": "customer", "name": chat.customer_name,
                    "email": chat.customer_email, "present": True}
        agent = {"id": self.agent_id, "type": "agent", "name": "Lcx Agent", "present": True}
        return {"id": chat.id, "users": [customer, agent], "properties": {},
                "thread": {"id": chat.thread_id, "active": True, "events": list(chat.events),
                           "user_ids": [chat.customer_id, self.agent_id],
                           "created_at": _now()}}

    # --- serving ------------------------------------------------------------------------

    def app(self) -> QuartTrio:
        """The quart-trio app serving the agent API."""
        app = QuartTrio("fake_livechat")

        @app.post("/<version>/agent/action/<action>")
        async def agent_action(version: str, action: str) -> Response:
            if action == "upload_file":
                files = await request.files
                upload = files.get("file")
                name, data = (upload.filename or "", upload.read()) if upload else ("", b"")
                status, reply, extra = self.upload(dict(request.headers), name, data)
            else:
                raw = await request.get_data(as_text=False)
                body = raw if isinstance(raw, bytes) else raw.encode()
                status, reply, extra = self.handle(version, action, dict(request.headers),
                                                   body)
            return Response(json.dumps(reply), status=status, headers=extra,
                            content_type="application/json")

        return app


def _json_object(body: bytes) -> Json | None:
    try:
        parsed = json.loads(body or b"null")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _transferred(chat: FakeChat, requester: str, to: Json) -> Json:
    return {"chat_id": chat.id, "thread_id": chat.thread_id, "requester_id": requester,
            "reason": "manual", "transferred_to": to}


def _check_event(event: Json) -> None:
    """Raise a ``validation`` failure for an event LiveChat would refuse."""
    kind, visibility = event["type"], event.get("visibility", "all")
    if visibility not in ("all", "agents"):
        raise ApiFailure("validation", "visibility must be all or agents")
    if kind == "message":
        text = event.get("text")
        if not isinstance(text, str) or not text or len(text.encode()) > MAX_TEXT_BYTES:
            raise ApiFailure("validation", "text is required and at most 16 KB")
    elif kind == "file":
        if not str(event.get("url", "")).startswith("https://cdn.livechat-files.com/"):
            raise ApiFailure("validation", "url must be a LiveChat CDN URL")
    elif kind == "rich_message":
        elements = event.get("elements")
        if event.get("template_id") not in RICH_TEMPLATES or not isinstance(elements, list) \
                or not 1 <= len(elements) <= 10:
            raise ApiFailure("validation", "template_id and 1-10 elements are required")
    elif kind not in ("custom", "system_message"):
        raise ApiFailure("validation", f"unsupported event type {kind}")


@asynccontextmanager
async def open_fake_livechat(**options: Any) -> AsyncIterator[FakeLiveChat]:
    """Serve a :class:`FakeLiveChat` (``options`` go to its constructor) on 127.0.0.1 (a
    free port) for the block; it owns its webhook HTTP client and background deliveries."""
    fake = FakeLiveChat(**options)
    async with httpx.AsyncClient(timeout=10.0) as http, trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url, fake._http, fake._nursery = binding.url, http, nursery
        yield fake
        nursery.cancel_scope.cancel()


def tenant_for(fake: FakeLiveChat | None = None, *, tenant_id: str = "t-lc",
               **livechat: Any) -> TenantConfig:
    """A ``channel = "livechat"`` tenant wired to ``fake`` (``livechat`` overrides fields)."""
    wired: Json = {} if fake is None else {
        "api_url": fake.api_url, "account_id": fake.account_id, "pat": fake.pat,
        "organization_id": fake.organization_id, "webhook_secret_key": fake.secret_key}
    defaults: Json = {"account_id": "acc-1", "pat": "pat-1", "organization_id": "org-1",
                      "webhook_secret_key": "whsec-1"}
    return TenantConfig(id=tenant_id, organization_id="o1", channel="livechat",
                        livechat=LivechatConfig(**{**defaults, **wired, **livechat}))
