"""The commands a conversation obeys: the input of :func:`lcx.livechat.conversation.decide`.

They are also the messages that reach a conversation actor (frozen msgspec Structs, tagged,
so they can travel between instances); ``reply`` names the type of the answer.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from lcx.livechat.edges import AnyEdgeEvent
from lcx.model import (
    AgentRef,
    Attachment,
    Author,
    Context,
    Conversation,
    EndedBy,
    Message,
    MessageType,
    Subscriber,
)


class Msg(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="msg"):
    """Base of actor messages. ``reply`` is the type of the answer to an ``ask`` (what a
    remote caller decodes it as when the actor lives on another instance)."""

    reply: ClassVar[Any] = None


# --- to a conversation actor ------------------------------------------------------------

class CreateRequest(Msg, frozen=True, kw_only=True):
    """Open a new request for a subscriber (answer: the stored Conversation).

    ``enqueue=False`` keeps it out of the queue (an agent-initiated conversation that its
    agent accepts at once)."""

    reply: ClassVar[Any] = Conversation

    conversation: Conversation
    enqueue: bool = True


class MemberGuard(msgspec.Struct, frozen=True, kw_only=True):
    """Who must be in the conversation for a command to be obeyed: an agent of
    ``org_id`` still in it (a supervisor of ``org_id``: any of its conversations).

    Checked by the actor before anything else, on its memory and, before refusing, on the
    stored state; the agent API's own check in one hop (see
    :func:`lcx.livechat.conversation.guard_refusal`)."""

    org_id: str
    agent_id: str
    supervisor: bool = False


class PostMessage(Msg, frozen=True, kw_only=True):
    """Add a message to the log (answer: PostResult); ``client_id`` makes it idempotent."""

    reply: ClassVar[Any] = None  # PostResult, set below (defined after this class)

    author: Author
    type: MessageType = "text"
    text: str | None = None
    payload: Any = None
    attachments: tuple[Attachment, ...] = ()
    client_id: str | None = None
    idempotency_scope: str | None = None
    private: bool = False
    """An internal note (agents only): stored and shown to agents, never sent on."""
    guard: MemberGuard | None = None
    """The caller must be in the conversation (an agent's message frame)."""
    as_subscriber: bool = False
    """The author is the conversation's subscriber: the message is signed with its
    handle and its name as the conversation holds them (``author`` says ``subscriber``)."""


class PostResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a stored message answers (the 202 body of ``POST /messages``)."""

    id: str
    conversation_id: str
    request_id: str
    seq: int


class Accept(Msg, frozen=True, kw_only=True):
    """An agent takes the pending request (answer: Accepted)."""

    reply: ClassVar[Any] = None  # Accepted, set below

    agent: AgentRef
    assigned: bool = False


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """The conversation after an accept, with the messages queued while it was pending."""

    conversation: Conversation
    messages: tuple[Message, ...]


class End(Msg, frozen=True, kw_only=True):
    """End the conversation, or cancel the pending request."""

    reply: ClassVar[Any] = Conversation

    by: EndedBy
    reason: str | None = None
    agent: AgentRef | None = None


class Typing(Msg, frozen=True, kw_only=True):
    """An agent starts or stops typing."""

    agent: AgentRef
    typing: bool


class Read(Msg, frozen=True, kw_only=True):
    """An agent read up to ``seq``."""

    agent: AgentRef
    seq: int


class Flag(Msg, frozen=True, kw_only=True):
    """Store a flag on the conversation."""

    agent: AgentRef
    flag: str
    value: Any


class Join(Msg, frozen=True, kw_only=True):
    """A supervisor or colleague joins."""

    reply: ClassVar[Any] = Conversation

    agent: AgentRef
    role: str = "agent"


class Leave(Msg, frozen=True, kw_only=True):
    """An agent leaves."""

    reply: ClassVar[Any] = Conversation

    agent: AgentRef


class Transfer(Msg, frozen=True, kw_only=True):
    """Re-queue to a user group, or hand to an agent."""

    reply: ClassVar[Any] = Conversation

    agent: AgentRef
    to_user_group_id: str | None = None
    to_agent_id: str | None = None


class UpdateRequest(Msg, frozen=True, kw_only=True):
    """Change the pending request (answer: Conversation)."""

    reply: ClassVar[Any] = Conversation

    subscriber: Subscriber | None = None
    context: Context | None = None
    user_group_id: str | None = None


class GetState(Msg, frozen=True, kw_only=True):
    """Answer the current Conversation: as the actor holds it, or with ``fresh`` as the
    store holds it (the actor adopts it). A caller about to refuse something on the
    strength of the answer asks again with ``fresh``: the memory of an actor may lag
    behind what another owner stored while membership changed."""

    fresh: bool = False
    reply: ClassVar[Any] = Conversation


class Timeout(Msg, frozen=True, kw_only=True):
    """A timer fired: ``request`` (pending too long) or ``inactivity``."""

    kind: Literal["request", "inactivity"]
    deadline: str


class Recover(Msg, frozen=True, kw_only=True):
    """Re-arm timers after a restart (sent to every open conversation at start)."""


class EdgeInbound(Msg, frozen=True, kw_only=True):
    """A normalized event from the conversation's channel or provider (to the
    conversation actor); applied once (messages deduplicated by their external id)."""

    side: Literal["channel", "provider"]
    event: AnyEdgeEvent


PostMessage.reply = PostResult
Accept.reply = Accepted


class HandOver(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer to ``target`` once the shell has reserved the target's chat slot (a rule
    input, never an actor message: the actor turns a ``Transfer`` to an agent into it)."""

    agent: AgentRef
    """The agent handing over."""
    target: AgentRef
