"""The two edges of lcx: *channels* (where customers come from) and *providers* (where the
humans are), behind two small interfaces and one vocabulary of normalized events.

Every conversation has one channel (``bot``: the bot API; ``livechat``; ...) and one
provider (``helvia``: lcx's own agents; ``genesys``; ...). The conversation actor never
knows which: it receives :class:`EdgeEvent`s and emits :class:`EdgeCommand`s, which travel
through the outbox (so they get the one outbound policy: ordered per conversation,
retried with backoff and ``Retry-After``, dead-lettered after the last attempt).

Adapters know nothing of actors: they turn wire traffic into these events and commands
into wire calls, and raise :class:`EdgeCallFailed` with a retry classification.

Adding a channel or a provider is one module plus one line in :mod:`adapters.registry`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from lcx.config import TenantConfig
from lcx.errors import EdgeCallFailed
from lcx.livechat.edges import (
    EDGE_COMMANDS,
    AgentJoined,
    AgentLeft,
    AnyEdgeCommand,
    AnyEdgeEvent,
    EdgeCommand,
    EdgeEnded,
    EdgeEvent,
    EdgeMessage,
    EdgeTransferred,
    EdgeTyping,
    EndSession,
    SendMessage,
    SendTyping,
)
from lcx.model import Conversation

__all__ = [
    "EDGE_COMMANDS",
    "AgentJoined",
    "AgentLeft",
    "AnyEdgeCommand",
    "AnyEdgeEvent",
    "Channel",
    "EdgeCallFailed",
    "EdgeCommand",
    "EdgeEnded",
    "EdgeEvent",
    "EdgeMessage",
    "EdgeTransferred",
    "EdgeTyping",
    "Emit",
    "EndSession",
    "HandshakeAnswer",
    "Handshaker",
    "InboundRequest",
    "PollBatch",
    "Provider",
    "RequestVerifier",
    "Save",
    "SendMessage",
    "SendTyping",
    "Session",
    "TenantPoller",
    "WebhookBatch",
    "WebhookItem",
    "WebhookReceiver",
]

Session = dict[str, Any]
"""What an edge remembers about one external conversation (ids, tokens, stream URLs),
stored in ``edge_sessions`` as JSON and handed back to every call."""

Emit = Callable[[AnyEdgeEvent], Awaitable[None]]
"""Hands one normalized event to the conversation (returns once it is durably applied)."""
Save = Callable[[Session], Awaitable[None]]
"""Stores an updated session durably (returns once it is stored)."""


class Provider(Protocol):
    """Where the humans are, when they are not lcx's own agents."""

    name: str

    async def open(self, conversation: Conversation, tenant: TenantConfig) -> Session:
        """Start the external conversation (e.g. create a guest chat); its session.

        Raises:
            EdgeCallFailed: the provider refused or is unreachable.
        """

    async def stream(self, session: Session, emit: Emit, save: Save) -> None:
        """Follow the external conversation, emitting events, until it ends (returns) or
        the caller cancels; reconnects by itself when a connection drops. A provider that
        keeps a cursor (e.g. the last polled event id) calls ``save`` with the updated
        session after each processed batch, so another instance resumes from there.

        Raises:
            EdgeCallFailed: the session is gone for good (e.g. rejected credentials).
        """

    async def send(self, session: Session, command: AnyEdgeCommand) -> None:
        """Carry out a command (message, typing, end) on the external conversation.

        Raises:
            EdgeCallFailed: with its retry classification.
        """


class WebhookItem(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a webhook: for which tenant and external conversation."""

    side: Literal["channel", "provider"] = "channel"
    """Whose event it is: the customer's (a channel) or the humans' (a provider)."""
    event_id: str
    tenant_id: str
    external_id: str
    """The edge's id of the conversation (e.g. a LiveChat chat id)."""
    kind: Literal["started", "event"]
    event: AnyEdgeEvent | None = None
    customer: dict[str, Any] = {}
    """For ``started``: who the customer is (name, email, ...), as the edge knows it."""


class WebhookBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What one verified webhook delivery means: events for external conversations."""

    items: tuple[WebhookItem, ...] = ()


@runtime_checkable
class TenantPoller(Protocol):
    """A provider whose agents' messages are fetched per tenant (e.g. Zendesk Sunshine
    Conversations): one poll covers every open conversation of the tenant."""

    name: str

    async def poll(self, tenant: TenantConfig, sessions: Mapping[str, Session]
                   ) -> PollBatch:
        """New events of the given open conversations (by lcx conversation id), and each
        conversation's session with its cursor moved past them.

        Raises:
            EdgeCallFailed: the provider is unreachable or refused (classified).
        """


class PollBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What one poll found: events per lcx conversation (in order), and the updated
    sessions to store once those events are applied."""

    events: tuple[tuple[str, AnyEdgeEvent], ...] = ()
    sessions: dict[str, Session] = {}


@runtime_checkable
class WebhookReceiver(Protocol):
    """Anything that receives webhooks on ``/events/{alias}`` (channels, and providers
    that push their agents' events)."""

    alias: str

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the signature or secret; raise Unauthorized otherwise."""

    def parse(self, body: bytes) -> WebhookBatch:
        """The events of a verified body."""


class InboundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook request as received: what a signature may cover beyond the body."""

    url: str
    """The URL as this instance received it (scheme, host, port, path, query)."""
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: bytes = b""


@runtime_checkable
class RequestVerifier(Protocol):
    """A receiver whose signature covers more than the body (e.g. Twilio's covers the
    URL): verified with the whole request instead of ``verify(headers, body)``."""

    def verify_request(self, request: InboundRequest) -> None:
        """Check the signature; raise Unauthorized (or Forbidden) otherwise."""


class HandshakeAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a webhook verification handshake."""

    body: bytes
    content_type: str = "text/plain"


@runtime_checkable
class Handshaker(Protocol):
    """A receiver that answers a verification ``GET`` on its ``/events/{alias}`` path
    (Messenger's ``hub.challenge``, X's ``crc_token``)."""

    def handshake(self, query: Mapping[str, str]) -> HandshakeAnswer:
        """The answer to the ``GET`` with ``query``.

        Raises:
            lcx.errors.Forbidden: the handshake's token is wrong.
            lcx.errors.InvalidRequest: it is not this channel's handshake.
        """


class Channel(Protocol):
    """Where customers come from, when not through the bot API."""

    name: str
    alias: str
    """The ``/events/{alias}`` path its webhooks arrive on."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the webhook's signature or secret before anything else.

        Raises:
            lcx.errors.Unauthorized: bad or missing signature (nothing is stored).
        """

    def parse(self, body: bytes) -> WebhookBatch:
        """The events of a verified webhook body (unknown actions give no items).

        Raises:
            lcx.errors.InvalidRequest: the body is not what the edge sends.
        """

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """Carry out a command on the customer's side (agent message, typing, end).

        Raises:
            EdgeCallFailed: with its retry classification.
        """
