"""Which actor messages may be sent again after their first owner died holding them.

A call that reached nobody (``MemberGone``: nobody listened; ``MailboxClosed``: the mailbox
closed before reading it) was never read, so any message may be resent. A call held by an
owner that died (``MemberLost``) may have been read and carried out before the death; only
a message that gives the same outcome when applied twice is resent then. The list is
explicit: a message added to :data:`actors.messages.WIRE_MESSAGES` is not resent until it
is added here on purpose.
"""

from __future__ import annotations

from actors.messages import (
    Accept,
    AcceptRequest,
    AgentPresence,
    AgentState,
    Connect,
    CreateRequest,
    DeliverEdge,
    Dequeue,
    Disconnect,
    EdgeInbound,
    End,
    Enqueue,
    Flag,
    GetState,
    Join,
    Leave,
    Msg,
    OpenLink,
    Position,
    PostMessage,
    Push,
    QueueStats,
    Read,
    Recover,
    Release,
    Reserve,
    Resync,
    SetStatus,
    Timeout,
    Transfer,
    Typing,
    UpdateRequest,
)

IDEMPOTENT: frozenset[type[Msg]] = frozenset({
    # reads
    GetState, Position, QueueStats, AgentState,
    # keyed by what they name: a second one finds the first one's outcome
    Connect, Disconnect,  # by socket id
    Reserve, Release,  # by conversation id (a retried reserve succeeds)
    SetStatus, AgentPresence,  # a value, not a change
    Typing, Read,  # an indicator, a marker
    Recover, Resync, OpenLink,  # rebuild from the store
})
"""Messages that may be applied twice with the outcome of once."""

NOT_RESENT: frozenset[type[Msg]] = frozenset({
    # a second one is refused, or applied again, when the first one was carried out
    CreateRequest, Accept, AcceptRequest, End, Join, Leave, Transfer, UpdateRequest, Flag,
    Timeout, EdgeInbound, DeliverEdge, Enqueue, Dequeue, Push,
})
"""Messages never resent once their owner may have read them (``PostMessage`` is decided
per message, see :func:`safe_to_resend`). Every wire message is in exactly one of the two
sets, or is ``PostMessage`` (a unit test holds that)."""


def safe_to_resend(message: Msg) -> bool:
    """Whether ``message`` may be sent again after its owner died holding it.

    A ``PostMessage`` is, when it carries a client id in a scope (the store remembers the
    answer under it, so a second one answers the first one's result).
    """
    if isinstance(message, PostMessage):
        return bool(message.client_id and message.idempotency_scope)
    return type(message) in IDEMPOTENT
