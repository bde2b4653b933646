"""X (Twitter) direct messages as a customer *channel* (Account Activity webhooks in,
the v2 DM API out).

Inbound, X POSTs account activity to ``/events/x``:

- :meth:`XChannel.handshake`: the CRC check ``GET ?crc_token=<t>`` is answered at once
  with ``{"response_token": "sha256=<base64 HMAC-SHA256 of the token>"}`` keyed with the
  app's consumer secret (one app, so one secret, for every tenant on this endpoint).
- :meth:`XChannel.verify`: ``x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256
  of the raw body>`` with that secret; the tenant is the one whose ``user_id`` is the
  body's ``for_user_id``. Anything else is 401 and nothing is stored.
- :meth:`XChannel.parse`: each ``message_create`` of ``direct_message_events`` from
  someone else (our own sends come back with ``sender_id == for_user_id``: dropped)
  becomes items of the external conversation ``<for_user_id>:<sender id>``: a
  ``started`` item (name and screen name from ``users``), then an :class:`EdgeMessage`
  deduplicated by the event ``id`` (a media attachment as a ``file`` message);
  ``direct_message_indicate_typing_events`` become the customer typing
  (:class:`EdgeTyping`), ``direct_message_mark_read_events`` its read receipts
  (:class:`EdgeRead`). Over the ``spam_threshold`` messages are dropped.

Outbound, :meth:`XChannel.send` calls ``POST {api_url}/2/dm_conversations/with/
{participant}/messages`` with the OAuth 2 user ``access_token``, ``{"text"}`` in pieces
of at most 10,000 characters (attachments as URL lines: X wants an uploaded
``media_id``), through the one outbound policy (breaker and limiter keyed
``x:<user id>``). A 429 is retried after ``x-rate-limit-reset`` (epoch seconds); 5xx
too; other 4xx are not. Typing and the end send nothing (the v2 DM API has neither).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
import msgspec

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    EdgeMessage,
    EdgeTyping,
    HandshakeAnswer,
    SendMessage,
    Session,
    WebhookBatch,
    WebhookItem,
)
from adapters.policy import RETRYABLE, EdgeHttp, retry_after
from adapters.spam import SpamGuard
from lcx.config import TenantConfig, XConfig
from lcx.errors import ConfigError, InvalidRequest, Unauthorized
from lcx.livechat.edges import EdgeRead
from lcx.model import AgentRef, Attachment, iso

__all__ = ["MAX_TEXT", "XChannel", "classify", "crc_response", "signature"]

MAX_TEXT = 10_000
SIGNATURE_HEADER = "x-twitter-webhooks-signature"


def signature(data: bytes, consumer_secret: str) -> str:
    """``sha256=`` + base64 HMAC-SHA256 of ``data`` (the CRC token or a body)."""
    digest = hmac.new(consumer_secret.encode(), data, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def crc_response(crc_token: str, consumer_secret: str) -> dict[str, str]:
    """The answer to a CRC check."""
    return {"response_token": signature(crc_token.encode(), consumer_secret)}


def classify(response: httpx.Response) -> EdgeCallFailed | None:
    """The failure a DM API answer means (None: it succeeded); pure but for the clock
    that turns ``x-rate-limit-reset`` into seconds."""
    status = response.status_code
    if status < 300:
        return None
    wait = retry_after(response.headers)
    reset = response.headers.get("x-rate-limit-reset")
    if status == 429 and reset and reset.isdigit():
        wait = max(0.0, min(900.0, int(reset) - time.time()))
    retry = status in RETRYABLE or status >= 500
    return EdgeCallFailed(f"x send: {status} {response.text[:300]}", retry=retry,
                          status=status, retry_after=wait if retry else None,
                          auth=status in (401, 403))


# --- wire shapes ----------------------------------------------------------------------


class _Media(msgspec.Struct, kw_only=True):
    media_url_https: str | None = None
    type: str | None = None


class _AttachmentData(msgspec.Struct, kw_only=True):
    type: str = "media"
    media: _Media | None = None


class _MessageData(msgspec.Struct, kw_only=True):
    text: str | None = None
    attachment: _AttachmentData | None = None


class _Target(msgspec.Struct, kw_only=True):
    recipient_id: str


class _MessageCreate(msgspec.Struct, kw_only=True):
    target: _Target
    sender_id: str
    message_data: _MessageData = msgspec.field(default_factory=_MessageData)


class _DmEvent(msgspec.Struct, kw_only=True):
    type: str
    id: str
    created_timestamp: str = ""
    message_create: _MessageCreate | None = None


class _TypingEvent(msgspec.Struct, kw_only=True):
    sender_id: str
    created_timestamp: str = ""
    target: _Target | None = None


class _ReadEvent(msgspec.Struct, kw_only=True):
    sender_id: str
    created_timestamp: str = ""
    last_read_event_id: str = ""


class _User(msgspec.Struct, kw_only=True):
    id: str = ""
    name: str | None = None
    screen_name: str | None = None


class _Activity(msgspec.Struct, kw_only=True):
    for_user_id: str
    direct_message_events: list[_DmEvent] = []
    direct_message_indicate_typing_events: list[_TypingEvent] = []
    direct_message_mark_read_events: list[_ReadEvent] = []
    users: dict[str, _User] = {}


def _decode(body: bytes) -> _Activity:
    try:
        return msgspec.json.decode(body, type=_Activity)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"x webhook: {exc}") from exc


class XChannel:
    """The ``x`` channel (see the module docstring)."""

    name = "x"
    alias = "x"

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp, *,
                 spam: SpamGuard | None = None) -> None:
        """Index the tenants with an ``[x]`` table by business account.

        Raises:
            ConfigError: two tenants claim one account, or their consumer secrets differ
                (one webhook URL belongs to one app).
        """
        self.http = http
        self.spam = spam or SpamGuard()
        self._by_user: dict[str, TenantConfig] = {}
        secrets = set()
        for tenant in tenants.values():
            if tenant.x is None or not tenant.x.user_id:
                continue
            if tenant.x.user_id in self._by_user:
                raise ConfigError(f"tenants: {self._by_user[tenant.x.user_id].id} and "
                                  f"{tenant.id} share x.user_id {tenant.x.user_id!r}")
            self._by_user[tenant.x.user_id] = tenant
            secrets.add(tenant.x.consumer_secret)
        if len(secrets) > 1:
            raise ConfigError("tenants: every [tenants.x] must use the same consumer_secret "
                              "(/events/x belongs to one X app)")
        self._secret = next(iter(secrets), "")

    def handshake(self, query: Mapping[str, str]) -> HandshakeAnswer:
        """Answer the CRC check.

        Raises:
            InvalidRequest: no ``crc_token``, or no tenant uses X.
        """
        token = query.get("crc_token")
        if not token or not self._secret:
            raise InvalidRequest("expected a crc_token")
        return HandshakeAnswer(body=json.dumps(crc_response(token, self._secret)).encode(),
                               content_type="application/json")

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check ``x-twitter-webhooks-signature`` and the account (see the docstring).

        Raises:
            Unauthorized: missing or wrong signature, unknown account.
        """
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
        if not given or not self._secret or not hmac.compare_digest(
                given.encode(), signature(body, self._secret).encode()):
            raise Unauthorized("x webhook: bad x-twitter-webhooks-signature")
        try:
            activity = _decode(body)
        except InvalidRequest as exc:
            raise Unauthorized("x webhook: nothing to verify") from exc
        self._tenant(activity.for_user_id)

    def _tenant(self, user_id: str) -> tuple[TenantConfig, XConfig]:
        tenant = self._by_user.get(user_id)
        if tenant is None or tenant.x is None:
            raise Unauthorized("x webhook: unknown account")
        return tenant, tenant.x

    def parse(self, body: bytes) -> WebhookBatch:
        """The items of a verified body (see the module docstring).

        Raises:
            InvalidRequest: not account activity.
        """
        activity = _decode(body)
        tenant, config = self._tenant(activity.for_user_id)
        ours = activity.for_user_id
        items: list[WebhookItem] = []
        for event in activity.direct_message_events:
            create = event.message_create
            if event.type != "message_create" or create is None or create.sender_id == ours:
                continue
            if not self.spam.admit(f"x:{ours}", create.sender_id, config.spam_threshold):
                continue
            chat = f"{ours}:{create.sender_id}"
            user = activity.users.get(create.sender_id, _User())
            customer = {k: v for k, v in {"name": user.name,
                                          "screenName": user.screen_name}.items() if v}
            items.append(WebhookItem(event_id=f"start:{event.id}", tenant_id=tenant.id,
                                     external_id=chat, kind="started", customer=customer))
            items.append(WebhookItem(event_id=event.id, tenant_id=tenant.id,
                                     external_id=chat, kind="event",
                                     event=_message(event.id, create, user)))
        for typing in activity.direct_message_indicate_typing_events:
            if typing.sender_id == ours:
                continue
            event_id = f"typing:{typing.sender_id}:{typing.created_timestamp}"
            items.append(WebhookItem(event_id=event_id, tenant_id=tenant.id,
                                     external_id=f"{ours}:{typing.sender_id}", kind="event",
                                     event=EdgeTyping(external_id=event_id, typing=True)))
        for read in activity.direct_message_mark_read_events:
            if read.sender_id == ours:
                continue
            event_id = f"read:{read.sender_id}:{read.last_read_event_id}"
            items.append(WebhookItem(event_id=event_id, tenant_id=tenant.id,
                                     external_id=f"{ours}:{read.sender_id}", kind="event",
                                     event=EdgeRead(external_id=event_id,
                                                    at=_moment(read.created_timestamp))))
        return WebhookBatch(items=tuple(items))

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """Send an agent's message (typing and the end send nothing).

        Raises:
            EdgeCallFailed: classified by :func:`classify`.
        """
        config = tenant.x
        ours, _, participant = str(session.get("chatId") or "").partition(":")
        if config is None or not participant:
            raise EdgeCallFailed("x: no participant in the session", retry=False)
        if not isinstance(command, SendMessage):
            return
        lines = [command.text] if command.text else []
        lines += [f"{a.name}: {a.url}" if a.name else a.url for a in command.attachments]
        text = "\n".join(lines)
        url = f"{config.api_url.rstrip('/')}/2/dm_conversations/with/{participant}/messages"
        for start in range(0, len(text), MAX_TEXT):
            await self.http.request(f"x:{ours}", "POST", url, what="x send",
                                    json={"text": text[start:start + MAX_TEXT]},
                                    headers={"Authorization": f"Bearer {config.access_token}"},
                                    classify=classify)


def _message(event_id: str, create: _MessageCreate, user: _User) -> EdgeMessage:
    author = AgentRef(id=create.sender_id, name=user.name)
    data = create.message_data
    media = data.attachment.media if data.attachment else None
    if media is not None and media.media_url_https:
        attachment = Attachment(url=media.media_url_https, name=media.type)
        return EdgeMessage(external_id=event_id, author=author, type="file", text=data.text,
                           attachments=(attachment,))
    return EdgeMessage(external_id=event_id, author=author, text=data.text)


def _moment(epoch_ms: str) -> str | None:
    """An X ``created_timestamp`` (epoch milliseconds) as an ISO time."""
    if not epoch_ms.isdigit():
        return None
    return iso(datetime.fromtimestamp(int(epoch_ms) / 1000, UTC))
