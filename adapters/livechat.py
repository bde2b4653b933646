"""LiveChat (Agent Chat API v3.5) as a *channel*: customers chat in the LiveChat widget and
lcx answers as the account's agent.

Inbound, LiveChat POSTs webhooks (PROVIDERS.md 2.5) to ``/events/livechat``:

- :meth:`LiveChatChannel.verify` finds the tenant by the envelope's ``organization_id`` and
  compares its ``secret_key`` (the shared secret chosen at registration) in constant time;
  a tenant with a ``signature_secret`` also requires ``X-Signature`` = hex HMAC-SHA256 of
  the raw body (LiveChat itself signs nothing: this is for a signing proxy in front of us).
- :meth:`LiveChatChannel.parse` (pure) maps the envelope to :class:`WebhookItem`\\ s:

  - ``incoming_chat``: a ``started`` item (customer name/email from ``chat.users``), event
    id ``chat:<chat>:<thread>``, then one ``event`` item per initial customer event of the
    thread, as for ``incoming_event``.
  - ``incoming_event``: an :class:`EdgeMessage` (``message`` → ``text``, ``file`` → ``file``
    with its attachment, ``rich_message`` → ``rich`` with ``{template_id, elements}``,
    ``system_message`` → ``text`` with ``author=None``); event id = LiveChat's event id.
  - ``incoming_rich_message_postback``: an :class:`EdgeMessage` ``postback`` with payload
    ``{id, toggled, event_id}``; event id ``postback:<chat>:<event>:<postback>:on|off``.
  - ``chat_deactivated``: :class:`EdgeEnded`, event id ``deactivated:<chat>:<thread>``.
  - ``chat_transferred``: :class:`EdgeTransferred` (recorded only), event id
    ``transferred:<chat>:<digest of the payload>``.
  - anything else: no items.

  Only the customer's events become messages. ``parse`` is pure, so "the customer" is read
  from LiveChat's id scheme: agents are identified by their login e-mail, bots by a 32-hex
  id, customers by a UUID. An event authored by the account itself (``account_id``), by an
  e-mail-shaped id or by a bot-shaped id is an agent's or our own echo and is dropped, as is
  any ``visibility: agents`` event (LiveChat-internal). Register ``incoming_event`` with
  ``filters.author_type = "customer"`` so LiveChat does not send echoes at all; this rule is
  the second line of defence. ``system_message`` events have no author and pass through
  with ``author=None``: the conversation records them as system messages.

Outbound, :meth:`LiveChatChannel.send` calls ``POST {api_url}/v3.5/agent/action/<action>``
with ``Authorization: Basic base64(account_id:pat)`` through :class:`EdgeHttp` (breaker
and limiter keyed ``livechat:<account_id>``). The session is ``{"chatId": ...}``
(:func:`session_for`). Messages: text in ``message`` events (split at 16 KB of UTF-8), a
rich payload as a ``rich_message``, attachments on LiveChat's CDN as ``file`` events (the
only URLs a ``file`` event accepts) and every other attachment as a ``name: url`` line
appended to the text. LiveChat errors are classified by ``error.type``, not by status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTransferred,
    EndSession,
    SendMessage,
    SendTyping,
    Session,
    WebhookBatch,
    WebhookItem,
)
from adapters.policy import EdgeHttp
from lcx.config import LivechatConfig, TenantConfig
from lcx.errors import ConfigError, InvalidRequest, Unauthorized
from lcx.model import AgentRef, Attachment

__all__ = ["API_VERSION", "AUTH_ERRORS", "CDN_HOST_SUFFIXES", "MAX_TEXT_BYTES",
           "RETRYABLE_ERRORS", "LiveChatChannel", "LiveChatError", "classify_error",
           "message_events", "session_for", "signature"]

API_VERSION = "v3.5"
MAX_TEXT_BYTES = 16 * 1024
"""LiveChat's cap on a message's text (raw UTF-8 bytes); longer texts are split."""
CDN_HOST_SUFFIXES = ("livechat-files.com",)
"""Hosts whose URLs may go in a ``file`` event (``upload_file`` answers with them).
UNVERIFIED whether text.com-branded accounts use other CDN hosts."""
RETRYABLE_ERRORS = frozenset({"too_many_requests", "service_unavailable", "internal",
                              "request_timeout"})
AUTH_ERRORS = frozenset({"authentication", "authorization", "missing_access"})
SIGNATURE_HEADER = "x-signature"
_BOT_ID = re.compile(r"[0-9a-f]{32}")
_ERROR_TYPE = re.compile(r'"type"\s*:\s*"([A-Za-z_]+)"')


def session_for(chat_id: str) -> Session:
    """The edge session of a LiveChat chat (what :meth:`LiveChatChannel.send` expects)."""
    return {"chatId": chat_id}


def signature(body: bytes, secret: str) -> str:
    """The ``X-Signature`` value: hex HMAC-SHA256 of the raw body keyed by ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class LiveChatError(EdgeCallFailed):
    """A classified failure of a LiveChat call; ``type`` is LiveChat's ``error.type`` (None:
    no error envelope, e.g. a network failure or a proxy's page)."""

    def __init__(self, message: str, *, error_type: str | None, retry: bool,
                 retry_after: float | None = None, auth: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message, retry=retry, retry_after=retry_after, auth=auth,
                         status=status)
        self.type = error_type


def classify_error(error_type: str | None, message: str, *, status: int | None = None,
                   retry_after: float | None = None,
                   fallback: EdgeCallFailed | None = None) -> LiveChatError:
    """The :class:`LiveChatError` for a LiveChat ``error.type`` (pure).

    ``too_many_requests``, ``service_unavailable``, ``internal``, ``request_timeout``: retry;
    ``authentication``, ``authorization``, ``missing_access``: ``auth``, no retry; any other
    known type (``validation``, ``not_found``, ``chat_inactive``...): no retry. Without a
    type the status-based ``fallback`` classification is kept (retry otherwise).
    """
    if error_type is None:
        retry = True if fallback is None else fallback.retry
        auth = False if fallback is None else fallback.auth
        return LiveChatError(message, error_type=None, retry=retry, retry_after=retry_after,
                             auth=auth, status=status)
    retry = error_type in RETRYABLE_ERRORS
    return LiveChatError(message, error_type=error_type, retry=retry, status=status,
                         retry_after=retry_after if retry else None,
                         auth=error_type in AUTH_ERRORS)


# --- wire shapes of the webhooks (PROVIDERS.md 2.5) -------------------------------------


class _Envelope(msgspec.Struct, frozen=True):
    action: str = ""
    organization_id: str = ""
    secret_key: str = ""
    webhook_id: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"{}")


class _User(msgspec.Struct, frozen=True):
    id: str
    type: str = ""
    name: str | None = None
    email: str | None = None


class _Event(msgspec.Struct, frozen=True):
    id: str
    type: str
    author_id: str | None = None
    visibility: str = "all"
    text: str | None = None
    url: str | None = None
    name: str | None = None
    content_type: str | None = None
    size: int | None = None
    alternative_text: str | None = None
    template_id: str | None = None
    elements: list[Any] | None = None
    system_message_type: str | None = None


class _Thread(msgspec.Struct, frozen=True):
    id: str
    events: list[_Event] = []


class _Chat(msgspec.Struct, frozen=True):
    id: str
    thread: _Thread
    users: list[_User] = []


class _IncomingChat(msgspec.Struct, frozen=True):
    chat: _Chat


class _IncomingEvent(msgspec.Struct, frozen=True):
    chat_id: str
    event: _Event
    thread_id: str = ""


class _Postback(msgspec.Struct, frozen=True):
    id: str
    toggled: bool = True


class _IncomingPostback(msgspec.Struct, frozen=True):
    chat_id: str
    event_id: str
    postback: _Postback
    thread_id: str = ""
    user_id: str | None = None


class _Deactivated(msgspec.Struct, frozen=True):
    chat_id: str
    thread_id: str = ""
    user_id: str | None = None


class _Transferred(msgspec.Struct, frozen=True):
    chat_id: str
    thread_id: str = ""
    reason: str | None = None
    requester_id: str | None = None
    transferred_to: dict[str, Any] = {}
    queue: dict[str, Any] | None = None


def _decode(raw: bytes, shape: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"livechat webhook: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest("livechat webhook: body is not JSON") from exc


# --- parsing (pure) ---------------------------------------------------------------------


def _is_customer(author_id: str | None, own_ids: frozenset[str]) -> bool:
    """Whether an author id can be the chat's customer (see the module docstring)."""
    if not author_id or author_id in own_ids or "@" in author_id:
        return False
    return _BOT_ID.fullmatch(author_id) is None


def _message(event: _Event, author: AgentRef | None) -> EdgeMessage | None:
    """The :class:`EdgeMessage` of one LiveChat event, or None for types lcx does not carry."""
    common: dict[str, Any] = {"external_id": event.id, "author": author}
    if event.type == "message":
        return EdgeMessage(text=event.text, **common)
    if event.type == "file" and event.url:
        attachment = Attachment(url=event.url, name=event.name,
                                content_type=event.content_type, size=event.size)
        return EdgeMessage(type="file", text=event.alternative_text,
                           attachments=(attachment,), **common)
    if event.type == "rich_message":
        payload = {"template_id": event.template_id, "elements": event.elements or []}
        return EdgeMessage(type="rich", payload=payload, **common)
    return None


def _event_item(tenant: str, chat_id: str, event: _Event, own_ids: frozenset[str],
                names: Mapping[str, str | None]) -> WebhookItem | None:
    """The item of one chat event, or None when it is not the customer's (or internal)."""
    if event.visibility == "agents":
        return None
    if event.type == "system_message":
        payload = {"system_message_type": event.system_message_type}
        message: EdgeMessage | None = EdgeMessage(external_id=event.id, text=event.text,
                                                  payload=payload)
    elif _is_customer(event.author_id, own_ids):
        author_id = event.author_id or ""
        message = _message(event, AgentRef(id=author_id, name=names.get(author_id)))
    else:
        return None
    if message is None:
        return None
    return WebhookItem(event_id=event.id, tenant_id=tenant, external_id=chat_id,
                       kind="event", event=message)


def _customer(users: list[_User]) -> _User | None:
    return next((user for user in users if user.type == "customer"), None)


def _on_incoming_chat(tenant: str, raw: bytes, own: frozenset[str]) -> list[WebhookItem]:
    chat = _decode(raw, _IncomingChat).chat
    customer = _customer(chat.users)
    facts = {} if customer is None else {"name": customer.name, "email": customer.email}
    started = WebhookItem(event_id=f"chat:{chat.id}:{chat.thread.id}", tenant_id=tenant,
                          external_id=chat.id, kind="started",
                          customer={k: v for k, v in facts.items() if v})
    # Inside a chat the users' types are known: only the customer's events count.
    customer_id = None if customer is None else customer.id
    others = own | {user.id for user in chat.users if user.id != customer_id}
    names = {} if customer is None else {customer.id: customer.name}
    items = (_event_item(tenant, chat.id, event, others, names)
             for event in chat.thread.events)
    return [started, *(item for item in items if item is not None)]


def _on_incoming_event(tenant: str, raw: bytes, own: frozenset[str]) -> list[WebhookItem]:
    payload = _decode(raw, _IncomingEvent)
    item = _event_item(tenant, payload.chat_id, payload.event, own, {})
    return [] if item is None else [item]


def _on_postback(tenant: str, raw: bytes, own: frozenset[str]) -> list[WebhookItem]:
    payload = _decode(raw, _IncomingPostback)
    postback = payload.postback
    state = "on" if postback.toggled else "off"
    event_id = f"postback:{payload.chat_id}:{payload.event_id}:{postback.id}:{state}"
    author = AgentRef(id=payload.user_id) if payload.user_id else None
    message = EdgeMessage(external_id=event_id, author=author, type="postback",
                          payload={"id": postback.id, "toggled": postback.toggled,
                                   "event_id": payload.event_id})
    return [WebhookItem(event_id=event_id, tenant_id=tenant, external_id=payload.chat_id,
                        kind="event", event=message)]


def _on_deactivated(tenant: str, raw: bytes, own: frozenset[str]) -> list[WebhookItem]:
    payload = _decode(raw, _Deactivated)
    event_id = f"deactivated:{payload.chat_id}:{payload.thread_id}"
    reason = "closed_by_router" if payload.user_id is None else f"closed_by:{payload.user_id}"
    return [WebhookItem(event_id=event_id, tenant_id=tenant, external_id=payload.chat_id,
                        kind="event", event=EdgeEnded(external_id=event_id, reason=reason))]


def _on_transferred(tenant: str, raw: bytes, own: frozenset[str]) -> list[WebhookItem]:
    payload = _decode(raw, _Transferred)
    # No id of its own: a digest of the whole payload tells transfers apart and makes a
    # duplicate delivery of the same transfer collapse.
    digest = hashlib.sha256(msgspec.json.encode(payload, order="sorted")).hexdigest()[:16]
    event_id = f"transferred:{payload.chat_id}:{digest}"
    to = {**payload.transferred_to, "reason": payload.reason}
    return [WebhookItem(event_id=event_id, tenant_id=tenant, external_id=payload.chat_id,
                        kind="event", event=EdgeTransferred(external_id=event_id, to=to))]


_PARSERS = {
    "incoming_chat": _on_incoming_chat,
    "incoming_event": _on_incoming_event,
    "incoming_rich_message_postback": _on_postback,
    "chat_deactivated": _on_deactivated,
    "chat_transferred": _on_transferred,
}


# --- sending ----------------------------------------------------------------------------


def _chunks(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    pieces, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def _on_cdn(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == suffix or host.endswith("." + suffix) for suffix in CDN_HOST_SUFFIXES)


def _rich(command: SendMessage) -> dict[str, Any] | None:
    payload = command.payload
    if command.type != "rich" or not isinstance(payload, dict):
        return None
    if not payload.get("template_id") or not isinstance(payload.get("elements"), list):
        return None
    return {"type": "rich_message", "template_id": payload["template_id"],
            "elements": payload["elements"]}


def message_events(command: SendMessage) -> list[dict[str, Any]]:
    """The LiveChat events carrying one :class:`SendMessage`, in sending order (pure).

    Text (plus ``name: url`` lines for attachments off LiveChat's CDN) as ``message``
    events of at most 16 KB, then a ``rich_message`` if the payload is one, then a ``file``
    event per CDN attachment. The first event's ``custom_id`` is the message id, the
    others' ``<message id>#<n>``.
    """
    links = [a for a in command.attachments if not _on_cdn(a.url)]
    lines = [command.text or "", *(f"{a.name}: {a.url}" if a.name else a.url for a in links)]
    text = "\n".join(line for line in lines if line)
    events: list[dict[str, Any]] = [{"type": "message", "text": part} for part in _chunks(text)]
    rich = _rich(command)
    if rich is not None:
        events.append(rich)
    events += [{"type": "file", "url": a.url} for a in command.attachments if _on_cdn(a.url)]
    return [{**event, "visibility": "all",
             "custom_id": command.message_id if n == 0 else f"{command.message_id}#{n}"}
            for n, event in enumerate(events)]


def _error_type_of(detail: str) -> str | None:
    """LiveChat's ``error.type`` in the (possibly truncated) text of an error body."""
    try:
        error = json.loads(detail).get("error")
    except (ValueError, AttributeError):
        match = _ERROR_TYPE.search(detail)
        return match.group(1) if match else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


class LiveChatChannel:
    """The LiveChat channel: webhooks in, Agent Chat API calls out.

    Owns nothing: the :class:`EdgeHttp` (and its HTTP client) belongs to the caller.
    Safe for concurrent use.
    """

    name = "livechat"
    alias = "livechat"

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp) -> None:
        """Index the tenants served by LiveChat by their LiveChat ``organization_id``.

        Raises:
            ConfigError: two tenants claim the same LiveChat organization.
        """
        self.http = http
        self._by_org: dict[str, TenantConfig] = {}
        for tenant in tenants.values():
            org = tenant.livechat.organization_id if tenant.livechat else ""
            if tenant.channel != "livechat" or not org:
                continue
            if org in self._by_org:
                raise ConfigError(f"tenants: {self._by_org[org].id} and {tenant.id} share "
                                  f"livechat.organization_id {org!r}")
            self._by_org[org] = tenant

    def tenant_of(self, organization_id: str) -> TenantConfig:
        """The tenant of a LiveChat organization.

        Raises:
            Unauthorized: no tenant serves it (its secret cannot be checked).
        """
        tenant = self._by_org.get(organization_id)
        if tenant is None:
            raise Unauthorized("livechat webhook: unknown organization")
        return tenant

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the envelope's ``secret_key`` (and ``X-Signature`` when configured).

        Raises:
            InvalidRequest: the body is not JSON.
            Unauthorized: not an envelope, unknown organization, wrong or missing secret or
                signature (an empty configured ``webhook_secret_key`` refuses everything).
        """
        try:
            envelope = _decode(body, _Envelope)
        except InvalidRequest as exc:
            if not isinstance(exc.__cause__, msgspec.ValidationError):
                raise  # not JSON at all
            raise Unauthorized("livechat webhook: no envelope to verify") from exc
        config = self._livechat(self.tenant_of(envelope.organization_id))
        expected = config.webhook_secret_key.encode()
        if not expected or not hmac.compare_digest(envelope.secret_key.encode(), expected):
            raise Unauthorized("livechat webhook: wrong secret_key")
        if config.signature_secret:
            given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
            wanted = signature(body, config.signature_secret)
            if not hmac.compare_digest(given.strip().lower().encode(), wanted.encode()):
                raise Unauthorized("livechat webhook: bad X-Signature")

    def parse(self, body: bytes) -> WebhookBatch:
        """The items of a verified webhook body (pure; see the module docstring).

        Raises:
            InvalidRequest: the body or its payload does not have LiveChat's shape.
            Unauthorized: no tenant serves the envelope's organization.
        """
        envelope = _decode(body, _Envelope)
        parser = _PARSERS.get(envelope.action)
        if parser is None:
            return WebhookBatch()
        tenant = self.tenant_of(envelope.organization_id)
        own = frozenset({self._livechat(tenant).account_id} - {""})
        return WebhookBatch(items=tuple(parser(tenant.id, bytes(envelope.payload), own)))

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """Deliver a message, a typing indicator or the end of the chat to the customer.

        Ending an already inactive chat succeeds (idempotent). A message with nothing to
        deliver sends nothing; one made of several events (long text, files) may repeat
        its first events when retried after a partial failure.

        Raises:
            LiveChatError: classified by LiveChat's ``error.type`` (an EdgeCallFailed).
        """
        chat_id = session.get("chatId")
        if not isinstance(chat_id, str) or not chat_id:
            raise LiveChatError("livechat: session has no chatId", error_type=None, retry=False)
        if isinstance(command, SendMessage):
            for event in message_events(command):
                await self.call(tenant, "send_event", {"chat_id": chat_id, "event": event})
        elif isinstance(command, SendTyping):
            await self.call(tenant, "send_typing_indicator",
                            {"chat_id": chat_id, "is_typing": command.typing})
        elif isinstance(command, EndSession):
            try:
                await self.call(tenant, "deactivate_chat", {"id": chat_id})
            except LiveChatError as exc:
                if exc.type != "chat_inactive":
                    raise

    async def call(self, tenant: TenantConfig, action: str,
                   body: dict[str, Any]) -> dict[str, Any]:
        """One Agent Chat API action for ``tenant``; its JSON answer (``{}`` when empty).

        Raises:
            LiveChatError: classified by ``error.type`` (status and network failures keep
                the :class:`EdgeHttp` classification when there is no error envelope).
        """
        config = self._livechat(tenant)
        account = f"livechat:{config.account_id}"
        if config.requests_per_second > 0:
            self.http.limit(account, config.requests_per_second)
        url = f"{config.api_url.rstrip('/')}/{API_VERSION}/agent/action/{action}"
        what = f"livechat {action}"
        try:
            response = await self.http.request(account, "POST", url, what=what, json=body,
                                               headers=self._headers(config))
        except EdgeCallFailed as exc:
            raise self._reclassify(exc, what) from exc
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            raise classify_error(_error_type_of(response.text), f"{what}: {response.text}",
                                 status=response.status_code)
        return answer if isinstance(answer, dict) else {"result": answer}

    def _reclassify(self, exc: EdgeCallFailed, what: str) -> LiveChatError:
        """Key an HTTP failure on LiveChat's ``error.type`` found in its body."""
        detail = str(exc).partition(f"{what}: {exc.status} ")[2] if exc.status else ""
        failure = classify_error(_error_type_of(detail) if detail else None, str(exc),
                                 status=exc.status, retry_after=exc.retry_after,
                                 fallback=exc)
        if failure.auth and not exc.auth:
            self.http.auth_failures += 1
        return failure

    @staticmethod
    def _headers(config: LivechatConfig) -> dict[str, str]:
        token = base64.b64encode(f"{config.account_id}:{config.pat}".encode()).decode()
        return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    @staticmethod
    def _livechat(tenant: TenantConfig) -> LivechatConfig:
        if tenant.livechat is None:
            raise LiveChatError(f"tenant {tenant.id} has no [livechat] table", error_type=None,
                                retry=False)
        return tenant.livechat
