"""Twilio Programmable Messaging (SMS and WhatsApp) as a customer *channel*.

Inbound, Twilio POSTs form-encoded webhooks to ``/events/twilio``:

- :meth:`TwilioChannel.verify_request`: the tenant is the one whose ``account_sid`` is
  the form's ``AccountSid`` and whose number (``from_number``, or any number when it
  uses a ``messaging_service_sid`` equal to the form's ``MessagingServiceSid``) is its
  ``To``. ``X-Twilio-Signature`` must be base64 HMAC-SHA1, keyed with the tenant's
  ``auth_token``, of the public URL (the tenant's ``webhook_url``, else the URL as
  received) followed by every form field name and value, sorted by name (repeated names:
  every value, sorted), no separators; checked with and without an explicit default port
  (``:443`` / ``:80``), as Twilio's signing is inconsistent there. A bad one is 403 and
  nothing is stored.
- :meth:`TwilioChannel.parse`: a message (``MessageSid``, ``Body``, ``NumMedia`` with
  ``MediaUrl<n>`` / ``MediaContentType<n>``) becomes items of the external conversation
  ``<AccountSid>|<To>|<From>`` (one subscriber per sender and number; WhatsApp
  addresses keep their ``whatsapp:`` prefix): a ``started`` item, then an
  :class:`EdgeMessage` deduplicated by ``MessageSid`` (media as a ``file`` message).
  Status callbacks (``MessageStatus`` without a ``Body``) and messages from our own
  number are dropped; so are messages over the ``spam_threshold``. Twilio gets an empty
  TwiML ``<Response/>`` back (:attr:`TwilioChannel.webhook_ack`).

Outbound, :meth:`TwilioChannel.send` calls ``POST {api_url}/2010-04-01/Accounts/{sid}/
Messages.json`` (Basic ``sid:auth_token``) with ``To`` (the customer), ``From`` (the
number the customer wrote to) or ``MessagingServiceSid``, ``Body`` (pieces of at most
1600 characters) and ``MediaUrl`` (repeated; on the last piece), through the one outbound
policy (breaker and limiter keyed ``twilio:<sid>``). Twilio's error codes decide: 429 /
20429 are retried (with ``Retry-After``), 5xx too; 21610 (unsubscribed), 21211 (bad
number), 63016 (WhatsApp outside the 24 h window: a template would be needed) and any
other 4xx are not, and carry a clear ``notice`` for the agent. Typing and the end send
nothing: SMS and WhatsApp have neither through this API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import msgspec

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    EdgeMessage,
    HandshakeAnswer,
    InboundRequest,
    SendMessage,
    Session,
    WebhookBatch,
    WebhookItem,
)
from adapters.policy import RETRYABLE, EdgeHttp, retry_after
from adapters.spam import SpamGuard
from lcx.config import TenantConfig, TwilioConfig
from lcx.errors import ConfigError, Forbidden, InvalidRequest
from lcx.model import AgentRef, Attachment

__all__ = ["MAX_BODY", "TwilioChannel", "TwilioError", "classify", "signature",
           "url_variants"]

MAX_BODY = 1600
SIGNATURE_HEADER = "x-twilio-signature"
RETRY_CODES = frozenset({20429})
NOTICES = {
    63016: "WhatsApp: the customer's 24-hour window is closed; only an approved template "
           "message can reach them now.",
    21610: "The customer has unsubscribed (replied STOP): Twilio will not deliver to them.",
    21211: "The customer's phone number is not valid for Twilio.",
}


def signature(url: str, fields: list[tuple[str, str]], auth_token: str) -> str:
    """Twilio's ``X-Twilio-Signature`` of a form POST to ``url`` (pure)."""
    data = url + "".join(name + value for name, value in sorted(fields))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its default port and with it (pure)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{default}")) if default else url
    variants = [url]
    if parts.port in (None, default):
        variants += [bare, ported]
    return list(dict.fromkeys(variants))


class TwilioError(EdgeCallFailed):
    """A classified Twilio failure with its error ``code`` and, when lcx's agents should
    know, a ``notice`` in plain words."""

    def __init__(self, message: str, *, code: int | None, status: int, retry: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retry=retry, status=status, auth=status in (401, 403),
                         retry_after=retry_after if retry else None)
        self.code = code
        self.notice = None if code is None else NOTICES.get(code)


class _ErrorBody(msgspec.Struct, kw_only=True):
    code: int | None = None
    message: str = ""


def classify(response: httpx.Response) -> EdgeCallFailed | None:
    """The failure a Messages API answer means (None: it succeeded); pure."""
    status = response.status_code
    if status < 300:
        return None
    try:
        error = msgspec.json.decode(response.content, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = _ErrorBody()
    retry = status in RETRYABLE or status >= 500 or error.code in RETRY_CODES
    return TwilioError(f"twilio send: {status} code {error.code}: {error.message}",
                       code=error.code, status=status, retry=retry,
                       retry_after=retry_after(response.headers))


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("twilio webhook: the body is not a form") from exc


class TwilioChannel:
    """The ``twilio`` channel (see the module docstring)."""

    name = "twilio"
    alias = "twilio"
    webhook_ack = HandshakeAnswer(body=b'<?xml version="1.0" encoding="UTF-8"?><Response/>',
                                  content_type="text/xml")

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp, *,
                 spam: SpamGuard | None = None) -> None:
        """Index the tenants by (account SID, number or messaging service).

        Raises:
            ConfigError: two tenants claim the same number of one account.
        """
        self.http = http
        self.spam = spam or SpamGuard()
        self._by_key: dict[tuple[str, str], TenantConfig] = {}
        for tenant in tenants.values():
            config = tenant.twilio
            if config is None or not config.account_sid:
                continue
            for key in filter(None, (config.from_number, config.messaging_service_sid)):
                claimed = (config.account_sid, _bare(key))
                if claimed in self._by_key:
                    raise ConfigError(f"tenants: {self._by_key[claimed].id} and {tenant.id} "
                                      f"share twilio number {key!r}")
                self._by_key[claimed] = tenant

    def _tenant(self, fields: Mapping[str, str]) -> tuple[TenantConfig, TwilioConfig]:
        account = fields.get("AccountSid", "")
        # a message comes To our number; a status callback of our send, From it
        for key in (fields.get("To", ""), fields.get("MessagingServiceSid", ""),
                    fields.get("From", "")):
            tenant = self._by_key.get((account, _bare(key))) if key else None
            if tenant is not None and tenant.twilio is not None:
                return tenant, tenant.twilio
        raise Forbidden("twilio webhook: unknown account or number")

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Twilio's signature covers the URL: see :meth:`verify_request`.

        Raises:
            Forbidden: always (a request without its URL cannot be verified).
        """
        raise Forbidden("twilio webhook: the signature needs the request URL")

    def verify_request(self, request: InboundRequest) -> None:
        """Check ``X-Twilio-Signature`` (see the module docstring).

        Raises:
            Forbidden: missing or wrong signature, unknown account or number.
        """
        given = next((v for k, v in request.headers.items()
                      if k.lower() == SIGNATURE_HEADER), "")
        try:
            fields = _form(request.body)
        except InvalidRequest as exc:
            raise Forbidden("twilio webhook: nothing to verify") from exc
        _, config = self._tenant(dict(fields))
        if not given or not config.auth_token:
            raise Forbidden("twilio webhook: unsigned")
        url = config.webhook_url or request.url
        if not any(hmac.compare_digest(given.encode(),
                                       signature(candidate, fields, config.auth_token).encode())
                   for candidate in url_variants(url)):
            raise Forbidden("twilio webhook: bad X-Twilio-Signature")

    def parse(self, body: bytes) -> WebhookBatch:
        """The items of a verified form (see the module docstring).

        Raises:
            InvalidRequest: no ``MessageSid``/``From``/``To``.
        """
        fields = dict(_form(body))
        tenant, config = self._tenant(fields)
        if "MessageStatus" in fields and "Body" not in fields:
            return WebhookBatch()  # a status callback of one of our sends
        sid, sender, to = (fields.get(k, "") for k in ("MessageSid", "From", "To"))
        if not (sid and sender and to):
            raise InvalidRequest("twilio webhook: MessageSid, From and To are required")
        if config.from_number and _bare(sender) == _bare(config.from_number):
            return WebhookBatch()
        account = f"twilio:{config.account_sid}"
        if not self.spam.admit(account, sender, config.spam_threshold):
            return WebhookBatch()
        media = tuple(Attachment(url=fields[f"MediaUrl{n}"],
                                 content_type=fields.get(f"MediaContentType{n}"))
                      for n in range(_count(fields.get("NumMedia")))
                      if fields.get(f"MediaUrl{n}"))
        text = fields.get("Body") or None
        message = EdgeMessage(external_id=sid, author=AgentRef(id=sender),
                              type="file" if media else "text", text=text, attachments=media)
        chat = f"{config.account_sid}|{to}|{sender}"
        return WebhookBatch(items=(
            WebhookItem(event_id=f"start:{sid}", tenant_id=tenant.id, external_id=chat,
                        kind="started", customer={"phone": sender}),
            WebhookItem(event_id=sid, tenant_id=tenant.id, external_id=chat, kind="event",
                        event=message)))

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """Send an agent's message (typing and the end send nothing; see the module
        docstring).

        Raises:
            TwilioError: classified by Twilio's error code.
            EdgeCallFailed: no ``[twilio]`` table or no customer in the session.
        """
        config = tenant.twilio
        account, _, rest = str(session.get("chatId") or "").partition("|")
        ours, _, customer = rest.partition("|")
        if config is None or not customer:
            raise EdgeCallFailed("twilio: no account or customer in the session", retry=False)
        if not isinstance(command, SendMessage):
            return
        url = f"{config.api_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        token = base64.b64encode(f"{account}:{config.auth_token}".encode()).decode()
        for fields in _posts(command, customer, ours, config):
            await self.http.request(f"twilio:{account}", "POST", url, what="twilio send",
                                    data=fields, classify=classify,
                                    headers={"Authorization": f"Basic {token}"})


def _posts(command: SendMessage, customer: str, ours: str,
           config: TwilioConfig) -> list[dict[str, Any]]:
    """The form of each Messages API call for one lcx message (pure)."""
    text = command.text or ""
    pieces = [text[i:i + MAX_BODY] for i in range(0, len(text), MAX_BODY)] or [""]
    sender: dict[str, Any] = {"MessagingServiceSid": config.messaging_service_sid} \
        if config.messaging_service_sid else {"From": ours}
    posts: list[dict[str, Any]] = [{"To": customer, **sender, "Body": piece}
                                   for piece in pieces]
    if command.attachments:
        posts[-1]["MediaUrl"] = [a.url for a in command.attachments]
    return [post for post in posts if post["Body"] or "MediaUrl" in post]


def _bare(address: str) -> str:
    return address.removeprefix("whatsapp:")


def _count(value: str | None) -> int:
    try:
        return max(0, min(10, int(value or "0")))
    except ValueError:
        return 0
