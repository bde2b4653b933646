"""A fake Zendesk Sunshine Conversations API v2 (PROVIDERS.md 3.7), served for real on
loopback, with a webhook emitter.

In-process (Trio tests)::

    async with open_fake_sunshine(webhook_url=url) as sunshine:
        tenant = sunshine.tenant()                  # TenantConfig pointing at the fake
        ...                                         # open a conversation through lcx
        message_id = sunshine.agent_says(conversation_id, "Hi", name="Zoe")
        status = await sunshine.emit_message_webhook(conversation_id, message_id)
        sunshine.fail_next("/messages", 429)
        assert sunshine.user_messages(conversation_id) == ["hello"]

Emulated: Basic auth (``key_id:key_secret``; else 401 ``unauthorized``), users (create,
409 ``conflict`` on a duplicate ``externalId``, get by id or externalId), conversations
(create, get), messages (post: 201 ``{"messages": [...]}``, text ≤4,096 characters,
423 ``locked`` at ``message_cap``; list: the newest 100 first, ``page[before]`` /
``page[after]`` with ``meta.hasMore/beforeCursor/afterCursor`` and ``links.prev/next``;
``page[size]`` does not apply), ``activity`` (users: ``conversation:read`` only),
``passControl`` (to the agent workspace) / ``releaseControl`` (back to lcx's
integration), the conversation's ``activeSwitchboardIntegration``;
errors ``{"errors": [{"code", "title"}]}``.
Not emulated: JWT auth, OpenAPI validation, other list endpoints.

Webhooks go to :attr:`FakeSunshine.webhook_url` with the v2 envelope (``events[]``) and
``X-API-Key: <secret>``: messages, the agent closing the ticket
(``switchboard:passControl`` or ``switchboard:releaseControl``), the agent typing
(``conversation:typing``); ``retries`` re-POSTs on failure except 400/401/403/404/406.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlencode

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http
from lcx.config import TenantConfig, ZendeskConfig
from lcx.model import iso, utc_now

PAGE = 100
"""The fixed page size of the message list."""
MAX_TEXT = 4096
NO_RETRY = frozenset({400, 401, 403, 404, 406})
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         409: "conflict", 423: "locked", 429: "too_many_requests", 500: "internal_error",
         503: "service_unavailable"}

Json = dict[str, Any]
LCX_INTEGRATION: Json = {"id": "sw-lcx", "name": "lcx", "integrationId": "int-lcx",
                         "integrationType": "custom"}
"""The switchboard's default integration: the API integration lcx uses."""
AGENT_WORKSPACE: Json = {"id": "sw-agent", "name": "zd-agentWorkspace",
                         "integrationId": "int-agent",
                         "integrationType": "zd:agentWorkspace"}
"""The switchboard's ``next`` integration: the Zendesk agent workspace."""


@dataclass
class FakeConversation:
    """One conversation: its participant, messages and what lcx did to it."""

    id: str
    user_id: str
    metadata: Json
    messages: list[Json] = field(default_factory=list)
    passes: list[Json] = field(default_factory=list)
    activities: list[Json] = field(default_factory=list)
    active: Json = field(default_factory=lambda: dict(LCX_INTEGRATION))
    """The active switchboard integration (lcx's own until control is passed on)."""

    def wire(self) -> Json:
        """The conversation as the API shows it."""
        return {"id": self.id, "type": "personal", "metadata": self.metadata,
                "activeSwitchboardIntegration": dict(self.active)}


def error(status: int, title: str, code: str | None = None) -> Response:
    """A Sunshine error response."""
    body = {"errors": [{"code": code or CODES.get(status, "bad_request"), "title": title}]}
    return Response(json.dumps(body), status=status, content_type="application/json")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def message_event(event_id: str, app_id: str, conversation: FakeConversation,
                  message: Json) -> Json:
    """A ``conversation:message`` webhook event (PROVIDERS 3.5)."""
    return {"id": event_id, "type": "conversation:message", "createdAt": iso(utc_now()),
            "payload": {"conversation": conversation.wire(), "message": message}}


def envelope(app_id: str, events: list[Json], webhook_id: str = "wh-1") -> Json:
    """The v2 webhook envelope."""
    return {"app": {"id": app_id}, "webhook": {"id": webhook_id, "version": "v2"},
            "events": events}


class FakeSunshine:
    """The fake's state, scripting, inspection and webhook emitter (served by :meth:`app`)."""

    def __init__(self, *, app_id: str = "app-1", key_id: str = "app_key-1",
                 key_secret: str = "key-secret-1", secret: str = "whsec-1",
                 webhook_url: str = "", message_cap: int = 30_000, retries: int = 0) -> None:
        self.app_id, self.key_id, self.key_secret = app_id, key_id, key_secret
        self.secret = secret
        """The webhook's secret (sent as ``X-API-Key``)."""
        self.webhook_url = webhook_url
        self.message_cap = message_cap
        self.retries = retries
        self.base_url = ""
        self.users: dict[str, Json] = {}
        self.conversations: dict[str, FakeConversation] = {}
        self.gets = 0
        """How many ``GET .../messages`` were answered (any status)."""
        self.requests: list[tuple[str, str]] = []
        self.deliveries: list[tuple[bytes, list[int]]] = []
        """Webhook bodies sent and the statuses of their attempts (0: no answer)."""
        self._failures: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        self._http: httpx.AsyncClient | None = None

    # -- configuration for the code under test ------------------------------------------

    def config(self, **overrides: Any) -> ZendeskConfig:
        """A ``[zendesk]`` config pointing at the fake (valid unless overridden)."""
        values: Json = {"api_url": self.base_url, "app_id": self.app_id,
                        "key_id": self.key_id, "key_secret": self.key_secret,
                        "webhook_api_key": self.secret, "poll_interval_seconds": 0.1}
        return ZendeskConfig(**(values | overrides))

    def tenant(self, tenant_id: str = "t1", **overrides: Any) -> TenantConfig:
        """A tenant with ``provider = "zendesk"`` and :meth:`config`."""
        return TenantConfig(id=tenant_id, organization_id="o1", provider="zendesk",
                            zendesk=self.config(**overrides))

    # -- scripting ---------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh 24-hex id (Sunshine ids are 24 characters)."""
        return f"{next(self._ids):024x}"

    def add_message(self, conversation_id: str, author: Json, content: Json, *,
                    source: str = "api:conversations", metadata: Json | None = None) -> Json:
        """Store a message as the API would; the stored message."""
        message: Json = {"id": self.new_id(), "received": iso(utc_now()), "author": author,
                         "content": content, "source": {"type": source}}
        if metadata:
            message["metadata"] = metadata
        self.conversations[conversation_id].messages.append(message)
        return message

    def agent_says(self, conversation_id: str, text: str, name: str = "Zoe") -> str:
        """A business (agent) message from the agent workspace; its id."""
        author = {"type": "business", "displayName": name, "subtypes": ["agent"],
                  "avatarUrl": f"https://example.zendesk.com/avatars/{name}.png"}
        message = self.add_message(conversation_id, author, {"type": "text", "text": text},
                                   source="zd:agentWorkspace")
        return str(message["id"])

    def agent_sends_file(self, conversation_id: str, url: str, name: str = "Zoe") -> str:
        """A business ``image`` message; its id."""
        author = {"type": "business", "displayName": name}
        content = {"type": "image", "mediaUrl": url, "mediaType": "image/png",
                   "mediaSize": 1024, "altText": "photo.png"}
        return str(self.add_message(conversation_id, author, content,
                                    source="zd:agentWorkspace")["id"])

    def user_says(self, conversation_id: str, text: str) -> str:
        """A message by the conversation's user (e.g. from another client); its id."""
        conversation = self.conversations[conversation_id]
        author = {"type": "user", "userId": conversation.user_id}
        return str(self.add_message(conversation_id, author,
                                    {"type": "text", "text": text}, source="web")["id"])

    def remove(self, conversation_id: str) -> None:
        """Delete the conversation (later calls get 404)."""
        del self.conversations[conversation_id]

    async def agent_closes_ticket(self, conversation_id: str, *, release: bool = False,
                                  webhook: bool = True) -> int:
        """The agent solves the ticket: the workspace passes control back to lcx's
        integration (``release``: it releases control, no next integration) and, with
        ``webhook``, says so in a ``switchboard:*`` webhook; its status (0: none sent)."""
        conversation = self.conversations[conversation_id]
        conversation.active = dict(LCX_INTEGRATION)
        if not webhook:
            return 0
        kind = "switchboard:releaseControl" if release else "switchboard:passControl"
        payload: Json = {"conversation": conversation.wire(), "reason": "ticketClosed"}
        if not release:
            payload["metadata"] = {"origin": "zendesk"}
        return await self.emit([{"id": f"evt-{self.new_id()}", "type": kind,
                                 "createdAt": iso(utc_now()), "payload": payload}])

    async def agent_typing(self, conversation_id: str, typing: bool, *,
                           author_type: str = "business", name: str = "Zoe") -> int:
        """A ``conversation:typing`` webhook (``typing:start`` / ``typing:stop``)."""
        conversation = self.conversations[conversation_id]
        activity = {"type": "typing:start" if typing else "typing:stop",
                    "author": {"type": author_type, "displayName": name}}
        return await self.emit([{"id": f"evt-{self.new_id()}", "type": "conversation:typing",
                                 "createdAt": iso(utc_now()),
                                 "payload": {"conversation": conversation.wire(),
                                             "activity": activity}}])

    def fail_next(self, path_suffix: str, status: int, *, times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path_suffix`` fail."""
        self._failures.extend([(path_suffix, status)] * times)

    def clear_failures(self) -> None:
        """Forget the scripted failures not used yet (the outage is over)."""
        self._failures.clear()

    async def emit_message_webhook(self, conversation_id: str, message_id: str) -> int:
        """POST one ``conversation:message`` webhook; the last attempt's status."""
        return await self.emit_batch([(conversation_id, message_id)])

    async def emit_batch(self, messages: Iterable[tuple[str, str]]) -> int:
        """POST one envelope holding a ``conversation:message`` event per
        ``(conversation id, message id)``; the last attempt's status (0: no answer)."""
        events = [message_event(f"evt-{self.new_id()}", self.app_id,
                                self.conversations[c], self._message(c, m))
                  for c, m in messages]
        return await self.emit(events)

    async def emit(self, events: list[Json]) -> int:
        """POST an envelope with ``events`` to :attr:`webhook_url` (retrying per policy)."""
        body = json.dumps(envelope(self.app_id, events)).encode()
        statuses: list[int] = []
        self.deliveries.append((body, statuses))
        if not self.webhook_url or self._http is None:
            return 0
        headers = {"Content-Type": "application/json", "X-API-Key": self.secret}
        for _ in range(1 + self.retries):
            try:
                answer = await self._http.post(self.webhook_url, content=body, headers=headers)
                statuses.append(answer.status_code)
            except httpx.HTTPError:
                statuses.append(0)
            if 200 <= statuses[-1] < 300 or statuses[-1] in NO_RETRY:
                break
        return statuses[-1]

    # -- inspection --------------------------------------------------------------------

    def user_messages(self, conversation_id: str) -> list[str]:
        """The texts the user posted through the API, in order."""
        return [m["content"].get("text") for m in self.conversations[conversation_id].messages
                if m["author"]["type"] == "user" and m["source"]["type"] == "api:conversations"]

    def control_passes(self, conversation_id: str) -> list[Json]:
        """Switchboard calls on the conversation: ``{"action", **body}``, in order."""
        return list(self.conversations[conversation_id].passes)

    # -- internals ---------------------------------------------------------------------

    def _message(self, conversation_id: str, message_id: str) -> Json:
        return next(m for m in self.conversations[conversation_id].messages
                    if m["id"] == message_id)

    def scripted(self, path: str) -> Response | None:
        """The scripted failure for ``path``, if any (consumed)."""
        for i, (suffix, status) in enumerate(self._failures):
            if path.endswith(suffix):
                del self._failures[i]
                headers = {"Retry-After": "1"} if status == 429 else {}
                response = error(status, f"scripted {status}")
                response.headers.update(headers)
                return response
        return None

    def authorized(self, header: str) -> bool:
        """Whether an ``Authorization`` header carries the app key."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return key_id == self.key_id and secret == self.key_secret

    def app(self) -> QuartTrio:
        """The quart-trio app serving this fake."""
        app = QuartTrio("fake_sunshine")
        _routes(self, app)
        return app


def _routes(fake: FakeSunshine, app: QuartTrio) -> None:
    base = "/v2/apps/<app_id>"

    @app.before_request
    async def gate() -> Response | None:
        fake.requests.append((request.method, request.path))
        if request.method == "GET" and request.path.endswith("/messages"):
            fake.gets += 1
        if not fake.authorized(request.headers.get("Authorization", "")):
            return error(401, "Authorization is required")
        if request.view_args and request.view_args.get("app_id") != fake.app_id:
            return error(404, "App not found")
        return fake.scripted(request.path)

    @app.post(f"{base}/users")
    async def create_user(app_id: str) -> Response:
        body = await request.get_json(force=True, silent=True) or {}
        external = body.get("externalId")
        if not isinstance(external, str) or not external:
            return error(400, "externalId is required")
        if any(u["externalId"] == external for u in fake.users.values()):
            return error(409, "User already exists")
        user = {"id": fake.new_id(), "externalId": external,
                "profile": body.get("profile", {}), "signedUpAt": iso(utc_now()),
                "authenticated": False}
        fake.users[user["id"]] = user
        return _json({"user": user}, 201)

    @app.get(f"{base}/users/<user>")
    async def get_user(app_id: str, user: str) -> Response:
        found = fake.users.get(user) or next(
            (u for u in fake.users.values() if u["externalId"] == user), None)
        return _json({"user": found}) if found else error(404, "User not found")

    @app.post(f"{base}/conversations")
    async def create_conversation(app_id: str) -> Response:
        body = await request.get_json(force=True, silent=True) or {}
        participants = body.get("participants") or []
        if body.get("type") != "personal" or len(participants) != 1:
            return error(400, "personal conversations have exactly one participant")
        ref = participants[0]
        user = fake.users.get(ref.get("userId", "")) or next(
            (u for u in fake.users.values() if u["externalId"] == ref.get("userExternalId")),
            None)
        if user is None:
            return error(404, "User not found")
        conversation = FakeConversation(fake.new_id(), user["id"], body.get("metadata", {}))
        fake.conversations[conversation.id] = conversation
        return _json({"conversation": conversation.wire()}, 201)

    @app.get(f"{base}/conversations/<cid>")
    async def get_conversation(app_id: str, cid: str) -> Response:
        conversation = fake.conversations.get(cid)
        if conversation is None:
            return error(404, "Conversation not found")
        return _json({"conversation": conversation.wire()})

    @app.post(f"{base}/conversations/<cid>/messages")
    async def post_message(app_id: str, cid: str) -> Response:
        conversation = fake.conversations.get(cid)
        if conversation is None:
            return error(404, "Conversation not found")
        body = await request.get_json(force=True, silent=True) or {}
        problem = _invalid_post(conversation, body)
        if problem is not None:
            return problem
        if len(conversation.messages) >= fake.message_cap:
            return error(423, "Conversation has reached its message limit")
        message = fake.add_message(cid, body["author"], body["content"],
                                   metadata=body.get("metadata"))
        return _json({"messages": [message]}, 201)

    @app.get(f"{base}/conversations/<cid>/messages")
    async def list_messages(app_id: str, cid: str) -> Response:
        conversation = fake.conversations.get(cid)
        if conversation is None:
            return error(404, "Conversation not found")
        return _page(fake, conversation, request.args)

    @app.post(f"{base}/conversations/<cid>/activity")
    async def activity(app_id: str, cid: str) -> Response:
        conversation = fake.conversations.get(cid)
        if conversation is None:
            return error(404, "Conversation not found")
        body = await request.get_json(force=True, silent=True) or {}
        kind = body.get("type")
        if kind not in ("typing:start", "typing:stop", "conversation:read"):
            return error(400, "type is invalid")
        if (body.get("author") or {}).get("type") == "user" and kind != "conversation:read":
            return error(400, "users may only send conversation:read")
        conversation.activities.append(body)
        return _json({})

    for action in ("passControl", "releaseControl", "offerControl", "acceptControl"):
        app.add_url_rule(f"{base}/conversations/<cid>/{action}", f"switchboard_{action}",
                         _switchboard(fake, action), methods=["POST"])


def _switchboard(fake: FakeSunshine, action: str) -> Callable[[str, str],
                                                             Awaitable[Response]]:
    async def handle(app_id: str, cid: str) -> Response:
        return await _control(fake, action, cid)

    return handle


async def _control(fake: FakeSunshine, action: str, cid: str) -> Response:
    conversation = fake.conversations.get(cid)
    if conversation is None:
        return error(404, "Conversation not found")
    body = await request.get_json(force=True, silent=True) or {}
    if action != "releaseControl" and not body.get("switchboardIntegration"):
        return error(400, "switchboardIntegration is required")
    conversation.passes.append({"action": action, **body})
    if action == "passControl":
        conversation.active = dict(AGENT_WORKSPACE)  # "next" is the agent workspace
    elif action == "releaseControl":
        conversation.active = dict(LCX_INTEGRATION)
    return _json({})


def _invalid_post(conversation: FakeConversation, body: Json) -> Response | None:
    author, content = body.get("author") or {}, body.get("content") or {}
    if author.get("type") not in ("business", "user"):
        return error(400, "author.type must be business or user")
    if author.get("type") == "user" and author.get("userId") != conversation.user_id \
            and "userExternalId" not in author:
        return error(400, "author.userId is not a participant")
    if content.get("type") != "text" or not isinstance(content.get("text"), str):
        return error(400, "content must be {type: text, text}")
    if len(content["text"]) > MAX_TEXT:
        return error(400, f"content.text is longer than {MAX_TEXT} characters")
    return None


def _page(fake: FakeSunshine, conversation: FakeConversation,
          args: Mapping[str, str]) -> Response:
    """One page of the message list, backwards (PROVIDERS 3.3)."""
    messages = conversation.messages
    ids = [m["id"] for m in messages]
    before, after = args.get("page[before]"), args.get("page[after]")
    if before and after:
        return error(400, "page[before] and page[after] are exclusive")
    for cursor in (before, after):
        if cursor and cursor not in ids:
            return error(400, f"unknown cursor {cursor}")
    if after:
        start = ids.index(after) + 1
        stop = min(len(messages), start + PAGE)
    else:
        stop = ids.index(before) if before else len(messages)
        start = max(0, stop - PAGE)
    chosen = messages[start:stop]
    url = (f"{fake.base_url}/v2/apps/{fake.app_id}/conversations/{conversation.id}"
           "/messages")
    links: Json = {}
    if start > 0:
        links["prev"] = f"{url}?{urlencode({'page[before]': chosen[0]['id']})}"
    if stop < len(messages) and chosen:
        links["next"] = f"{url}?{urlencode({'page[after]': chosen[-1]['id']})}"
    meta = {"hasMore": start > 0 if not after else stop < len(messages),
            "beforeCursor": chosen[0]["id"] if chosen else None,
            "afterCursor": chosen[-1]["id"] if chosen else None}
    return _json({"messages": chosen, "meta": meta, "links": links})


@asynccontextmanager
async def open_fake_sunshine(**options: Any) -> AsyncIterator[FakeSunshine]:
    """Serve a :class:`FakeSunshine` (``options``: its constructor's) on 127.0.0.1, a free
    port, for the block; it owns its webhook HTTP client."""
    fake = FakeSunshine(**options)
    async with httpx.AsyncClient(timeout=10.0) as http, trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url, fake._http = binding.url, http
        yield fake
        nursery.cancel_scope.cancel()
