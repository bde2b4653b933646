"""Zendesk Sunshine Conversations API v2 (PROVIDERS.md section 3) as an lcx provider.

lcx plays the *user* (the customer) of a Sunshine Conversations app; the humans answer
from the Zendesk agent workspace. Every call is Basic ``key_id:key_secret`` through
:class:`~adapters.policy.EdgeHttp` with the breaker account ``zendesk:<app id>``.

- :meth:`ZendeskProvider.open`: the user ``lcx:<tenant id>:<subHandle>`` is created
  (``POST /users``; a 409 ``conflict`` means it exists: ``GET /users/<externalId>``), then a
  ``personal`` conversation with ``metadata.lcxConversationId``, then **hand-over**:
  ``passControl`` to ``"next"``. The app's switchboard is expected to be configured as
  *default = the API integration lcx uses, next = the Zendesk agent workspace*: passing
  control to "next" is what puts the conversation in front of the agents (the workspace
  opens a ticket). The metadata (``lcxConversationId``, ``lcxTenantId``) goes with it.
  Not idempotent: each call creates another conversation (the user is reused).
- :meth:`ZendeskProvider.stream` returns at once: Zendesk is *polled per tenant*
  (:meth:`ZendeskProvider.poll`, run by :mod:`services.tenant_pollers`), not followed per chat.
- :meth:`ZendeskProvider.poll`: for each open conversation, the newest page of
  ``GET .../messages`` (fixed 100, chronological within the page), followed backwards with
  ``page[before]`` until the cursor (``lastMessageId``) is found, the page starts before
  ``lastReceived`` (the cursor message was deleted), there is no more, or
  :data:`MAX_PAGES` pages were read. Messages after the cursor whose ``author.type`` is
  ``business`` become :class:`EdgeMessage`\\ s (external id = the message id); the first
  one of a conversation is preceded by :class:`AgentJoined` (``<message id>:joined``) and
  the agent is kept in the session. The cursor moves to the newest message of any author.
  A 404 conversation gives :class:`EdgeEnded` (``<conversation id>:ended``) and its session
  is marked ``ended`` (not polled again). After the messages, ``GET .../conversations/<id>``
  tells whether the agent workspace gave the conversation back (the agent solved or
  closed the ticket: its ``activeSwitchboardIntegration`` is no longer of type
  ``zd:agentWorkspace``): then :class:`EdgeEnded` (``<conversation id>:released``) and the
  session is marked ``ended``. Any other failure fails the whole poll (429/5xx:
  retryable, the poller waits one interval). Only changed sessions are returned.
- :meth:`ZendeskProvider.send`: messages as ``author.type user`` text (split at whitespace
  into parts of at most 4,096 characters, at most :data:`MAX_PARTS`; attachments as URL
  lines; ``metadata.lcxMessageId``). Typing is **not sent**: users may only post the
  ``conversation:read`` activity. :class:`EndSession` is ``releaseControl``: control goes
  back to the default integration (lcx), so the agent workspace lets go of the
  conversation (its ticket is closed by Zendesk); a 404 (conversation gone) succeeds.
- Webhooks (``/events/zendesk``): :meth:`ZendeskProvider.verify` picks the tenant by the
  envelope's ``app.id`` and compares ``X-API-Key`` with its ``webhook_api_key`` in constant
  time; :meth:`ZendeskProvider.parse` (pure) turns ``conversation:message`` events by a
  ``business`` author into :class:`WebhookItem`\\ s (``side="provider"``, event id = the
  event's id, external id = the Zendesk conversation id) carrying the same
  :class:`EdgeMessage` the poll would build (same external id: applied once), and
  ``conversation:remove`` into :class:`EdgeEnded` (same id as the poll's),
  ``switchboard:releaseControl`` and a ``switchboard:passControl`` that leaves a
  non-workspace integration active into the same :class:`EdgeEnded` the poll gives
  (``<conversation id>:released``), and ``conversation:typing`` by a ``business`` author
  into :class:`EdgeTyping` (``typing:start`` / ``typing:stop``; the user's is ignored).
  Joins come
  from the poll only (``parse`` has no session to know the first message). Other events
  are ignored.

Session (stored as JSON, handed back to every call)::

    {"appId", "conversationId", "userId", "userExternalId", "tenantId",
     "lastMessageId", "lastReceived",        # the poll cursor (None: from the start)
     "agent": {"id", "name"},                # once an agent spoke
     "ended": True}                          # once the conversation was gone (404)

Not emulated: JWT auth (Basic is enough for an app key).
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

from adapters.edges import (
    AgentJoined,
    AnyEdgeCommand,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTyping,
    Emit,
    EndSession,
    PollBatch,
    Save,
    SendMessage,
    Session,
    WebhookBatch,
    WebhookItem,
)
from adapters.policy import EdgeHttp
from lcx.config import TenantConfig, ZendeskConfig
from lcx.errors import ConfigError, InvalidRequest, Unauthorized
from lcx.model import AgentRef, Attachment, Conversation

__all__ = ["MAX_PAGES", "MAX_PARTS", "MAX_TEXT", "ZendeskProvider", "edge_message",
           "external_id_of", "text_parts"]

log = logging.getLogger("lcx.provider.zendesk")

MAX_TEXT = 4096
"""Sunshine's cap on a text message."""
MAX_PARTS = 10
"""At most this many posts per message; longer text is cut (ending in :data:`CUT_MARK`)."""
CUT_MARK = " […]"
MAX_PAGES = 50
"""At most this many message pages (of 100) read backwards per conversation and poll."""
API_KEY_HEADER = "x-api-key"
AGENT_WORKSPACE = "zd:agentWorkspace"
"""The ``integrationType`` of the Zendesk agent workspace: while it is the conversation's
active switchboard integration, the humans have the conversation."""

T = TypeVar("T")


def account(app_id: str) -> str:
    """The circuit-breaker account of one Sunshine app."""
    return f"zendesk:{app_id}"


def external_id_of(tenant_id: str, sub_handle: str) -> str:
    """The Sunshine ``externalId`` of an lcx end user."""
    return f"lcx:{tenant_id}:{sub_handle}"


# --- wire shapes (only what lcx reads; unknown fields are ignored) -------------------------


class _Author(msgspec.Struct, kw_only=True, rename="camel"):
    type: str
    user_id: str | None = None
    display_name: str | None = None


class _Content(msgspec.Struct, kw_only=True, rename="camel"):
    type: str
    text: str | None = None
    markdown_text: str | None = None
    media_url: str | None = None
    media_type: str | None = None
    media_size: int | None = None
    alt_text: str | None = None


class _Message(msgspec.Struct, kw_only=True):
    id: str
    author: _Author
    content: _Content
    received: str | None = None


class _Meta(msgspec.Struct, kw_only=True, rename="camel"):
    has_more: bool = False
    before_cursor: str | None = None


class _Page(msgspec.Struct, kw_only=True):
    messages: list[_Message] = []
    meta: _Meta = msgspec.field(default_factory=_Meta)


class _Id(msgspec.Struct, kw_only=True):
    id: str


class _User(msgspec.Struct, kw_only=True):
    user: _Id


class _Conversation(msgspec.Struct, kw_only=True):
    conversation: _Id


class _Event(msgspec.Struct, kw_only=True):
    id: str
    type: str
    payload: msgspec.Raw = msgspec.Raw(b"{}")


class _Envelope(msgspec.Struct, kw_only=True):
    app: _Id
    events: list[_Event] = []


class _MessagePayload(msgspec.Struct, kw_only=True):
    conversation: _Id
    message: _Message


class _RemovePayload(msgspec.Struct, kw_only=True):
    conversation: _Id


class _Integration(msgspec.Struct, kw_only=True, rename="camel"):
    id: str | None = None
    name: str | None = None
    integration_type: str | None = None


class _SwitchboardConversation(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    active_switchboard_integration: _Integration | None = None


class _SwitchboardPayload(msgspec.Struct, kw_only=True):
    conversation: _SwitchboardConversation
    reason: str | None = None


class _ConversationAnswer(msgspec.Struct, kw_only=True):
    conversation: _SwitchboardConversation


class _Activity(msgspec.Struct, kw_only=True):
    type: str
    author: _Author | None = None


class _TypingPayload(msgspec.Struct, kw_only=True):
    conversation: _Id
    activity: _Activity


def _decode(response: httpx.Response, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EdgeCallFailed(f"{what}: unexpected response: {exc}", retry=False,
                             status=response.status_code) from exc


# --- pure mapping ----------------------------------------------------------------------


def _agent(author: _Author) -> AgentRef:
    return AgentRef(id=author.user_id or author.display_name or "zendesk",
                    name=author.display_name)


def edge_message(message: _Message) -> EdgeMessage:
    """The :class:`EdgeMessage` of a Sunshine message (pure): text as is; ``image`` and
    ``file`` as a ``file`` message with an attachment from ``mediaUrl``; any other content
    type as its text, or ``[<type>]`` when it has none."""
    content = message.content
    text = content.text or content.markdown_text
    author = _agent(message.author)
    if content.type in ("image", "file") and content.media_url:
        name = content.alt_text or unquote(urlsplit(content.media_url).path.rsplit("/", 1)[-1])
        attachment = Attachment(url=content.media_url, name=name or None,
                                content_type=content.media_type, size=content.media_size)
        return EdgeMessage(external_id=message.id, author=author, type="file", text=text,
                           attachments=(attachment,))
    if content.type != "text":
        text = text or f"[{content.type}]"
    return EdgeMessage(external_id=message.id, author=author, text=text)


def text_parts(text: str | None, attachments: tuple[Attachment, ...] = (), *,
               limit: int = MAX_TEXT, max_parts: int = MAX_PARTS) -> list[str]:
    """The texts to post for one message (pure): text then attachment URL lines, split at
    whitespace into parts of at most ``limit`` characters; past ``max_parts`` the last part
    is cut and ends with :data:`CUT_MARK`. Empty when there is nothing to say."""
    lines = [text] if text else []
    lines += [f"{a.name}: {a.url}" if a.name else a.url for a in attachments]
    rest = "\n".join(lines).strip()
    parts: list[str] = []
    while len(rest) > limit and len(parts) < max_parts - 1:
        cut = max(rest.rfind(" ", 0, limit + 1), rest.rfind("\n", 0, limit + 1))
        cut = cut if cut > limit // 2 else limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if len(rest) > limit:
        rest = rest[:limit - len(CUT_MARK)] + CUT_MARK
    return parts + ([rest] if rest else [])


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _unseen(messages: list[_Message], last_id: str | None,
            last_at: datetime | None) -> list[_Message]:
    """The messages after the cursor (pure): after ``last_id`` when present, otherwise
    those received after ``last_at`` (or all, without a cursor)."""
    ids = [m.id for m in messages]
    if last_id is not None and last_id in ids:
        return messages[ids.index(last_id) + 1:]
    if last_at is None:
        return messages
    return [m for m in messages if _newer(m, last_at)]


def _newer(message: _Message, moment: datetime) -> bool:
    received = _moment(message.received)
    return received is None or received > moment


def _events(session: Session, messages: list[_Message]) -> list[AnyEdgeEvent]:
    """The events of new messages (business authors only); records the first agent in
    ``session``."""
    events: list[AnyEdgeEvent] = []
    for message in messages:
        if message.author.type != "business":
            continue
        event = edge_message(message)
        if not session.get("agent") and event.author is not None:
            events.append(AgentJoined(external_id=f"{message.id}:joined", agent=event.author))
            session["agent"] = {"id": event.author.id, "name": event.author.name}
        events.append(event)
    return events


def humans_done(conversation: _SwitchboardConversation) -> bool:
    """Whether the agent workspace let go of the conversation (pure): a switchboard is
    configured and its active integration is no longer the agent workspace."""
    active = conversation.active_switchboard_integration
    return active is not None and active.integration_type != AGENT_WORKSPACE


def _released(conversation_id: str, reason: str | None) -> EdgeEnded:
    """The end of a conversation the agent workspace gave back (same id from the webhook
    and from the poll)."""
    return EdgeEnded(external_id=f"{conversation_id}:released",
                     reason=reason or "agent workspace released the conversation")


# --- the provider ------------------------------------------------------------------------


class ZendeskProvider:
    """The ``zendesk`` provider, tenant poller and webhook receiver (see the module
    docstring). Owns nothing: the :class:`EdgeHttp` (and its client) belongs to the caller.
    """

    name = "zendesk"
    alias = "zendesk"

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp) -> None:
        """Index the tenants with a ``[zendesk]`` table by id and by Sunshine ``app_id``.

        Raises:
            ConfigError: two tenants claim the same app (its webhooks could not be told
                apart).
        """
        self.http = http
        self._tenants: dict[str, TenantConfig] = {}
        self._by_app: dict[str, TenantConfig] = {}
        for tenant in tenants.values():
            if tenant.zendesk is None:
                continue
            self._tenants[tenant.id] = tenant
            app = tenant.zendesk.app_id
            if app and app in self._by_app:
                raise ConfigError(f"tenants: {self._by_app[app].id} and {tenant.id} share "
                                  f"zendesk.app_id {app!r}")
            if app:
                self._by_app[app] = tenant

    # -- Provider ----------------------------------------------------------------------

    async def open(self, conversation: Conversation, tenant: TenantConfig) -> Session:
        """Create (or find) the user, create the conversation and hand it over to the
        agents (``passControl`` to ``next``); its session.

        Raises:
            EdgeCallFailed: no ``[zendesk]`` table (not retryable) or a call failed.
        """
        config = _zendesk(tenant)
        external = external_id_of(tenant.id, conversation.sub_handle)
        user_id = await self._user(config, conversation, external)
        body = {"type": "personal", "participants": [{"userExternalId": external}],
                "metadata": {"lcxConversationId": conversation.id, "lcxTenantId": tenant.id}}
        response = await self._call(config, "POST", "/conversations",
                                    what="zendesk create conversation", json=body)
        conversation_id = _decode(response, _Conversation,
                                  "zendesk create conversation").conversation.id
        await self._call(config, "POST", f"/conversations/{_q(conversation_id)}/passControl",
                         what="zendesk pass control",
                         json={"switchboardIntegration": "next", "metadata": body["metadata"]})
        return {"appId": config.app_id, "conversationId": conversation_id, "userId": user_id,
                "userExternalId": external, "lastMessageId": None, "lastReceived": None,
                "tenantId": tenant.id}

    async def stream(self, session: Session, emit: Emit, save: Save) -> None:
        """Return at once: Zendesk conversations are polled per tenant (:meth:`poll`)."""
        return None

    async def send(self, session: Session, command: AnyEdgeCommand) -> None:
        """Post a message as the user (split, see the module docstring; nothing when empty),
        nothing for typing (users may not send typing activity), or ``releaseControl`` for
        the end (a conversation already gone succeeds). A retried message whose first parts
        went through repeats them.

        Raises:
            EdgeCallFailed: with its retry classification.
        """
        config = self._config_of(session)
        path = f"/conversations/{_q(str(session['conversationId']))}"
        if isinstance(command, SendMessage):
            for n, text in enumerate(text_parts(command.text, command.attachments)):
                body = {"author": {"type": "user", "userId": session["userId"]},
                        "content": {"type": "text", "text": text},
                        "metadata": {"lcxMessageId": command.message_id, "lcxPart": n}}
                await self._call(config, "POST", f"{path}/messages",
                                 what="zendesk send message", json=body)
        elif isinstance(command, EndSession):
            try:
                await self._call(config, "POST", f"{path}/releaseControl",
                                 what="zendesk release control", json={})
            except EdgeCallFailed as exc:
                if exc.status != 404:
                    raise
                log.info("zendesk conversation already gone",
                         extra={"conversationId": command.conversation_id})

    # -- TenantPoller ------------------------------------------------------------------

    async def poll(self, tenant: TenantConfig, sessions: Mapping[str, Session]) -> PollBatch:
        """New agent events of the tenant's open conversations (see the module docstring).

        Raises:
            EdgeCallFailed: a call other than a conversation's 404 failed (429/5xx/network:
                retryable); nothing is returned then, cursors stay where they were.
        """
        config = _zendesk(tenant)
        events: list[tuple[str, AnyEdgeEvent]] = []
        moved: dict[str, Session] = {}
        for lcx_id, stored in sessions.items():
            if stored.get("ended"):
                continue
            session = dict(stored)
            found = await self._poll_one(config, session)
            events += [(lcx_id, event) for event in found]
            if session != stored:
                moved[lcx_id] = session
        return PollBatch(events=tuple(events), sessions=moved)

    async def _poll_one(self, config: ZendeskConfig, session: Session) -> list[AnyEdgeEvent]:
        conversation_id = str(session["conversationId"])
        try:
            messages = await self._messages_since(config, session)
        except EdgeCallFailed as exc:
            if exc.status != 404:
                raise
            session["ended"] = True
            return [EdgeEnded(external_id=f"{conversation_id}:ended", reason="not_found")]
        events = _events(session, messages)
        if messages:
            session["lastMessageId"] = messages[-1].id
            session["lastReceived"] = messages[-1].received or session.get("lastReceived")
        if await self._released(config, conversation_id):
            session["ended"] = True
            events.append(_released(conversation_id, None))
        return events

    async def _released(self, config: ZendeskConfig, conversation_id: str) -> bool:
        """Whether the agent workspace gave the conversation back (see :func:`humans_done`);
        a conversation gone in between counts as given back."""
        try:
            response = await self._call(config, "GET", f"/conversations/{_q(conversation_id)}",
                                        what="zendesk get conversation")
        except EdgeCallFailed as exc:
            if exc.status != 404:
                raise
            return True
        return humans_done(_decode(response, _ConversationAnswer,
                                   "zendesk get conversation").conversation)

    async def _messages_since(self, config: ZendeskConfig, session: Session
                              ) -> list[_Message]:
        """The messages after the session's cursor, oldest first (reading backwards)."""
        last_id = session.get("lastMessageId")
        last_at = _moment(session.get("lastReceived"))
        path = f"/conversations/{_q(str(session['conversationId']))}/messages"
        pages: list[list[_Message]] = []
        params: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            response = await self._call(config, "GET", path, what="zendesk list messages",
                                        params=params)
            page = _decode(response, _Page, "zendesk list messages")
            pages.append(page.messages)
            if _reached(page, last_id, last_at):
                break
            params = {"page[before]": page.meta.before_cursor or page.messages[0].id}
        else:
            log.warning("zendesk: cursor not found within %d pages; older messages skipped",
                        MAX_PAGES, extra={"conversationId": session["conversationId"]})
        ordered = {m.id: m for page_messages in reversed(pages) for m in page_messages}
        return _unseen(list(ordered.values()), last_id, last_at)

    # -- WebhookReceiver ---------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check ``X-API-Key`` against the ``webhook_api_key`` of the envelope's app.

        Raises:
            InvalidRequest: the body is not JSON.
            Unauthorized: no envelope, unknown app, wrong or missing key (an empty
                configured key refuses everything).
        """
        try:
            envelope = _envelope(body)
        except InvalidRequest as exc:
            if not isinstance(exc.__cause__, msgspec.ValidationError):
                raise
            raise Unauthorized("zendesk webhook: no envelope to verify") from exc
        expected = _zendesk_or_unauthorized(self._tenant_of(envelope.app.id)).webhook_api_key
        given = next((v for k, v in headers.items() if k.lower() == API_KEY_HEADER), "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("zendesk webhook: wrong X-API-Key")

    def parse(self, body: bytes) -> WebhookBatch:
        """The items of a verified body (pure; see the module docstring).

        Raises:
            InvalidRequest: the body or an event payload does not have Sunshine's shape.
            Unauthorized: no tenant uses the envelope's app.
        """
        envelope = _envelope(body)
        tenant = self._tenant_of(envelope.app.id)
        items = [item for event in envelope.events
                 for item in _parse_event(tenant.id, event)]
        return WebhookBatch(items=tuple(items))

    # -- internals ---------------------------------------------------------------------

    def _tenant_of(self, app_id: str) -> TenantConfig:
        tenant = self._by_app.get(app_id)
        if tenant is None:
            raise Unauthorized("zendesk webhook: unknown app")
        return tenant

    def _config_of(self, session: Session) -> ZendeskConfig:
        tenant = self._tenants.get(str(session.get("tenantId")))
        if tenant is None:
            raise EdgeCallFailed(f"zendesk: unknown tenant {session.get('tenantId')!r}",
                                 retry=False)
        return _zendesk(tenant)

    async def _user(self, config: ZendeskConfig, conversation: Conversation,
                    external: str) -> str:
        profile: dict[str, Any] = {
            "givenName": conversation.subscriber.name or conversation.sub_handle}
        if conversation.subscriber.email:
            profile["email"] = conversation.subscriber.email
        try:
            response = await self._call(config, "POST", "/users", what="zendesk create user",
                                        json={"externalId": external, "profile": profile})
        except EdgeCallFailed as exc:
            if exc.status != 409:
                raise
            response = await self._call(config, "GET", f"/users/{_q(external)}",
                                        what="zendesk get user")
        return _decode(response, _User, "zendesk user").user.id

    async def _call(self, config: ZendeskConfig, method: str, path: str, *, what: str,
                    **kwargs: Any) -> httpx.Response:
        """One call to ``{api_url}/v2/apps/{app_id}{path}`` (Basic auth).

        Raises:
            EdgeCallFailed: classified by :mod:`adapters.policy`.
        """
        token = base64.b64encode(f"{config.key_id}:{config.key_secret}".encode()).decode()
        url = f"{config.api_url.rstrip('/')}/v2/apps/{_q(config.app_id)}{path}"
        return await self.http.request(account(config.app_id), method, url, what=what,
                                       headers={"Authorization": f"Basic {token}"}, **kwargs)


def _reached(page: _Page, last_id: str | None, last_at: datetime | None) -> bool:
    """Whether reading further back is useless: the cursor is in ``page``, the page
    starts before the cursor's time, or there is nothing older."""
    if not page.messages or not page.meta.has_more:
        return True
    if last_id is not None and any(m.id == last_id for m in page.messages):
        return True
    oldest = _moment(page.messages[0].received)
    return last_at is not None and oldest is not None and oldest < last_at


def _parse_event(tenant_id: str, event: _Event) -> list[WebhookItem]:
    if event.type == "conversation:message":
        payload = _payload(event, _MessagePayload)
        if payload.message.author.type != "business":
            return []
        return [WebhookItem(side="provider", event_id=event.id, tenant_id=tenant_id,
                            external_id=payload.conversation.id, kind="event",
                            event=edge_message(payload.message))]
    if event.type in ("switchboard:passControl", "switchboard:releaseControl"):
        control = _payload(event, _SwitchboardPayload)
        if event.type == "switchboard:passControl" and not humans_done(control.conversation):
            return []  # control went to the agents (lcx's own hand-over)
        conversation_id = control.conversation.id
        return [WebhookItem(side="provider", event_id=event.id, tenant_id=tenant_id,
                            external_id=conversation_id, kind="event",
                            event=_released(conversation_id, control.reason))]
    if event.type == "conversation:typing":
        typing = _payload(event, _TypingPayload)
        author = typing.activity.author
        if author is None or author.type != "business" or \
                typing.activity.type not in ("typing:start", "typing:stop"):
            return []
        return [WebhookItem(side="provider", event_id=event.id, tenant_id=tenant_id,
                            external_id=typing.conversation.id, kind="event",
                            event=EdgeTyping(agent=_agent(author),
                                             typing=typing.activity.type == "typing:start"))]
    if event.type == "conversation:remove":
        conversation_id = _payload(event, _RemovePayload).conversation.id
        return [WebhookItem(side="provider", event_id=event.id, tenant_id=tenant_id,
                            external_id=conversation_id, kind="event",
                            event=EdgeEnded(external_id=f"{conversation_id}:ended",
                                            reason="removed"))]
    return []


def _payload(event: _Event, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(event.payload, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"zendesk webhook: bad {event.type} payload: {exc}") from exc


def _envelope(body: bytes) -> _Envelope:
    try:
        return msgspec.json.decode(body, type=_Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"zendesk webhook: {exc}") from exc


def _q(value: str) -> str:
    return quote(value, safe="")


def _zendesk(tenant: TenantConfig) -> ZendeskConfig:
    if tenant.zendesk is None:
        raise EdgeCallFailed(f"tenant {tenant.id} has no [zendesk] table", retry=False)
    return tenant.zendesk


def _zendesk_or_unauthorized(tenant: TenantConfig) -> ZendeskConfig:
    if tenant.zendesk is None:  # pragma: no cover - only tenants with a table are indexed
        raise Unauthorized("zendesk webhook: unknown app")
    return tenant.zendesk
