"""A fake Genesys Cloud (PROVIDERS.md 1.13): a real HTTP and websocket server that plays
the login host, the guest chat API, the guest event stream and one platform lookup.

In-process (Trio tests)::

    async with open_fake_genesys(heartbeat_seconds=0.5) as genesys:
        tenant = genesys.tenant()              # TenantConfig pointing at the fake
        ...                                    # open a chat, connect its eventStreamUri
        await genesys.wait_connected(chat_id)
        genesys.agent_joins(chat_id)           # member-join + CONNECTED (twice)
        genesys.agent_says(chat_id, "Hi")
        genesys.fail_next("/messages", 429, {"Retry-After": "3"})

Scripting is synchronous: frames go to the sockets connected *now* (none: lost, as on the
real service) and every message also lands in the history ``GET .../messages`` serves.
Login and API share the fake's one base URL.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.config import GenesysConfig, TenantConfig
from lcx.model import iso, utc_now

GUEST = "/api/v2/webchat/guest/conversations"
MAX_BODY = 4000
CODES = {400: "bad.request", 401: "bad.credentials", 403: "not.authorized",
         404: "not.found", 429: "too.many.requests", 500: "internal.server.error",
         503: "service.unavailable", 504: "request.timeout"}


@dataclass
class FakeSocket:
    """One connected guest socket: frames queued for it, and how it will be closed."""

    send: trio.MemorySendChannel[str]
    receive: trio.MemoryReceiveChannel[str]
    close_code: int = 1000

    def push(self, frame: dict[str, Any]) -> None:
        """Queue a frame (dropped if the socket is closing)."""
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.send.send_nowait(json.dumps(frame))

    def close(self, code: int) -> None:
        """Close after the queued frames are sent."""
        self.close_code = code
        self.send.close()


@dataclass
class FakeChat:
    """One guest chat: members, history, sockets, what the guest did."""

    id: str
    jwt: str
    guest: str
    request: dict[str, Any]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sockets: list[FakeSocket] = field(default_factory=list)
    routed: bool = False
    ended: bool = False
    typing: int = 0
    connections: int = 0


@dataclass(frozen=True)
class Failure:
    """A scripted error for the next request whose path ends with ``suffix``."""

    suffix: str
    status: int
    headers: Mapping[str, str]
    code: str


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An ``ErrorBody`` (PROVIDERS 1.8), ``code`` first."""
    return {"code": code, "message": message, "status": status,
            "contextId": str(uuid.uuid4()), "details": [], "errors": [], **extra}


def _error(status: int, code: str, message: str,
           headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    return Response(json.dumps(error_body(status, code, message, **extra)), status=status,
                    headers=dict(headers or {}), content_type="application/json")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _not_active(code: str = "chat.error.conversation.state") -> Response:
    return _error(400, code, "The conversation is not active",
                  messageParams={"message": "The conversation is not active"})


class FakeGenesys:
    """The fake's state, its scripting and inspection API, and its app (:meth:`app`)."""

    def __init__(self, *, client_id: str = "lcx-client", client_secret: str = "lcx-secret",
                 organization_id: str = "org-1", deployment_id: str = "dep-1",
                 queues: tuple[str, ...] = ("Support",), heartbeat_seconds: float | None = 30.0,
                 token_ttl: int = 86399) -> None:
        self.clients = {client_id: client_secret}
        self.organization_id = organization_id
        self.deployment_id = deployment_id
        self.deployment_disabled = False
        self.queues = {name: f"queue-{i}" for i, name in enumerate(queues, 1)}
        self.heartbeat_seconds = heartbeat_seconds
        self.token_ttl = token_ttl
        self.base_url = ""
        self.chats: dict[str, FakeChat] = {}
        self.tokens: dict[str, str] = {}
        self.token_requests: list[str] = []
        """The client id of every ``/oauth/token`` request, in order."""
        self.requests: list[tuple[str, str]] = []
        """``(method, path)`` of every HTTP request, in order."""
        self._failures: list[Failure] = []
        self._ids = itertools.count(1)
        self._changed = trio.Event()

    # -- configuration for the code under test ------------------------------------------

    def config(self, **overrides: Any) -> GenesysConfig:
        """A ``[genesys]`` config pointing at the fake (valid unless overridden)."""
        values: dict[str, Any] = {
            "api_url": self.base_url, "login_url": self.base_url,
            "client_id": next(iter(self.clients)), "client_secret": next(iter(
                self.clients.values())), "organization_id": self.organization_id,
            "deployment_id": self.deployment_id, "queue_name": next(iter(self.queues))}
        return GenesysConfig(**(values | overrides))

    def tenant(self, tenant_id: str = "t1", **overrides: Any) -> TenantConfig:
        """A tenant with ``provider = "genesys"`` and :meth:`config`."""
        return TenantConfig(id=tenant_id, organization_id="o1", provider="genesys",
                            genesys=self.config(**overrides))

    # -- scripting ---------------------------------------------------------------------

    def member_joins(self, chat_id: str, member_id: str, *, name: str, role: str) -> None:
        """A member joins: ``member-join`` message and one ``member-change`` CONNECTED."""
        chat = self._routed(chat_id)
        chat.members[member_id] = {"id": member_id, "displayName": name, "role": role,
                                   "state": "CONNECTED", "joinDate": iso(utc_now()),
                                   "leaveDate": None}
        self._message(chat, member_id, None, "member-join")
        self._push(chat, self._member_change(chat, member_id, "CONNECTED"))

    def agent_joins(self, chat_id: str, agent_id: str = "agent-1", name: str = "Gina") -> None:
        """An agent joins; its CONNECTED event is sent twice (as Genesys does)."""
        self.member_joins(chat_id, agent_id, name=name, role="AGENT")
        self._push(self.chats[chat_id], self._member_change(self.chats[chat_id], agent_id,
                                                            "CONNECTED"))

    def agent_says(self, chat_id: str, text: str, agent_id: str = "agent-1") -> str:
        """An agent message (``bodyType`` standard); its message id."""
        return str(self._message(self._routed(chat_id), agent_id, text, "standard")["id"])

    def agent_types(self, chat_id: str, agent_id: str = "agent-1") -> None:
        """A ``typing-indicator`` frame from the agent."""
        chat = self._routed(chat_id)
        body = {"id": self._id("typing"), "conversation": {"id": chat.id},
                "sender": {"id": agent_id}, "timestamp": iso(utc_now())}
        self._push(chat, self._frame(chat, "messages", "typing-indicator", body))

    def agent_leaves(self, chat_id: str, agent_id: str = "agent-1") -> None:
        """``member-leave`` + ``member-change`` DISCONNECTED; the chat ends when no agent
        remains (later guest posts get ``chat.error.conversation.state``)."""
        chat = self._routed(chat_id)
        chat.members[agent_id].update(state="DISCONNECTED", leaveDate=iso(utc_now()))
        self._message(chat, agent_id, None, "member-leave")
        self._push(chat, self._member_change(chat, agent_id, "DISCONNECTED"))
        if not any(m["role"] == "AGENT" and m["state"] == "CONNECTED"
                   for m in chat.members.values()):
            chat.ended = True

    def drop_sockets(self, chat_id: str, code: int = 1011) -> None:
        """Close the chat's sockets now (frames scripted afterwards are lost)."""
        chat = self.chats[chat_id]
        for sock in chat.sockets:
            sock.close(code)
        chat.sockets.clear()

    def fail_next(self, path_suffix: str, status: int,
                  headers: Mapping[str, str] | None = None, *, code: str | None = None,
                  times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path_suffix`` fail with
        ``status`` (an ``ErrorBody``; 429 adds ``inin-ratelimit-*`` headers)."""
        failure = Failure(path_suffix, status, dict(headers or {}),
                          code or CODES.get(status, "bad.request"))
        self._failures.extend([failure] * times)

    def expire_tokens(self) -> None:
        """Revoke every OAuth token issued so far (platform calls then get 401)."""
        self.tokens.clear()

    # -- inspection --------------------------------------------------------------------

    def guest_messages(self, chat_id: str) -> list[str]:
        """The bodies the guest posted, in order."""
        chat = self.chats[chat_id]
        return [m["body"] for m in chat.messages
                if m["sender"]["id"] == chat.guest and m["bodyType"] == "standard"]

    def typing_count(self, chat_id: str) -> int:
        """How many typing indicators the guest posted."""
        return self.chats[chat_id].typing

    def ended(self, chat_id: str) -> bool:
        """Whether the chat is over."""
        return self.chats[chat_id].ended

    def connections(self, chat_id: str) -> int:
        """How many times a socket connected to the chat's stream."""
        return self.chats[chat_id].connections

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked on every change of the fake)."""
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    async def wait_connected(self, chat_id: str, count: int = 1,
                             timeout: float = 5.0) -> None:
        """Wait until ``count`` sockets in all connected to the chat and one is open."""
        await self.wait_until(lambda: self.chats[chat_id].connections >= count
                              and bool(self.chats[chat_id].sockets), timeout)

    # -- internals ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _routed(self, chat_id: str) -> FakeChat:
        chat = self.chats[chat_id]
        if not chat.routed:
            raise RuntimeError(f"chat {chat_id} is not routed: no socket connected yet")
        return chat

    def _push(self, chat: FakeChat, frame: dict[str, Any]) -> None:
        for sock in chat.sockets:
            sock.push(frame)

    def _frame(self, chat: FakeChat, topic: str, kind: str,
               body: dict[str, Any]) -> dict[str, Any]:
        return {"topicName": f"v2.conversations.chats.{chat.id}.{topic}", "version": "2",
                "eventBody": body,
                "metadata": {"CorrelationId": str(uuid.uuid4()), "type": kind}}

    def _member_change(self, chat: FakeChat, member_id: str, state: str) -> dict[str, Any]:
        body = {"conversation": {"id": chat.id}, "member": {"id": member_id, "state": state},
                "timestamp": iso(utc_now())}
        return self._frame(chat, "members", "member-change", body)

    def _message(self, chat: FakeChat, sender: str, body: str | None,
                 body_type: str) -> dict[str, Any]:
        message = {"id": self._id("msg"), "conversation": {"id": chat.id},
                   "sender": {"id": sender}, "body": body, "bodyType": body_type,
                   "timestamp": iso(utc_now())}
        chat.messages.append(message)
        self._push(chat, self._frame(chat, "messages", "message", message))
        self._notify()
        return message

    def _scripted(self, path: str) -> Response | None:
        for i, failure in enumerate(self._failures):
            if path.endswith(failure.suffix):
                del self._failures[i]
                headers = dict(failure.headers)
                if failure.status == 429:
                    headers |= {"inin-ratelimit-allowed": "180", "inin-ratelimit-count": "181",
                                "inin-ratelimit-reset": headers.get("Retry-After", "60")}
                return _error(failure.status, failure.code, f"scripted {failure.status}",
                              headers)
        return None

    def app(self) -> QuartTrio:
        """The quart-trio app serving this fake."""
        app = QuartTrio("fake_genesys")
        _routes(self, app)
        return app


def _routes(fake: FakeGenesys, app: QuartTrio) -> None:
    @app.before_request
    async def record() -> Response | None:
        fake.requests.append((request.method, request.path))
        fake._notify()
        return fake._scripted(request.path)

    @app.after_request
    async def headers(response: Response) -> Response:
        response.headers.setdefault("inin-correlation-id", str(uuid.uuid4()))
        response.headers.setdefault("inin-ratelimit-allowed", "180")
        response.headers.setdefault("inin-ratelimit-count", "1")
        response.headers.setdefault("inin-ratelimit-reset", "60")
        return response

    @app.post("/oauth/token")
    async def token() -> Response:
        form = await request.form
        client_id, secret = _basic(request.headers.get("Authorization", ""))
        client_id = client_id or form.get("client_id", "")
        secret = secret or form.get("client_secret", "")
        fake.token_requests.append(client_id)
        if form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type", "description": "grant_type",
                          "error_description": "grant_type"}, 400)
        if not client_id or fake.clients.get(client_id) != secret:
            text = "client is not authorized"
            return _json({"error": "unauthorized_client", "description": text,
                          "error_description": text}, 400)
        value = f"tok-{uuid.uuid4().hex}"
        fake.tokens[value] = client_id
        return _json({"access_token": value, "token_type": "bearer",
                      "expires_in": fake.token_ttl})

    @app.get("/api/v2/routing/queues")
    async def queues() -> Response:
        denied = _oauth(fake, request.headers.get("Authorization"))
        if denied is not None:
            return denied
        name = request.args.get("name")
        found = [{"id": qid, "name": qname} for qname, qid in fake.queues.items()
                 if name in (None, qname)]
        return _json({"entities": found, "pageSize": 25, "pageNumber": 1,
                      "total": len(found)})

    @app.post(GUEST)
    async def create() -> Response:
        body = await request.get_json(force=True, silent=True) or {}
        refused = _validate_create(fake, body)
        if refused is not None:
            return refused
        chat = FakeChat(id=str(uuid.uuid4()), jwt=f"jwt-{uuid.uuid4().hex}",
                        guest=str(uuid.uuid4()), request=body)
        info = body["memberInfo"]
        chat.members[chat.guest] = {"id": chat.guest, "displayName": info["displayName"],
                                    "role": "CUSTOMER", "state": "CONNECTED",
                                    "joinDate": iso(utc_now()), "leaveDate": None,
                                    "customFields": info.get("customFields", {})}
        fake.chats[chat.id] = chat
        fake._notify()
        stream = fake.base_url.replace("http://", "ws://") + f"/v1/token/{chat.jwt}"
        return _json({"id": chat.id, "jwt": chat.jwt, "eventStreamUri": stream,
                      "member": {"id": chat.guest}})

    @app.post(GUEST + "/<chat_id>/members/<member_id>/messages")
    async def post_message(chat_id: str, member_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, member_id, active=True)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        body = await request.get_json(force=True, silent=True) or {}
        text, body_type = body.get("body"), body.get("bodyType", "standard")
        if not isinstance(text, str) or body_type not in ("standard", "notice"):
            return _error(400, "bad.request", "body is required")
        if len(text) > MAX_BODY:
            return _error(400, "invalid.value", f"body is longer than {MAX_BODY} characters",
                          details=[{"errorCode": "invalid.value", "fieldName": "body"}])
        message = fake._message(chat, member_id, text, body_type)
        return _json(message | {"sender": chat.members[member_id]})

    @app.post(GUEST + "/<chat_id>/members/<member_id>/typing")
    async def typing(chat_id: str, member_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, member_id, active=True)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        chat.typing += 1
        fake._notify()
        return _json({"id": fake._id("typing"), "conversation": {"id": chat.id},
                      "sender": {"id": member_id}, "timestamp": iso(utc_now())})

    @app.delete(GUEST + "/<chat_id>/members/<member_id>")
    async def leave(chat_id: str, member_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, member_id, active=False)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        if chat.ended:
            return _not_active("chat.error.member.state")
        chat.ended = True
        chat.members[member_id].update(state="DISCONNECTED", leaveDate=iso(utc_now()))
        fake._message(chat, member_id, None, "member-leave")
        fake._push(chat, fake._member_change(chat, member_id, "DISCONNECTED"))
        for sock in chat.sockets:
            sock.close(1000)
        chat.sockets.clear()
        return Response("", status=204)

    @app.get(GUEST + "/<chat_id>/members")
    async def members(chat_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, None, active=False)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        size = int(request.args.get("pageSize", 25))
        number = int(request.args.get("pageNumber", 1))
        listed = [m for m in chat.members.values()
                  if request.args.get("excludeDisconnectedMembers") != "true"
                  or m["state"] != "DISCONNECTED"]
        page = listed[(number - 1) * size:number * size]
        return _json({"entities": page, "pageSize": size, "pageNumber": number,
                      "total": len(listed), "pageCount": max(1, math.ceil(len(listed) / size))})

    @app.get(GUEST + "/<chat_id>/members/<member_id>")
    async def member(chat_id: str, member_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, None, active=False)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        if member_id not in chat.members:
            return _error(404, "not.found", f"member {member_id} not found")
        return _json(chat.members[member_id])

    @app.get(GUEST + "/<chat_id>/messages")
    async def history(chat_id: str) -> Response:
        chat, denied = _guest_call(fake, chat_id, None, active=False)
        if denied is not None or chat is None:
            return denied or _error(404, "not.found", "no chat")
        return _history(chat, request.args)

    @app.websocket("/v1/token/<jwt>")
    async def events(jwt: str) -> Response | None:
        chat = next((c for c in fake.chats.values() if c.jwt == jwt), None)
        if chat is None or chat.ended:
            return _error(401, "bad.credentials", "invalid or expired token")
        await websocket.accept()
        await _serve_socket(fake, chat)
        return None


async def _serve_socket(fake: FakeGenesys, chat: FakeChat) -> None:
    send, receive = trio.open_memory_channel[str](math.inf)
    sock = FakeSocket(send, receive)
    chat.sockets.append(sock)
    chat.connections += 1
    chat.routed = True
    sock.push(fake._member_change(chat, chat.guest, "CONNECTED"))
    fake._notify()
    try:
        async with trio.open_nursery() as nursery:
            if fake.heartbeat_seconds is not None:
                nursery.start_soon(_heartbeat, sock, fake.heartbeat_seconds)
            async for frame in receive:
                await websocket.send(frame)
            nursery.cancel_scope.cancel()
        await websocket.close(sock.close_code)
    finally:
        if sock in chat.sockets:
            chat.sockets.remove(sock)
        fake._notify()


async def _heartbeat(sock: FakeSocket, seconds: float) -> None:
    while True:
        await trio.sleep(seconds)
        sock.push({"topicName": "channel.metadata",
                   "eventBody": {"message": "WebSocket Heartbeat"}})


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return "", ""
    return client_id, secret


def _bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _oauth(fake: FakeGenesys, header: str | None) -> Response | None:
    token = _bearer(header)
    if token is None:
        return _error(401, "authentication.required",
                      "No authentication bearer token specified in authorization header.")
    if token not in fake.tokens:
        return _error(401, "bad.credentials", "Invalid login credentials.")
    return None


def _validate_create(fake: FakeGenesys, body: dict[str, Any]) -> Response | None:
    target = body.get("routingTarget") or {}
    info = body.get("memberInfo") or {}
    for name, value in (("organizationId", body.get("organizationId")),
                        ("deploymentId", body.get("deploymentId")),
                        ("memberInfo.displayName", info.get("displayName"))):
        if not isinstance(value, str) or not value:
            return _error(400, "bad.request", f"{name} is required",
                          details=[{"errorCode": "missing.value", "fieldName": name}])
    if body["organizationId"] != fake.organization_id:
        return _error(400, "bad.request", "unknown organization")
    if body["deploymentId"] != fake.deployment_id or fake.deployment_disabled:
        return _error(400, "chat.deployment.disabled", "The deployment is disabled")
    if target.get("targetType") not in ("QUEUE", "queue"):
        return _error(400, "chat.error.createconversationrequest.routingtarget",
                      "routingTarget.targetType must be QUEUE")
    if target.get("targetAddress") not in fake.queues:
        return _error(400, "chat.error.invalid.queue", "The queue is not valid")
    return None


def _guest_call(fake: FakeGenesys, chat_id: str, member_id: str | None, *,
                active: bool) -> tuple[FakeChat | None, Response | None]:
    chat = fake.chats.get(chat_id)
    if chat is None:
        return None, _error(404, "not.found", f"conversation {chat_id} not found")
    token = _bearer(request.headers.get("Authorization"))
    if token is None:
        return chat, _error(401, "authentication.required",
                            "No authentication bearer token specified in authorization "
                            "header.")
    if token != chat.jwt:
        return chat, _error(401, "bad.credentials", "Invalid guest token.")
    if member_id is not None and member_id != chat.guest:
        return chat, _error(403, "not.authorized", "a guest acts only as itself")
    if active and (not chat.routed or chat.ended):
        return chat, _not_active()
    return chat, None


def _history(chat: FakeChat, args: Mapping[str, str]) -> Response:
    ids = [m["id"] for m in chat.messages]
    start, stop = 0, len(ids)
    for name, value in (("after", args.get("after")), ("before", args.get("before"))):
        if value is not None and value not in ids:
            return _error(400, "invalid.value", f"{name}: unknown message id {value}")
    if args.get("after") is not None:
        start = ids.index(args["after"]) + 1
    if args.get("before") is not None:
        stop = ids.index(args["before"])
    limit = int(args.get("maxResults", 100))
    if not 1 <= limit <= 100:
        return _error(400, "invalid.value", "maxResults must be between 1 and 100")
    chosen = chat.messages[start:stop]
    descending = args.get("sortOrder", "asc").lower() == "desc"
    chosen = list(reversed(chosen))[:limit] if descending else chosen[:limit]
    return _json({"entities": chosen, "selfUri": f"{GUEST}/{chat.id}/messages"})


@asynccontextmanager
async def open_fake_genesys(**options: Any) -> AsyncIterator[FakeGenesys]:
    """Serve a :class:`FakeGenesys` (``options``: its constructor's) on 127.0.0.1, a free
    port, for the block."""
    fake = FakeGenesys(**options)
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url = binding.url
        yield fake
        nursery.cancel_scope.cancel()
