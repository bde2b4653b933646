"""The transactional outbox: events written with the state change that caused them.

A conversation actor calls :func:`enqueue` inside the transaction that changes the
conversation; the delivery service (``services/bot_delivery.py``) reads due rows and delivers them
lane by lane: a lane is ``(conversation_id, target)`` and delivers in ``event_no`` order.

The delivery functions below (:func:`due_lanes`, :func:`due_lane_heads`,
:func:`next_in_lane`, ``mark_*``) and the
dead-letter functions (:func:`list_dead`, :func:`replay_dead`, :func:`drop_dead`) are plain
functions of a :class:`~lcx.store.base.Tx`, run through ``store.read`` /
``store.transaction``; they raise what the store raises (``StoreError`` subclasses).

Dead letters and order: an event that dies (rejected by the bot, or out of attempts) leaves
its lane, and the lane goes on with the next event: one poisoned event does not stall a
conversation forever. Replaying it later delivers it after newer events of its lane that
were delivered meanwhile (see :func:`replay_dead`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lcx.model import iso, utc_now
from lcx.store.base import Row, Tx

TARGET_BOT = "bot"
"""The tenant's ``bot_events_url``."""
TARGET_FLOW = "flow"
"""The tenant's event publisher (flow triggers)."""


@dataclass(frozen=True)
class OutboxEvent:
    """One event to deliver: ``body`` holds the exact bytes to POST (and sign)."""

    id: str
    org_id: str
    tenant_id: str
    conversation_id: str
    event_no: int
    target: str
    url: str
    type: str
    body: bytes
    created_at: str


def enqueue(tx: Tx, event: OutboxEvent) -> None:
    """Add an event to the outbox as pending, due at once, and announce it (the delivery
    service takes it from memory once the transaction commits: ``Store.on_commit``).

    Raises:
        IntegrityConflict: an event with this id, or this lane position, exists.
    """
    tx.execute(
        "INSERT INTO outbox (id, org_id, tenant_id, conversation_id, event_no, target, url, "
        "type, body, status, attempts, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.id, event.org_id, event.tenant_id, event.conversation_id, event.event_no,
         event.target, event.url, event.type, event.body.decode(), "pending", 0,
         event.created_at, event.created_at))
    tx.announce(event)


# --- delivery: lanes, attempts, dead letters -----------------------------------------------
#
# Status moves pending -> delivered, or pending -> dead (rejected, or out of attempts), and
# dead -> pending again only through replay_dead. Timestamps are ``lcx.model.iso`` strings
# (``2026-11-21T10:00:00.000Z``): they sort as text, which the due checks rely on.

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
_IN_CHUNK = 500
"""Ids per ``IN (...)`` list: well under every engine's parameter limit."""
_LANES_PER_QUERY = 100
"""Lanes per :func:`pending_in_lanes` statement (four parameters each)."""

_IS_PENDING = f"status = '{PENDING}'"
_IS_DEAD = f"status = '{DEAD}'"
_STATUS_IS = {PENDING: _IS_PENDING, DEAD: _IS_DEAD}
"""The status conditions as literals: the partial indexes ``outbox_due``/``outbox_lane``
(pending events only) and ``outbox_dead`` (migration 0008) are used for a statement only
when its condition names their status, which a parameter does not on PostgreSQL (generic
plans of prepared statements)."""

_ROW_COLUMNS = ("id, org_id, tenant_id, conversation_id, event_no, target, url, type, body, "
                "status, attempts, next_attempt_at, last_error, created_at, delivered_at")


@dataclass(frozen=True)
class OutboxRow:
    """An outbox event as stored, with its delivery state."""

    id: str
    org_id: str
    tenant_id: str
    conversation_id: str
    event_no: int
    target: str
    url: str
    type: str
    body: bytes
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None

    @classmethod
    def from_row(cls, row: Row) -> OutboxRow:
        """Build from a ``SELECT`` of :data:`_ROW_COLUMNS` (``body`` back to bytes)."""
        return cls(**{**row, "body": str(row["body"]).encode()})

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> OutboxRow:
        """Build from a ``SELECT`` of :data:`_ROW_COLUMNS` read as a tuple (``body`` is
        its ninth column)."""
        (id_, org_id, tenant_id, conversation_id, event_no, target, url, type_, body,
         status, attempts, next_attempt_at, last_error, created_at, delivered_at) = values
        return cls(id_, org_id, tenant_id, conversation_id, event_no, target, url, type_,
                   str(body).encode(), status, attempts, next_attempt_at, last_error,
                   created_at, delivered_at)

    @classmethod
    def from_event(cls, event: OutboxEvent) -> OutboxRow:
        """The row :func:`enqueue` stored for ``event``: pending, no attempt, due at once."""
        return cls(event.id, event.org_id, event.tenant_id, event.conversation_id,
                   event.event_no, event.target, event.url, event.type, event.body, PENDING,
                   0, event.created_at, None, event.created_at, None)


class Lane(NamedTuple):
    """One delivery lane: the events of a conversation to one target, in ``event_no`` order."""

    conversation_id: str
    target: str
    tenant_id: str


def due_lanes(tx: Tx, now_iso: str, limit: int, *,
              exclude_tenants: Sequence[str] = ()) -> list[Lane]:
    """Lanes whose oldest pending event is due at ``now_iso``, most overdue first.

    A lane whose head waits for a retry is not due, even if a later event of it is.
    ``exclude_tenants`` leaves out tenants the caller cannot serve now (at their limit), so
    that their backlog does not fill ``limit`` and hide other tenants' lanes.
    """
    return [lane for lane, _ in due_lane_heads(tx, now_iso, limit,
                                               exclude_tenants=exclude_tenants)]


def due_lane_heads(tx: Tx, now_iso: str, limit: int, *,
                   exclude_tenants: Sequence[str] = ()) -> list[tuple[Lane, int]]:
    """:func:`due_lanes` with the ``event_no`` of each lane's oldest pending event (a
    deliverer that already has it answered, its mark not yet committed, skips the lane)."""
    skip = ""
    if exclude_tenants:
        skip = f" AND o.tenant_id NOT IN ({', '.join('?' * len(exclude_tenants))})"
    rows = tx.fetchall(
        "SELECT o.conversation_id, o.target, o.tenant_id, o.event_no FROM outbox o "
        f"WHERE o.status = '{PENDING}' AND o.next_attempt_at <= ?"
        f"{skip} AND o.event_no = (SELECT min(p.event_no) AS n FROM outbox p "
        f"WHERE p.conversation_id = o.conversation_id AND p.target = o.target AND "
        f"p.status = '{PENDING}') "
        "ORDER BY o.next_attempt_at, o.conversation_id LIMIT ?",
        (now_iso, *exclude_tenants, limit))
    return [(Lane(r["conversation_id"], r["target"], r["tenant_id"]), int(r["event_no"]))
            for r in rows]


def next_due_at(tx: Tx, now_iso: str) -> str | None:
    """The earliest ``next_attempt_at`` after ``now_iso`` of a pending event, or ``None``:
    when the next parked lane (waiting for a retry) becomes due."""
    row = tx.fetchone(f"SELECT min(next_attempt_at) AS t FROM outbox WHERE {_IS_PENDING} "
                      "AND next_attempt_at > ?", (now_iso,))
    return None if row is None or row["t"] is None else str(row["t"])


def next_in_lane(tx: Tx, conversation_id: str, target: str) -> OutboxRow | None:
    """The pending event of the lane with the lowest ``event_no`` (due or not), or ``None``.

    Dead events are skipped: a dead letter does not stall its conversation forever; the
    events after it are delivered and the dead one waits in the dead-letter list.
    """
    row = tx.fetchone(
        f"SELECT {_ROW_COLUMNS} FROM outbox WHERE conversation_id = ? AND target = ? "
        f"AND {_IS_PENDING} ORDER BY event_no LIMIT 1", (conversation_id, target))
    return None if row is None else OutboxRow.from_row(row)


class LanePosition(NamedTuple):
    """Where a reader stands in a lane: the events after ``after_event_no`` are wanted."""

    conversation_id: str
    target: str
    after_event_no: int = -1


def pending_in_lanes(tx: Tx, lanes: Sequence[LanePosition], per_lane: int = 1
                     ) -> list[OutboxRow]:
    """The first ``per_lane`` pending events (due or not) after each lane's position, in
    ``(conversation_id, target, event_no)`` order: an indexed lookup per lane however long
    its history, in one statement per :data:`_LANES_PER_QUERY` lanes. Dead events are
    skipped, as in :func:`next_in_lane`."""
    one = (f"SELECT * FROM (SELECT {_ROW_COLUMNS} FROM outbox WHERE conversation_id = ? "
           f"AND target = ? AND {_IS_PENDING} AND event_no > ? ORDER BY event_no LIMIT ?) AS h")
    found: list[OutboxRow] = []
    for start in range(0, len(lanes), _LANES_PER_QUERY):
        chunk = lanes[start:start + _LANES_PER_QUERY]
        params = [value for lane in chunk for value in (
            lane.conversation_id, lane.target, lane.after_event_no, per_lane)]
        rows = tx.values(" UNION ALL ".join([one] * len(chunk)), params)
        found.extend(map(OutboxRow.from_values, rows))
    found.sort(key=lambda row: (row.conversation_id, row.target, row.event_no))
    return found


def mark_delivered(tx: Tx, event_id: str, attempts: int, delivered_at: str) -> bool:
    """Record a 2xx. Idempotent; False when the event is no longer pending (replayed or
    dropped meanwhile), in which case nothing changes."""
    return tx.execute(
        "UPDATE outbox SET status = ?, attempts = ?, delivered_at = ? WHERE id = ? "
        "AND status = ?", (DELIVERED, attempts, delivered_at, event_id, PENDING)) > 0


def mark_all_delivered(tx: Tx, marks: Sequence[tuple[str, int, str]]) -> None:
    """:func:`mark_delivered` for many ``(event_id, attempts, delivered_at)`` at once (the
    delivery service records its 2xx answers in batches). Events no longer pending are
    left alone."""
    tx.executemany(
        "UPDATE outbox SET status = ?, attempts = ?, delivered_at = ? WHERE id = ? "
        "AND status = ?", [(DELIVERED, attempts, delivered_at, event_id, PENDING)
                           for event_id, attempts, delivered_at in marks])


def mark_retry(tx: Tx, event_id: str, attempts: int, next_attempt_at: str,
               error: str) -> bool:
    """Record a failed attempt: the event stays pending, due again at ``next_attempt_at``.
    False when the event is no longer pending."""
    return tx.execute(
        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ? "
        "AND status = ?", (attempts, next_attempt_at, error, event_id, PENDING)) > 0


def mark_dead(tx: Tx, event_id: str, attempts: int, error: str) -> bool:
    """Move a pending event to the dead-letter list. False when it is no longer pending."""
    return tx.execute(
        "UPDATE outbox SET status = ?, attempts = ?, last_error = ? WHERE id = ? "
        "AND status = ?", (DEAD, attempts, error, event_id, PENDING)) > 0


def _dead_filter(ids: Sequence[str] | None, tenant_id: str | None) -> tuple[str, list[Any]]:
    where, params = _IS_DEAD, []
    if tenant_id is not None:
        where += " AND tenant_id = ?"
        params.append(tenant_id)
    if ids is not None:
        where += f" AND id IN ({', '.join('?' * len(ids))})" if ids else " AND 0 = 1"
        params.extend(ids)
    return where, params


def _chunks(ids: Sequence[str] | None) -> list[Sequence[str] | None]:
    if ids is None:
        return [None]
    return [ids[i:i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK)]


def list_dead(tx: Tx, tenant_id: str | None = None, limit: int = 100, *,
              ids: Sequence[str] | None = None) -> list[OutboxRow]:
    """Dead events, oldest first, optionally of one tenant and/or among ``ids``."""
    rows: list[OutboxRow] = []
    for chunk in _chunks(ids):
        where, params = _dead_filter(chunk, tenant_id)
        found = tx.fetchall(f"SELECT {_ROW_COLUMNS} FROM outbox WHERE {where} "
                            "ORDER BY created_at, id LIMIT ?", (*params, limit))
        rows.extend(OutboxRow.from_row(row) for row in found)
    rows.sort(key=lambda row: (row.created_at, row.id))
    return rows[:limit]


def replay_dead(tx: Tx, ids: Sequence[str] | None = None, tenant_id: str | None = None, *,
                now_iso: str | None = None) -> int:
    """Put dead events back to pending, with 0 attempts, due at once; returns how many.

    ``ids=None`` and ``tenant_id=None`` replay every dead event (callers guard that).
    A replayed event is delivered again before the pending events of its lane that come
    after it, but events of its lane already delivered while it was dead are not sent
    again: the bot sees it out of ``seq`` order. ``last_error`` is kept until the next
    attempt. Idempotent: events that are not dead are left alone.
    """
    due = now_iso or iso(utc_now())
    changed = 0
    for chunk in _chunks(ids):
        where, params = _dead_filter(chunk, tenant_id)
        changed += tx.execute(f"UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?"
                              f" WHERE {where}", (PENDING, 0, due, *params))
    return changed


def drop_dead(tx: Tx, ids: Sequence[str] | None = None, tenant_id: str | None = None) -> int:
    """Delete dead events for good; returns how many. Filters as for :func:`replay_dead`."""
    dropped = 0
    for chunk in _chunks(ids):
        where, params = _dead_filter(chunk, tenant_id)
        dropped += tx.execute(f"DELETE FROM outbox WHERE {where}", params)
    return dropped


def _count(tx: Tx, status: str, tenant_id: str | None) -> int:
    sql, params = f"SELECT count(*) AS n FROM outbox WHERE {_STATUS_IS[status]}", []
    if tenant_id is not None:
        sql += " AND tenant_id = ?"
        params.append(tenant_id)
    row = tx.fetchone(sql, params)
    return 0 if row is None else int(row["n"])


def pending_count(tx: Tx, tenant_id: str | None = None) -> int:
    """How many events wait for delivery (a gauge for metrics)."""
    return _count(tx, PENDING, tenant_id)


def dead_count(tx: Tx, tenant_id: str | None = None) -> int:
    """How many events are in the dead-letter list (a gauge for metrics)."""
    return _count(tx, DEAD, tenant_id)
