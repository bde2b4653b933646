"""What a rule decided: the new state and every effect, for the actor shell to carry out.

A :class:`Decision` is plain data. The shell commits it as one store transaction (the new
state, its messages, the events it causes, the edge commands for the outbox, an idempotency
record) and only then carries out the rest: frames to agents, notes to queues, agent
sessions and provider links, counters. Nothing here performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lcx.livechat.edges import EdgeCommand, Side
from lcx.model import Conversation, Message

Counter = Literal["requests_created", "requests_missed", "messages_stored",
                  "conversations_ended"]
"""The domain counters a decision may count (exported to ``/metrics``)."""


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """Tell the queue of ``user_group_id`` that this request waits there."""

    user_group_id: str
    conversation: Conversation


@dataclass(frozen=True, slots=True)
class UnqueueRequest:
    """Tell the queue of ``user_group_id`` that this request left it."""

    user_group_id: str
    conversation_id: str
    why: Literal["cancelled", "missed", "moved"]


@dataclass(frozen=True, slots=True)
class ReleaseSlot:
    """Give the agent's chat slot for this conversation back."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class OpenProviderLink:
    """Open (or resume) the conversation's session with its external provider."""


@dataclass(frozen=True, slots=True)
class AgentFrame:
    """A websocket frame for every socket of one agent."""

    agent_id: str
    frame: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HistoryFrame:
    """A frame for one agent that carries the conversation's whole message log under
    ``messages`` (the shell reads the log after the commit)."""

    agent_id: str
    frame: dict[str, Any]


Note = QueueRequest | UnqueueRequest | ReleaseSlot | OpenProviderLink
"""A notification to another actor, sent after the commit (never waited for)."""


@dataclass(slots=True)
class Decision:
    """The outcome of one command; see the module docstring.

    ``state`` is the conversation after the command (``None`` when it does not exist);
    ``write`` says whether it changed and must be stored (``insert`` for a new request).
    """

    state: Conversation | None
    reply: Any = None
    write: bool = False
    insert: bool = False
    messages: list[tuple[Message, str | None]] = field(default_factory=list)
    """New messages with the client id that makes each idempotent."""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Events to the bot, as (type, data)."""
    commands: list[tuple[Side, EdgeCommand]] = field(default_factory=list)
    """Commands for the conversation's channel or provider, via the outbox."""
    remember: tuple[str, str, Any] | None = None
    """(scope, client id, answer) to store for an idempotent resend."""
    frames: list[AgentFrame | HistoryFrame] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    counted: list[Counter] = field(default_factory=list)
    with_history: bool = False
    """The reply is to carry the messages stored so far (an accept)."""

    @property
    def stores(self) -> bool:
        """Whether carrying this out needs a store transaction."""
        return self.write or bool(self.messages or self.events or self.commands)

    def then(self, later: Decision) -> Decision:
        """This decision followed by ``later`` (decided on this one's state), as one."""
        return Decision(
            state=later.state, reply=later.reply, write=self.write or later.write,
            insert=self.insert or later.insert, messages=self.messages + later.messages,
            events=self.events + later.events, commands=self.commands + later.commands,
            remember=later.remember or self.remember, frames=self.frames + later.frames,
            notes=self.notes + later.notes, counted=self.counted + later.counted,
            with_history=later.with_history)
