"""Genesys Cloud guest chat (webchat v2, PROVIDERS.md section 1) as an lcx provider.

lcx plays the *guest*: :meth:`GenesysProvider.open` creates a guest chat routed to the
tenant's queue, :meth:`~GenesysProvider.stream` follows its event stream
(:mod:`adapters.genesys_stream`), :meth:`~GenesysProvider.send` posts messages and typing
and ends the chat. Guest calls carry the chat's guest JWT; platform calls (lookups such as
:meth:`~GenesysProvider.find_queue`) carry an OAuth client-credentials token from
:class:`TokenCache`. Every call goes through :class:`~adapters.policy.EdgeHttp` with the
breaker account ``genesys:<organization id>``.

The guest chat API is deprecated by Genesys (web messaging is its successor): this module
is the only place that knows it.

Session (stored as JSON, handed back to every call)::

    {"conversationId", "memberId", "jwt", "eventStreamUri",   # from the create response
     "tenantId", "apiUrl", "organizationId"}                  # where and whose

Messages longer than 4,000 characters (the guest API's limit) are split at whitespace
into at most :data:`MAX_PARTS` posts; beyond that the text is cut with a marker.
Attachments travel as their URLs on lines after the text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec
import trio

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    Emit,
    EndSession,
    Save,
    SendMessage,
    SendTyping,
    Session,
)
from adapters.genesys_stream import (
    ChatMessage,
    GuestStream,
    MemberInfo,
    StreamTarget,
    is_state_error,
)
from adapters.policy import EdgeHttp
from lcx.config import GenesysConfig, TenantConfig
from lcx.model import Attachment, Conversation
from lcx.runtime.policy import Backoff

__all__ = ["DEFAULT_BACKOFF", "MAX_BODY_CHARS", "MAX_PARTS", "GenesysProvider", "TokenCache",
           "create_body", "message_parts"]

log = logging.getLogger("lcx.provider.genesys")

GUEST_PATH = "/api/v2/webchat/guest/conversations"
MAX_BODY_CHARS = 4000
"""The guest API's limit on one message body."""
MAX_PARTS = 5
"""At most this many posts per message; longer text is cut (ending in :data:`CUT_MARK`)."""
CUT_MARK = " […]"
HISTORY_PAGE = 100
"""``maxResults`` of history reads (the API's maximum)."""
DEFAULT_BACKOFF = Backoff(initial_seconds=0.5, maximum_seconds=30.0, jitter=0.2,
                          reset_after_seconds=30.0)
DEFAULT_HEARTBEAT_TIMEOUT = 65.0
"""Seconds without any frame before the socket is judged dead. The guest heartbeat
interval is UNVERIFIED (the Notifications API's is ~30 s): two missed beats plus slack."""


def account(organization_id: str) -> str:
    """The circuit-breaker account of one Genesys organization."""
    return f"genesys:{organization_id}"


class _Token(msgspec.Struct, kw_only=True):
    access_token: str
    expires_in: float = 3600.0


@dataclass
class _Cached:
    value: str
    refresh_at: float


class TokenCache:
    """OAuth client-credentials tokens (PROVIDERS.md 1.2), one per login host and client.

    A token is reused until ``margin`` seconds (at most half its lifetime) before
    ``expires_in`` runs out; concurrent callers share one token request. Owns nothing but
    the tokens; HTTP goes through the given :class:`EdgeHttp`.
    """

    def __init__(self, http: EdgeHttp, *, margin: float = 60.0) -> None:
        self.http = http
        self.margin = margin
        self._tokens: dict[tuple[str, str], _Cached] = {}
        self._locks: dict[tuple[str, str], trio.Lock] = {}

    async def token(self, config: GenesysConfig) -> str:
        """A valid access token for the tenant's client.

        Raises:
            EdgeCallFailed: the login host refused (bad credentials: ``auth``, not
                retryable) or is unreachable (retryable).
        """
        key = (config.login_url, config.client_id)
        async with self._locks.setdefault(key, trio.Lock()):
            cached = self._tokens.get(key)
            if cached is None or trio.current_time() >= cached.refresh_at:
                cached = self._tokens[key] = await self._fetch(config)
            return cached.value

    def invalidate(self, config: GenesysConfig, token: str) -> None:
        """Forget ``token`` (refused with a 401) unless it was already replaced."""
        key = (config.login_url, config.client_id)
        cached = self._tokens.get(key)
        if cached is not None and cached.value == token:
            del self._tokens[key]

    async def _fetch(self, config: GenesysConfig) -> _Cached:
        try:
            response = await self.http.request(
                account(config.organization_id), "POST", f"{config.login_url}/oauth/token",
                what="genesys oauth token", auth=(config.client_id, config.client_secret),
                data={"grant_type": "client_credentials"})
        except EdgeCallFailed as exc:
            if exc.status == 400:  # Genesys answers bad credentials with 400 unauthorized_client
                self.http.auth_failures += 1
                raise EdgeCallFailed(str(exc), retry=False, auth=True, status=400) from exc
            raise
        token = _decode(response, _Token, "genesys oauth token")
        lifetime = max(0.0, token.expires_in)
        refresh_at = trio.current_time() + lifetime - min(self.margin, lifetime / 2)
        return _Cached(token.access_token, refresh_at)


T = TypeVar("T")


def _decode(response: httpx.Response, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EdgeCallFailed(f"{what}: unexpected response: {exc}", retry=False,
                             status=response.status_code) from exc


def create_body(conversation: Conversation, tenant_id: str,
                config: GenesysConfig) -> dict[str, Any]:
    """The ``CreateWebChatConversationRequest`` for one lcx conversation (PROVIDERS 1.4)."""
    subscriber = conversation.subscriber
    member: dict[str, Any] = {
        "displayName": subscriber.name or conversation.sub_handle,
        "customFields": {"lcxConversationId": conversation.id, "lcxTenantId": tenant_id}}
    if subscriber.email:
        member["email"] = subscriber.email
    if subscriber.phone:
        member["phoneNumber"] = subscriber.phone
    return {"organizationId": config.organization_id, "deploymentId": config.deployment_id,
            "routingTarget": {"targetType": "QUEUE", "targetAddress": config.queue_name},
            "memberInfo": member}


def message_parts(text: str | None, attachments: tuple[Attachment, ...] = (), *,
                  limit: int = MAX_BODY_CHARS, max_parts: int = MAX_PARTS) -> list[str]:
    """The bodies to post for one message: text then attachment URLs, split at whitespace
    into pieces of at most ``limit`` characters; past ``max_parts`` pieces the last one is
    cut and ends with a marker. Empty when there is nothing to say."""
    lines = [text] if text else []
    lines += [f"{a.name}: {a.url}" if a.name else a.url for a in attachments]
    rest = "\n".join(lines).strip()
    parts: list[str] = []
    while rest and len(parts) < max_parts - 1 and len(rest) > limit:
        cut = max(rest.rfind(" ", 0, limit + 1), rest.rfind("\n", 0, limit + 1))
        cut = cut if cut > limit // 2 else limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if len(rest) > limit:
        rest = rest[:limit - len(CUT_MARK)] + CUT_MARK
    return parts + ([rest] if rest else [])


class GuestSession(msgspec.Struct, kw_only=True, rename="camel"):
    """The stored session, typed (see the module docstring)."""

    conversation_id: str
    member_id: str
    jwt: str
    event_stream_uri: str
    tenant_id: str
    api_url: str
    organization_id: str


class _Created(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    jwt: str
    event_stream_uri: str
    member: MemberInfo


class _Page(msgspec.Struct, Generic[T], kw_only=True):
    entities: list[T] = []


class _Queue(msgspec.Struct, kw_only=True):
    id: str
    name: str | None = None


class _GuestApi:
    """Guest REST calls of one chat (guest JWT), for sending and for its stream."""

    def __init__(self, http: EdgeHttp, session: GuestSession) -> None:
        self.http = http
        self.session = session
        self.base = (f"{session.api_url}{GUEST_PATH}/"
                     f"{quote(session.conversation_id, safe='')}")
        self.me = f"/members/{quote(session.member_id, safe='')}"

    async def call(self, method: str, path: str, *, what: str,
                   **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.session.jwt}"}
        return await self.http.request(account(self.session.organization_id), method,
                                       self.base + path, what=what, headers=headers,
                                       **kwargs)

    async def member(self, member_id: str) -> MemberInfo:
        response = await self.call("GET", f"/members/{quote(member_id, safe='')}",
                                   what="genesys get member")
        return _decode(response, MemberInfo, "genesys get member")

    async def members(self) -> list[MemberInfo]:
        response = await self.call("GET", "/members", what="genesys list members",
                                   params={"pageSize": 100,
                                           "excludeDisconnectedMembers": "false"})
        return _decode(response, _Page[MemberInfo], "genesys list members").entities

    async def messages_after(self, message_id: str | None) -> list[ChatMessage]:
        params: dict[str, Any] = {"sortOrder": "asc", "maxResults": HISTORY_PAGE}
        if message_id is not None:
            params["after"] = message_id
        response = await self.call("GET", "/messages", what="genesys get messages",
                                   params=params)
        return _decode(response, _Page[ChatMessage], "genesys get messages").entities


class GenesysProvider:
    """The ``genesys`` provider (see the module docstring).

    ``http`` (and its httpx client) belongs to the caller. ``backoff`` paces stream
    reconnects; ``heartbeat_timeout`` is how long a silent socket is trusted.
    """

    name = "genesys"

    def __init__(self, http: EdgeHttp, *, backoff: Backoff = DEFAULT_BACKOFF,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
                 connect_timeout: float = 10.0) -> None:
        self.http = http
        self.tokens = TokenCache(http)
        self.backoff = backoff
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout

    async def open(self, conversation: Conversation, tenant: TenantConfig) -> Session:
        """Create the guest chat (``POST .../webchat/guest/conversations``); its session.
        Not idempotent: each call creates another chat.

        Raises:
            EdgeCallFailed: no ``genesys`` config (not retryable), or the call failed
                (400 ``chat.*`` errors are not retryable; 429/5xx/network are).
        """
        config = _genesys(tenant)
        response = await self.http.request(
            account(config.organization_id), "POST", config.api_url + GUEST_PATH,
            what="genesys create chat", json=create_body(conversation, tenant.id, config))
        created = _decode(response, _Created, "genesys create chat")
        return {"conversationId": created.id, "memberId": created.member.id,
                "jwt": created.jwt, "eventStreamUri": created.event_stream_uri,
                "tenantId": tenant.id, "apiUrl": config.api_url,
                "organizationId": config.organization_id}

    async def stream(self, session: Session, emit: Emit, save: Save) -> None:
        """Follow the chat (:class:`~adapters.genesys_stream.GuestStream`) until it ends.
        (Genesys catches up by message id on every connect, so nothing is saved.)

        Raises:
            EdgeCallFailed: the session is gone for good (socket or reads refused).
        """
        guest = _session(session)
        target = StreamTarget(guest.conversation_id, guest.member_id, guest.event_stream_uri)
        await GuestStream(target, _GuestApi(self.http, guest), emit, backoff=self.backoff,
                          heartbeat_timeout=self.heartbeat_timeout,
                          connect_timeout=self.connect_timeout, page_size=HISTORY_PAGE).run()

    async def send(self, session: Session, command: AnyEdgeCommand) -> None:
        """Post a message (split, see the module docstring; nothing when it has neither
        text nor attachments), a typing indicator (``typing`` False: nothing, Genesys has
        no "stopped typing") or leave the chat (``DELETE`` our member). Ending an already
        ended chat succeeds. A retried message whose first parts went through repeats them.

        Raises:
            EdgeCallFailed: with its retry classification.
        """
        api = _GuestApi(self.http, _session(session))
        match command:
            case SendMessage():
                for body in message_parts(command.text, command.attachments):
                    await api.call("POST", f"{api.me}/messages", what="genesys send message",
                                   json={"body": body, "bodyType": "standard"})
            case SendTyping(typing=True):
                await api.call("POST", f"{api.me}/typing", what="genesys send typing")
            case EndSession():
                try:
                    await api.call("DELETE", api.me, what="genesys leave chat")
                except EdgeCallFailed as exc:
                    if not is_state_error(exc):
                        raise
                    log.info("genesys chat already ended",
                             extra={"conversationId": command.conversation_id})

    async def api(self, tenant: TenantConfig, method: str, path: str, *, what: str,
                  **kwargs: Any) -> httpx.Response:
        """A platform API call (``{api_url}{path}``) with the tenant's OAuth token; a 401
        drops the token and the call is made once more with a fresh one.

        Raises:
            EdgeCallFailed: classified.
        """
        config = _genesys(tenant)
        for attempt in (1, 2):
            token = await self.tokens.token(config)
            headers = {"Authorization": f"Bearer {token}"}
            try:
                return await self.http.request(account(config.organization_id), method,
                                               config.api_url + path, what=what,
                                               headers=headers, **kwargs)
            except EdgeCallFailed as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self.tokens.invalidate(config, token)
        raise AssertionError("unreachable")

    async def find_queue(self, tenant: TenantConfig) -> str:
        """The id of the tenant's queue (``GET /api/v2/routing/queues?name=``): checks the
        credentials and the queue name before chats are routed to it.

        Raises:
            EdgeCallFailed: credentials refused, or no such queue (not retryable).
        """
        name = _genesys(tenant).queue_name
        response = await self.api(tenant, "GET", "/api/v2/routing/queues",
                                  what="genesys find queue", params={"name": name})
        for queue in _decode(response, _Page[_Queue], "genesys find queue").entities:
            if queue.name == name:
                return queue.id
        raise EdgeCallFailed(f"genesys queue {name!r} not found", retry=False, status=404)


def _genesys(tenant: TenantConfig) -> GenesysConfig:
    if tenant.genesys is None:
        raise EdgeCallFailed(f"tenant {tenant.id!r} has no [genesys] config", retry=False)
    return tenant.genesys


def _session(session: Session) -> GuestSession:
    try:
        return msgspec.convert(session, GuestSession)
    except msgspec.ValidationError as exc:
        raise EdgeCallFailed(f"genesys session is incomplete: {exc}", retry=False) from exc
