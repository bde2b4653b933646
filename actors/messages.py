"""The messages livechat actors exchange (frozen msgspec Structs, tagged).

A conversation's commands are the pure core's (:mod:`lcx.livechat.commands`), imported here
so that every actor message can be named from one module; queue, agent-session and
provider-link messages are defined below. :data:`WIRE_MESSAGES` lists, explicitly, every
message that may travel between instances: the bus codec is built from it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from lcx.livechat.commands import (
    Accept,
    Accepted,
    CreateRequest,
    EdgeInbound,
    End,
    Flag,
    GetState,
    Join,
    Leave,
    MemberGuard,
    Msg,
    PostMessage,
    PostResult,
    Read,
    Recover,
    Timeout,
    Transfer,
    Typing,
    UpdateRequest,
)
from lcx.livechat.edges import AnyEdgeCommand
from lcx.model import AgentRef, Conversation

# --- to a queue actor ---------------------------------------------------------------------

class Enqueue(Msg, frozen=True, kw_only=True):
    """A request waits in this queue."""

    conversation: Conversation


class Dequeue(Msg, frozen=True, kw_only=True):
    """A request left this queue without being accepted here."""

    conversation_id: str
    why: Literal["cancelled", "missed", "moved", "accepted"]


class AcceptRequest(Msg, frozen=True, kw_only=True):
    """An agent asks to take a pending request (answer: Accepted)."""

    reply: ClassVar[Any] = None  # Accepted, set below

    conversation_id: str
    agent: AgentRef


class AgentPresence(Msg, frozen=True, kw_only=True):
    """An agent of this queue's group is online/away/offline, with its current load."""

    agent: AgentRef
    status: Literal["online", "away", "offline"]
    active: int


class Position(Msg, frozen=True, kw_only=True):
    """Answer (position, estimatedWaitSeconds) of a pending request."""

    reply: ClassVar[Any] = tuple[int | None, int | None]

    conversation_id: str


class Resync(Msg, frozen=True, kw_only=True):
    """Reload the pending list from the store (and route again)."""


class QueueStats(Msg, frozen=True, kw_only=True):
    """Answer (pending, agents online) of the queue."""

    reply: ClassVar[Any] = tuple[int, int]


# --- to an agent session actor -------------------------------------------------------------

class Connect(Msg, frozen=True, kw_only=True):
    """A websocket of this agent opened (answer: the session id)."""

    reply: ClassVar[Any] = dict[str, Any]

    socket_id: str
    sink: Any = None
    """The socket's frame sink when it is on this instance."""
    instance_id: str | None = None
    """The instance holding the socket when it is elsewhere (frames are relayed)."""
    name: str | None = None
    groups: tuple[str, ...] = ()


class Disconnect(Msg, frozen=True, kw_only=True):
    """A websocket of this agent closed."""

    socket_id: str


class Push(Msg, frozen=True, kw_only=True):
    """Send a frame (encoded JSON) to every socket of the agent."""

    frame: bytes


class Reserve(Msg, frozen=True, kw_only=True):
    """Take one chat slot for ``conversation_id`` if under ``limit`` (answer: bool)."""

    reply: ClassVar[Any] = bool

    conversation_id: str
    limit: int
    assigned: bool


class Release(Msg, frozen=True, kw_only=True):
    """Give a chat slot back (the conversation ended or moved)."""

    conversation_id: str


class SetStatus(Msg, frozen=True, kw_only=True):
    """The agent goes online or away."""

    reply: ClassVar[Any] = str

    status: Literal["online", "away"]


class AgentState(Msg, frozen=True, kw_only=True):
    """Answer (status, active conversation ids)."""

    reply: ClassVar[Any] = tuple[str, list[str]]


AcceptRequest.reply = Accepted


# --- edges (channels and providers) ---------------------------------------------------------

class OpenLink(Msg, frozen=True, kw_only=True):
    """Open (or resume, after a takeover) the provider session of a conversation."""


class DeliverEdge(Msg, frozen=True, kw_only=True):
    """Carry out an outbox edge command on the provider session (answer: None, or the
    failure is raised)."""

    command: AnyEdgeCommand


WIRE_MESSAGES: tuple[type[Msg], ...] = (
    # to a conversation
    CreateRequest, PostMessage, Accept, End, Typing, Read, Flag, Join, Leave, Transfer,
    UpdateRequest, GetState, Timeout, Recover, EdgeInbound,
    # to a queue
    Enqueue, Dequeue, AcceptRequest, AgentPresence, Position, Resync, QueueStats,
    # to an agent session
    Connect, Disconnect, Push, Reserve, Release, SetStatus, AgentState,
    # to a provider link
    OpenLink, DeliverEdge,
)
"""Every message that may be forwarded to another instance (the bus codec's union)."""

__all__ = [
    "WIRE_MESSAGES", "Accept", "AcceptRequest", "Accepted", "AgentPresence", "AgentState",
    "Connect", "CreateRequest", "DeliverEdge", "Dequeue", "EdgeInbound", "End", "Enqueue",
    "Flag", "GetState", "Join", "Leave", "MemberGuard", "Msg", "OpenLink", "Position",
    "PostMessage", "PostResult", "Push", "QueueStats", "Read", "Recover", "Release", "Reserve",
    "Resync", "SetStatus", "Timeout", "Transfer", "Typing", "UpdateRequest",
]
