"""Edge sessions (the external side of a conversation) and the durable webhook inbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from lcx.store.base import Tx


def save_session(tx: Tx, conversation_id: str, side: str, edge: str, external_id: str,
                 data: dict[str, Any], at: str) -> None:
    """Remember (or update) the external side of a conversation.

    Raises:
        IntegrityConflict: another conversation already holds this external id.
    """
    tx.execute(
        "INSERT INTO edge_sessions (conversation_id, side, edge, external_id, data, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (conversation_id, side) DO "
        "UPDATE SET edge = excluded.edge, external_id = excluded.external_id, "
        "data = excluded.data, updated_at = excluded.updated_at",
        (conversation_id, side, edge, external_id, msgspec.json.encode(data).decode(), at))


def load_session(tx: Tx, conversation_id: str, side: str) -> dict[str, Any] | None:
    """The stored session of one side of a conversation, if any."""
    row = tx.fetchone("SELECT data FROM edge_sessions WHERE conversation_id = ? AND side = ?",
                      (conversation_id, side))
    return None if row is None else dict(msgspec.json.decode(row["data"]))


def conversation_for(tx: Tx, edge: str, external_id: str) -> str | None:
    """The conversation an external conversation belongs to, if any."""
    row = tx.fetchone("SELECT conversation_id FROM edge_sessions WHERE edge = ? AND "
                      "external_id = ?", (edge, external_id))
    return None if row is None else str(row["conversation_id"])


@dataclass(frozen=True)
class InboxRow:
    """One stored webhook event."""

    alias: str
    event_id: str
    tenant_id: str
    external_id: str
    item: bytes
    attempts: int


def store_inbox(tx: Tx, alias: str, rows: list[tuple[str, str, str, bytes]], at: str) -> int:
    """Store webhook events (event id, tenant, external id, item JSON); duplicates of
    events already stored are dropped. How many were new."""
    stored = 0
    for position, (event_id, tenant_id, external_id, item) in enumerate(rows):
        stored += tx.execute(
            "INSERT INTO edge_inbox (alias, event_id, tenant_id, external_id, item, status, "
            "received_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (alias, event_id) DO NOTHING",
            (alias, event_id, tenant_id, external_id, item.decode(), "pending", at, position))
    return stored


def pending_inbox(tx: Tx, limit: int = 500) -> list[InboxRow]:
    """Pending events in arrival order (within one delivery, in the delivery's order)."""
    rows = tx.fetchall("SELECT alias, event_id, tenant_id, external_id, item, attempts "
                       "FROM edge_inbox WHERE status = ? ORDER BY received_at, position, "
                       "event_id "
                       "LIMIT ?", ("pending", limit))
    return [InboxRow(r["alias"], r["event_id"], r["tenant_id"], r["external_id"],
                     str(r["item"]).encode(), int(r["attempts"])) for r in rows]


def finish_inbox(tx: Tx, alias: str, event_id: str, *, status: str, at: str,
                 error: str | None = None) -> None:
    """Mark an event processed (or failed for good)."""
    tx.execute("UPDATE edge_inbox SET status = ?, processed_at = ?, last_error = ?, "
               "attempts = attempts + 1 WHERE alias = ? AND event_id = ?",
               (status, at, error, alias, event_id))


def retry_inbox(tx: Tx, alias: str, event_id: str, error: str) -> None:
    """Count a failed attempt; the event stays pending."""
    tx.execute("UPDATE edge_inbox SET attempts = attempts + 1, last_error = ? "
               "WHERE alias = ? AND event_id = ?", (error, alias, event_id))


@dataclass(frozen=True)
class FailedInboxRow:
    """A stored webhook event given up after its last attempt (a dead letter)."""

    alias: str
    event_id: str
    tenant_id: str
    external_id: str
    attempts: int
    last_error: str | None
    received_at: str


def _failed_filter(tenant_id: str | None, ids: list[str] | None) -> tuple[str, list[Any]]:
    sql, args = " WHERE status = ?", ["failed"]
    if tenant_id is not None:
        sql += " AND tenant_id = ?"
        args.append(tenant_id)
    if ids:
        sql += f" AND event_id IN ({', '.join('?' * len(ids))})"
        args += ids
    return sql, args


def list_failed_inbox(tx: Tx, tenant_id: str | None = None, limit: int = 100, *,
                      ids: list[str] | None = None) -> list[FailedInboxRow]:
    """Dead-lettered webhook events, oldest first (of one tenant, or with these ids)."""
    where, args = _failed_filter(tenant_id, ids)
    rows = tx.fetchall("SELECT alias, event_id, tenant_id, external_id, attempts, "
                       f"last_error, received_at FROM edge_inbox{where} "
                       "ORDER BY received_at, position, event_id LIMIT ?", (*args, limit))
    return [FailedInboxRow(r["alias"], r["event_id"], r["tenant_id"], r["external_id"],
                           int(r["attempts"]), r["last_error"], r["received_at"])
            for r in rows]


def replay_failed_inbox(tx: Tx, ids: list[str], tenant_id: str | None = None) -> int:
    """Make dead-lettered webhook events pending again, with a fresh attempt count."""
    where, args = _failed_filter(tenant_id, ids)
    return tx.execute("UPDATE edge_inbox SET status = 'pending', attempts = 0, "
                      f"processed_at = NULL{where}", tuple(args))


def drop_failed_inbox(tx: Tx, ids: list[str], tenant_id: str | None = None) -> int:
    """Delete dead-lettered webhook events for good."""
    where, args = _failed_filter(tenant_id, ids)
    return tx.execute(f"DELETE FROM edge_inbox{where}", tuple(args))
