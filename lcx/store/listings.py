"""Pages of requests and conversations for the management listings, newest first.

Every listing walks the ``conversations`` table (a request and the conversation it becomes
are one row) in ``(created_at, id)`` descending order, and continues after a
:class:`Position` (keyset pagination: stable under inserts, no ``OFFSET``).

Participation. "The conversations of an agent" are those whose ``participants`` JSON
names the agent (accepting, joining and being handed a conversation all add a
participant; ``agent_id``/``accepted_by`` would miss colleagues who joined and agents who
handed a conversation over). The SQL narrows the rows with a ``LIKE`` on the encoded
``"id":"<agent>"`` fragment (wildcards escaped), which can over-match (SQLite's ``LIKE``
ignores ASCII case); :func:`list_conversations` then keeps only the rows whose decoded
participants really hold the agent, reading further chunks until the page is full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from lcx.model import Conversation, ConversationStatus
from lcx.store.base import Tx

# The row decoder of the conversations module: one definition of the JSON columns.
from lcx.store.conversations import _conversation as row_to_conversation

__all__ = ["REQUEST_STATUSES", "ListFilter", "Position", "RequestStatus", "list_conversations",
           "statuses_of_requests"]

RequestStatus = Literal["pending", "accepted", "cancelled", "missed"]

REQUEST_STATUSES: dict[RequestStatus, tuple[ConversationStatus, ...]] = {
    "pending": ("pending",),
    "accepted": ("active", "ended"),
    "cancelled": ("cancelled",),
    "missed": ("missed",),
}
"""A request status -> the conversation statuses it covers."""

_LIKE_ESCAPE = "!"
_MIN_CHUNK = 100


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the ``(created_at, id)`` of its last row."""

    created_at: str
    id: str


@dataclass(frozen=True, kw_only=True)
class ListFilter:
    """Which rows of one organization a listing shows (``None``: no condition)."""

    org_id: str
    statuses: tuple[ConversationStatus, ...] = ()
    """Conversation statuses to keep (empty: all)."""
    tenant_id: str | None = None
    user_group_id: str | None = None
    groups: tuple[str, ...] | None = None
    """Keep only these user groups (an agent's ``groups`` claim); empty keeps nothing."""
    accepted_by: str | None = None
    participant: str | None = None
    """Keep only conversations this agent is or was a participant of."""
    since: str | None = None
    """``created_at`` at or after (stored form, UTC with milliseconds)."""
    until: str | None = None
    """``created_at`` before."""


def statuses_of_requests(status: RequestStatus | None) -> tuple[ConversationStatus, ...]:
    """The conversation statuses behind a request status filter (``None``: all)."""
    return () if status is None else REQUEST_STATUSES[status]


def _like_fragment(agent_id: str) -> str:
    """A ``LIKE`` pattern matching the participant JSON of ``agent_id`` (escaped)."""
    fragment = '"id":' + msgspec.json.encode(agent_id).decode()
    for special in (_LIKE_ESCAPE, "%", "_"):
        fragment = fragment.replace(special, _LIKE_ESCAPE + special)
    return f"%{fragment}%"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _where(where: ListFilter, after: Position | None) -> tuple[str, list[Any]]:
    clauses, params = ["org_id = ?"], [where.org_id]
    if where.statuses:
        clauses.append(f"status IN ({_marks(where.statuses)})")
        params += where.statuses
    if where.groups is not None:
        clauses.append(f"user_group_id IN ({_marks(where.groups)})")
        params += where.groups
    for clause, value in (("tenant_id = ?", where.tenant_id),
                          ("user_group_id = ?", where.user_group_id),
                          ("accepted_by = ?", where.accepted_by),
                          ("created_at >= ?", where.since), ("created_at < ?", where.until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if where.participant is not None:
        clauses.append("participants LIKE ? ESCAPE ?")
        params += [_like_fragment(where.participant), _LIKE_ESCAPE]
    if after is not None:
        # PostgreSQL text cannot hold NUL, and a cursor may name any id. For ids without
        # NUL (every stored id), ``id < head + NUL + rest`` is exactly ``id <= head``.
        head, nul, _ = after.id.partition("\x00")
        clauses.append(f"(created_at < ? OR (created_at = ? AND id {'<=' if nul else '<'} ?))")
        params += [after.created_at, after.created_at, head]
    return " AND ".join(clauses), params


def _chunk(tx: Tx, where: ListFilter, after: Position | None, size: int) -> list[Conversation]:
    condition, params = _where(where, after)
    rows = tx.fetchall(f"SELECT * FROM conversations WHERE {condition} "
                       "ORDER BY created_at DESC, id DESC LIMIT ?", [*params, size])
    return [row_to_conversation(row) for row in rows]


def _takes_part(conversation: Conversation, agent_id: str) -> bool:
    return any(p.id == agent_id for p in conversation.participants)


def list_conversations(tx: Tx, where: ListFilter, *, after: Position | None,
                       limit: int) -> list[Conversation]:
    """Up to ``limit`` rows matching ``where`` after ``after``, newest first.

    Ask for one more than the page size to learn whether another page follows. A
    ``groups`` filter with no group answers nothing. Reads only; raises what the store
    raises.
    """
    if limit <= 0 or where.groups == ():
        return []
    if where.participant is None:
        return _chunk(tx, where, after, limit)
    agent_id, size = where.participant, max(limit, _MIN_CHUNK)
    found: list[Conversation] = []
    while len(found) < limit:
        chunk = _chunk(tx, where, after, size)
        found += [c for c in chunk if _takes_part(c, agent_id)]
        if len(chunk) < size:
            break
        after = Position(chunk[-1].created_at, chunk[-1].id)
    return found[:limit]
