"""Facebook Messenger (Graph API Send API and page webhooks) as a customer *channel*.

Inbound, Meta POSTs page webhooks to ``/events/messenger``:

- :meth:`MessengerChannel.handshake`: the subscription check ``GET
  ?hub.mode=subscribe&hub.challenge=<n>&hub.verify_token=<t>`` answers the challenge when
  the token is some tenant's ``verify_token``, 403 otherwise.
- :meth:`MessengerChannel.verify`: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
  raw body>`` keyed with the ``app_secret`` of the tenant whose ``page_id`` is every
  ``entry[].id``; anything else (no header, unknown page, altered or re-serialised body)
  is 401 and nothing is stored.
- :meth:`MessengerChannel.parse`: each ``messaging`` event of a page becomes items of the
  external conversation ``<page id>:<PSID>`` (one subscriber per sender and page): a
  ``started`` item (the inbox ignores it while that sender has an open conversation),
  then an :class:`EdgeMessage` deduplicated by ``mid``: text; attachments with a
  ``payload.url`` as a ``file`` message; a quick reply as a ``postback`` with its
  ``payload``; a ``postback`` (button) as a ``postback`` with its title and payload.
  A ``read`` (its ``watermark``) is the customer's read receipt (:class:`EdgeRead`).
  Echoes of our own sends (``is_echo``) and ``delivery`` are dropped. Messages
  over the tenant's ``spam_threshold`` per sender are dropped (:mod:`adapters.spam`).

Outbound, :meth:`MessengerChannel.send` calls ``POST {api_url}/{page id}/messages
?access_token=<page token>`` through the one outbound policy (breaker and limiter keyed
``messenger:<page id>``): text in pieces of at most 2000 characters, each attachment as
its own ``attachment`` message, typing as ``sender_action`` ``typing_on`` /
``typing_off``; the end sends nothing (Messenger has no session to close). Free-form
replies are ``messaging_type: RESPONSE``; when Meta answers that the 24 h window is over
(error code 10, subcode 2018278) the message is sent again with ``messaging_type:
MESSAGE_TAG, tag: HUMAN_AGENT`` (allowed for 7 days). Graph errors are classified by
``error.code``: 4, 17, 32, 613 (rate limits) and 1, 2 (temporary) are retried, 190 is a
credentials failure, everything else (10, 200, 551, 100...) is not retried.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    EdgeMessage,
    EndSession,
    HandshakeAnswer,
    SendMessage,
    SendTyping,
    Session,
    WebhookBatch,
    WebhookItem,
)
from adapters.policy import RETRYABLE, EdgeHttp, retry_after
from adapters.spam import SpamGuard
from lcx.config import MessengerConfig, TenantConfig
from lcx.errors import ConfigError, Forbidden, InvalidRequest, Unauthorized
from lcx.livechat.edges import EdgeRead
from lcx.model import AgentRef, Attachment, iso

__all__ = ["MAX_TEXT", "GraphError", "MessengerChannel", "classify", "signature"]

MAX_TEXT = 2000
SIGNATURE_HEADER = "x-hub-signature-256"
RETRY_CODES = frozenset({1, 2, 4, 17, 32, 613})
AUTH_CODES = frozenset({190})
OUTSIDE_WINDOW = (10, 2018278)
"""Graph's (code, subcode) for a free-form reply outside the 24 h window."""


def signature(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


# --- wire shapes ----------------------------------------------------------------------


class _Id(msgspec.Struct, kw_only=True):
    id: str


class _Payload(msgspec.Struct, kw_only=True):
    url: str | None = None


class _Attachment(msgspec.Struct, kw_only=True):
    type: str
    payload: _Payload | None = None


class _QuickReply(msgspec.Struct, kw_only=True):
    payload: str


class _Message(msgspec.Struct, kw_only=True):
    mid: str
    text: str | None = None
    is_echo: bool = False
    attachments: list[_Attachment] = []
    quick_reply: _QuickReply | None = None


class _Postback(msgspec.Struct, kw_only=True):
    title: str | None = None
    payload: str | None = None
    mid: str | None = None


class _Read(msgspec.Struct, kw_only=True):
    watermark: int


class _Messaging(msgspec.Struct, kw_only=True):
    sender: _Id
    recipient: _Id
    timestamp: int = 0
    message: _Message | None = None
    postback: _Postback | None = None
    read: _Read | None = None


class _Entry(msgspec.Struct, kw_only=True):
    id: str
    time: int = 0
    messaging: list[_Messaging] = []


class _Envelope(msgspec.Struct, kw_only=True):
    object: str
    entry: list[_Entry] = []


class _GraphError(msgspec.Struct, kw_only=True):
    code: int = 0
    error_subcode: int | None = None
    message: str = ""


class _ErrorBody(msgspec.Struct, kw_only=True):
    error: _GraphError


class GraphError(EdgeCallFailed):
    """A classified Send API failure with Graph's ``error.code`` and ``error_subcode``."""

    def __init__(self, message: str, *, code: int, subcode: int | None, retry: bool,
                 status: int, retry_after: float | None = None) -> None:
        super().__init__(message, retry=retry, status=status, auth=code in AUTH_CODES,
                         retry_after=retry_after if retry else None)
        self.code = code
        self.subcode = subcode


def classify(response: httpx.Response) -> EdgeCallFailed | None:
    """The failure a Send API answer means (None: it succeeded); pure."""
    status = response.status_code
    if status < 300:
        return None
    wait = retry_after(response.headers)
    try:
        error = msgspec.json.decode(response.content, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        retry = status in RETRYABLE or status >= 500
        return EdgeCallFailed(f"messenger send: {status}", retry=retry, status=status,
                              retry_after=wait if retry else None, auth=status in (401, 403))
    return GraphError(f"messenger send: {status} code {error.code}: {error.message}",
                      code=error.code, subcode=error.error_subcode, status=status,
                      retry=error.code in RETRY_CODES or status >= 500, retry_after=wait)


def _decode(body: bytes) -> _Envelope:
    try:
        return msgspec.json.decode(body, type=_Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"messenger webhook: {exc}") from exc


def _event_message(event: _Messaging) -> EdgeMessage | None:
    """The customer's message of one messaging event (None: not a customer message)."""
    author = AgentRef(id=event.sender.id)
    message, postback = event.message, event.postback
    if message is not None:
        if message.is_echo:
            return None
        if message.quick_reply is not None:
            return EdgeMessage(external_id=message.mid, author=author, type="postback",
                               text=message.text,
                               payload={"payload": message.quick_reply.payload})
        files = tuple(Attachment(url=a.payload.url, content_type=None, name=a.type)
                      for a in message.attachments if a.payload and a.payload.url)
        if files:
            return EdgeMessage(external_id=message.mid, author=author, type="file",
                               text=message.text, attachments=files)
        if message.text:
            return EdgeMessage(external_id=message.mid, author=author, text=message.text)
        return None
    if postback is not None:
        external = postback.mid or f"postback:{event.sender.id}:{event.timestamp}"
        return EdgeMessage(external_id=external, author=author, type="postback",
                           text=postback.title, payload={"payload": postback.payload})
    return None


class MessengerChannel:
    """The ``messenger`` channel (see the module docstring)."""

    name = "messenger"
    alias = "messenger"

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp, *,
                 spam: SpamGuard | None = None) -> None:
        """Index the tenants with a ``[messenger]`` table by page id.

        Raises:
            ConfigError: two tenants claim the same page.
        """
        self.http = http
        self.spam = spam or SpamGuard()
        self._by_page: dict[str, TenantConfig] = {}
        for tenant in tenants.values():
            page = tenant.messenger.page_id if tenant.messenger else ""
            if not page:
                continue
            if page in self._by_page:
                raise ConfigError(f"tenants: {self._by_page[page].id} and {tenant.id} share "
                                  f"messenger.page_id {page!r}")
            self._by_page[page] = tenant

    def _config(self, page_id: str) -> tuple[TenantConfig, MessengerConfig]:
        tenant = self._by_page.get(page_id)
        if tenant is None or tenant.messenger is None:
            raise Unauthorized("messenger webhook: unknown page")
        return tenant, tenant.messenger

    def handshake(self, query: Mapping[str, str]) -> HandshakeAnswer:
        """Answer the subscription check (see the module docstring).

        Raises:
            InvalidRequest: not a ``subscribe`` check.
            Forbidden: the verify token is no tenant's.
        """
        if query.get("hub.mode") != "subscribe" or "hub.challenge" not in query:
            raise InvalidRequest("expected hub.mode=subscribe with a hub.challenge")
        given = query.get("hub.verify_token", "").encode()
        if not any(t.messenger and t.messenger.verify_token and
                   hmac.compare_digest(given, t.messenger.verify_token.encode())
                   for t in self._by_page.values()):
            raise Forbidden("messenger handshake: wrong hub.verify_token")
        return HandshakeAnswer(body=query["hub.challenge"].encode())

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check ``X-Hub-Signature-256`` over the raw body (see the module docstring).

        Raises:
            Unauthorized: missing or wrong signature, unknown page, no entries.
        """
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
        try:
            envelope = _decode(body)
        except InvalidRequest as exc:
            raise Unauthorized("messenger webhook: nothing to verify") from exc
        pages = {entry.id for entry in envelope.entry}
        if not pages or not given:
            raise Unauthorized("messenger webhook: unsigned or empty")
        for page in pages:
            secret = self._config(page)[1].app_secret
            if not secret or not hmac.compare_digest(given.encode(),
                                                     signature(body, secret).encode()):
                raise Unauthorized("messenger webhook: bad X-Hub-Signature-256")

    def parse(self, body: bytes) -> WebhookBatch:
        """The items of a verified body (see the module docstring).

        Raises:
            InvalidRequest: not a page webhook.
        """
        envelope = _decode(body)
        if envelope.object != "page":
            raise InvalidRequest(f"messenger webhook: object {envelope.object!r}")
        items: list[WebhookItem] = []
        for entry in envelope.entry:
            tenant, config = self._config(entry.id)
            for event in entry.messaging:
                chat = f"{entry.id}:{event.sender.id}"
                if event.read is not None:
                    read_id = f"read:{chat}:{event.read.watermark}"
                    at = iso(datetime.fromtimestamp(event.read.watermark / 1000, UTC))
                    items.append(WebhookItem(event_id=read_id, tenant_id=tenant.id,
                                             external_id=chat, kind="event",
                                             event=EdgeRead(external_id=read_id, at=at)))
                    continue
                message = _event_message(event)
                if message is None or message.external_id is None:
                    continue
                if not self.spam.admit(f"messenger:{entry.id}", event.sender.id,
                                       config.spam_threshold):
                    continue
                items.append(WebhookItem(event_id=f"start:{message.external_id}",
                                         tenant_id=tenant.id, external_id=chat,
                                         kind="started", customer={"psid": event.sender.id}))
                items.append(WebhookItem(event_id=message.external_id, tenant_id=tenant.id,
                                         external_id=chat, kind="event", event=message))
        return WebhookBatch(items=tuple(items))

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """Carry out one command on the customer's Messenger (see the module docstring).

        Raises:
            EdgeCallFailed: classified by :func:`classify`.
        """
        config = tenant.messenger
        chat = str(session.get("chatId") or "")
        page, _, psid = chat.partition(":")
        if config is None or not psid:
            raise EdgeCallFailed(f"messenger: no page or PSID for {chat!r}", retry=False)
        recipient = {"id": psid}
        if isinstance(command, SendMessage):
            for message in _messages(command):
                await self._message(config, page, recipient, message)
        elif isinstance(command, SendTyping):
            action = "typing_on" if command.typing else "typing_off"
            await self._call(config, page, {"recipient": recipient, "sender_action": action})
        elif isinstance(command, EndSession):
            return

    async def _message(self, config: MessengerConfig, page: str, recipient: dict[str, str],
                       message: dict[str, Any]) -> None:
        body = {"recipient": recipient, "messaging_type": "RESPONSE", "message": message}
        try:
            await self._call(config, page, body)
        except GraphError as exc:
            if (exc.code, exc.subcode) != OUTSIDE_WINDOW:
                raise
            await self._call(config, page, {**body, "messaging_type": "MESSAGE_TAG",
                                            "tag": "HUMAN_AGENT"})

    async def _call(self, config: MessengerConfig, page: str, body: dict[str, Any]) -> None:
        url = f"{config.api_url.rstrip('/')}/{page}/messages"
        await self.http.request(f"messenger:{page}", "POST", url, what="messenger send",
                                json=body, params={"access_token": config.page_access_token},
                                classify=classify)


def _messages(command: SendMessage) -> list[dict[str, Any]]:
    """The Send API ``message`` objects of one lcx message: text pieces, then one per
    attachment (images as ``image``, the rest as ``file``)."""
    text = command.text or ""
    pieces = [text[i:i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)]
    messages: list[dict[str, Any]] = [{"text": piece} for piece in pieces if piece.strip()]
    for attachment in command.attachments:
        kind = "image" if (attachment.content_type or "").startswith("image/") else "file"
        messages.append({"attachment": {"type": kind, "payload": {
            "url": attachment.url, "is_reusable": True}}})
    return messages
