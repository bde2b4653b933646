"""The normalized vocabulary of edges: what happened on a channel or provider
(:class:`EdgeEvent`) and what lcx asks of one (:class:`EdgeCommand`).

Adapters turn wire traffic into these events and these commands into wire calls; the
conversation rules see only this vocabulary, never a vendor's protocol.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from lcx.model import AgentRef, Attachment

SIDE_CHANNEL: Final = "channel"
"""The edge where the customer is."""
SIDE_PROVIDER: Final = "provider"
"""The edge where the humans are."""
Side = Literal["channel", "provider"]


class EdgeEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="event"):
    """Something that happened on an edge, normalized."""

    external_id: str | None = None
    """The edge's own id of the event (for deduplication), when it has one."""


class AgentJoined(EdgeEvent, frozen=True, kw_only=True):
    """A human agent of the provider joined (the conversation begins)."""

    agent: AgentRef


class AgentLeft(EdgeEvent, frozen=True, kw_only=True):
    """A human agent of the provider left."""

    agent: AgentRef


class EdgeMessage(EdgeEvent, frozen=True, kw_only=True):
    """A message from the other side (agent for providers, customer for channels)."""

    author: AgentRef | None = None
    type: Literal["text", "file", "rich", "postback"] = "text"
    text: str | None = None
    payload: Any = None
    attachments: tuple[Attachment, ...] = ()


class EdgeTyping(EdgeEvent, frozen=True, kw_only=True):
    """The other side is typing (or stopped)."""

    agent: AgentRef | None = None
    typing: bool = True


class EdgeEnded(EdgeEvent, frozen=True, kw_only=True):
    """The other side ended the conversation."""

    reason: str | None = None


class EdgeTransferred(EdgeEvent, frozen=True, kw_only=True):
    """The edge moved the conversation (recorded; routing stays the edge's business)."""

    to: dict[str, Any] = {}


class EdgeRead(EdgeEvent, frozen=True, kw_only=True):
    """The customer read the conversation up to ``at`` (the channel's read receipt)."""

    at: str | None = None


class EdgeUndelivered(EdgeEvent, frozen=True, kw_only=True):
    """An agent's message the customer's channel refused for good (e.g. WhatsApp outside
    its 24 h window): the agents are told, in the channel's own plain words."""

    message_id: str
    notice: str


AnyEdgeEvent = AgentJoined | AgentLeft | EdgeMessage | EdgeTyping | EdgeEnded | \
    EdgeTransferred | EdgeUndelivered | EdgeRead


class EdgeCommand(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="command"):
    """Something lcx asks an edge to do (stored in the outbox, so it survives crashes)."""

    conversation_id: str


class SendMessage(EdgeCommand, frozen=True, kw_only=True):
    """Deliver a message to the other side (as the guest for providers, as the agent for
    channels)."""

    message_id: str
    text: str | None = None
    type: str = "text"
    payload: Any = None
    attachments: tuple[Attachment, ...] = ()
    author_name: str | None = None


class SendTyping(EdgeCommand, frozen=True, kw_only=True):
    """Show or hide a typing indicator on the other side."""

    typing: bool = True


class EndSession(EdgeCommand, frozen=True, kw_only=True):
    """End the conversation on the other side."""

    reason: str | None = None


AnyEdgeCommand = SendMessage | SendTyping | EndSession

EDGE_COMMANDS: msgspec.json.Decoder[AnyEdgeCommand] = msgspec.json.Decoder(AnyEdgeCommand)
"""Decodes an outbox body back into its command."""
