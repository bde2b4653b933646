"""Deleting an organization's records: retention purges and the whole-organization cascade.

Plain functions of a :class:`~lcx.store.base.Tx`. The callers (``services/retention.py``)
work in batches of :data:`BATCH_SIZE` conversations, each batch as: read the ids
(:func:`closed_conversation_ids`) and their attachments' keys
(:func:`lcx.store.attachments.keys_for_org`), delete those files from the attachment
storage, then delete the rows in one short transaction (:func:`delete_conversations`).
Files go before their records, as :mod:`lcx.store.attachments` requires: a failure in
between leaves a record whose file is gone (its download answers 404, the next purge
deletes it), never a file that nothing names.

Rules:

* Only *closed* conversations (``ended``, ``cancelled``, ``missed``) are deleted here; an
  open one belongs to its actor, which must end it first.
* A conversation goes with its messages, its outbox rows and its attachments.
* Every statement names the organization: nothing of another organization is touched.
* Idempotency keys are not a conversation's (their scope is a tenant or an
  organization): they expire by age (:func:`expire_idempotency_keys`), and the
  whole-organization delete removes the scopes that name the organization or its
  tenants (``http:<org>:...``, ``bot:<tenant>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lcx.model import ConversationStatus
from lcx.store import canned
from lcx.store.attachments import AttachmentKey, delete_rows
from lcx.store.base import Tx
from lcx.store.business_hours import delete_for_org

__all__ = ["BATCH_SIZE", "CLOSED_STATUSES", "KEY_BATCH_SIZE", "OrgRows", "Purged",
           "closed_conversation_ids", "delete_conversations", "delete_org_rows",
           "expire_idempotency_keys", "open_conversation_ids", "orgs_with_records",
           "orphan_attachment_keys"]

BATCH_SIZE = 500
"""Conversations (or attachments) deleted per transaction."""

CLOSED_STATUSES: tuple[ConversationStatus, ...] = ("ended", "cancelled", "missed")

KEY_BATCH_SIZE = 1000
"""Idempotency keys deleted per transaction."""

_ORPHAN = ("org_id = ? AND (conversation_id IS NULL OR conversation_id NOT IN "
           "(SELECT id FROM conversations WHERE org_id = ?))")
"""Rows of an organization that belong to none of its conversations."""


@dataclass(kw_only=True)
class Purged:
    """Rows deleted by one or more batches."""

    conversations: int = 0
    messages: int = 0
    outbox: int = 0
    attachments: int = 0

    def add(self, other: Purged) -> None:
        """Add ``other``'s counts to these."""
        self.conversations += other.conversations
        self.messages += other.messages
        self.outbox += other.outbox
        self.attachments += other.attachments


@dataclass(frozen=True, kw_only=True)
class OrgRows:
    """What :func:`delete_org_rows` deleted."""

    messages: int
    outbox: int
    settings: int
    business_hours: int
    idempotency_keys: int
    canned_responses: int = 0


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _deleted(tx: Tx, sql: str, params: Sequence[Any]) -> int:
    return max(0, tx.execute(sql, params))


def closed_conversation_ids(tx: Tx, org_id: str, *, before: str | None,
                            limit: int = BATCH_SIZE) -> list[str]:
    """Up to ``limit`` ids of ``org_id``'s closed conversations that ended before
    ``before`` (every closed one when ``None``), earliest ended first."""
    sql = f"SELECT id FROM conversations WHERE org_id = ? AND status IN " \
          f"({_marks(CLOSED_STATUSES)})"
    params: list[Any] = [org_id, *CLOSED_STATUSES]
    if before is not None:
        sql += " AND ended_at < ?"
        params.append(before)
    rows = tx.fetchall(f"{sql} ORDER BY ended_at, id LIMIT ?", [*params, limit])
    return [row["id"] for row in rows]


def delete_conversations(tx: Tx, org_id: str, ids: Sequence[str],
                         attachments: Sequence[AttachmentKey]) -> Purged:
    """Delete these *closed* conversations of ``org_id`` with their messages and outbox
    rows, and the ``attachments`` rows (whose files must be gone already).

    An id that is open, of another organization or unknown is left alone (with its
    messages). Idempotent. ``ids`` should hold at most :data:`BATCH_SIZE` ids.
    """
    if not ids:
        return Purged(attachments=delete_rows(tx, [key.id for key in attachments]))
    closed = f"status IN ({_marks(CLOSED_STATUSES)})"
    rows = tx.fetchall(f"SELECT id FROM conversations WHERE org_id = ? AND {closed} AND id IN "
                       f"({_marks(ids)})", [org_id, *CLOSED_STATUSES, *ids])
    gone = [row["id"] for row in rows]
    purged = Purged(attachments=delete_rows(tx, [key.id for key in attachments]))
    if not gone:
        return purged
    scope, params = f"org_id = ? AND conversation_id IN ({_marks(gone)})", [org_id, *gone]
    purged.messages = _deleted(tx, f"DELETE FROM messages WHERE {scope}", params)
    purged.outbox = _deleted(tx, f"DELETE FROM outbox WHERE {scope}", params)
    purged.conversations = _deleted(
        tx, f"DELETE FROM conversations WHERE org_id = ? AND id IN ({_marks(gone)})", params)
    return purged


def orphan_attachment_keys(tx: Tx, org_id: str, *, before: str | None,
                           limit: int = BATCH_SIZE) -> list[AttachmentKey]:
    """Up to ``limit`` attachments of ``org_id`` that belong to none of its conversations
    (tied to none, or to one deleted since) uploaded before ``before`` (any when
    ``None``), oldest first."""
    sql, params = f"SELECT id, backend, storage_key FROM attachments WHERE {_ORPHAN}", \
        [org_id, org_id]
    if before is not None:
        sql += " AND created_at < ?"
        params.append(before)
    rows = tx.fetchall(f"{sql} ORDER BY created_at, id LIMIT ?", [*params, limit])
    return [AttachmentKey(row["id"], row["backend"], row["storage_key"]) for row in rows]


def open_conversation_ids(tx: Tx, org_id: str) -> list[str]:
    """Ids of the organization's pending and active conversations, oldest first."""
    rows = tx.fetchall("SELECT id FROM conversations WHERE org_id = ? AND open_key IS NOT NULL "
                       "ORDER BY created_at, id", (org_id,))
    return [row["id"] for row in rows]


def orgs_with_records(tx: Tx) -> list[str]:
    """Every organization that has conversations or attachments, sorted."""
    rows = tx.fetchall("SELECT org_id FROM conversations UNION SELECT org_id FROM attachments")
    return sorted(row["org_id"] for row in rows)


def delete_org_rows(tx: Tx, org_id: str, tenant_ids: Iterable[str]) -> OrgRows:
    """Delete what is left of ``org_id`` once its closed conversations and attachments
    are gone: its settings, business hours, canned responses, idempotency keys (scopes
    ``http:<org>:...`` and ``bot:<tenant>`` of ``tenant_ids``), and messages and outbox
    rows that belong to none of its conversations. Open conversations keep their
    records. Idempotent.

    Callers holding caches (organization settings, business hours) must forget the
    organization afterwards.
    """
    scopes = [f"bot:{tenant}" for tenant in tenant_ids]
    prefix = f"http:{org_id}:"  # compared exactly: SQLite's LIKE would ignore case
    keys = _deleted(tx, "DELETE FROM idempotency_keys WHERE substr(scope, 1, ?) = ?",
                    (len(prefix), prefix))
    if scopes:
        keys += _deleted(tx, f"DELETE FROM idempotency_keys WHERE scope IN ({_marks(scopes)})",
                         scopes)
    return OrgRows(
        messages=_deleted(tx, f"DELETE FROM messages WHERE {_ORPHAN}", (org_id, org_id)),
        outbox=_deleted(tx, f"DELETE FROM outbox WHERE {_ORPHAN}", (org_id, org_id)),
        settings=_deleted(tx, "DELETE FROM org_settings WHERE org_id = ?", (org_id,)),
        business_hours=delete_for_org(tx, org_id), idempotency_keys=keys,
        canned_responses=canned.delete_for_org(tx, org_id))


def expire_idempotency_keys(tx: Tx, before: str, *, dialect: str,
                            limit: int = KEY_BATCH_SIZE) -> int:
    """Delete at most ``limit`` idempotency keys stored before ``before`` (ISO time), the
    oldest first; how many. Call again until it answers less than ``limit``.

    No index serves ``created_at``: one would cost every idempotent call (each bot message)
    a B-tree write more. On SQLite the keys are taken in rowid order, which is the order
    they were stored in (their ``created_at`` order); the batch ends at the first key
    that is not old enough. On PostgreSQL the scan stops after ``limit`` old keys (the
    oldest sit first in the heap) and reads the whole table once only when none is left.
    """
    if dialect == "sqlite":
        last = None
        for rowid, created_at in tx.values(
                "SELECT rowid, created_at FROM idempotency_keys ORDER BY rowid LIMIT ?",
                (limit,)):
            if created_at >= before:
                break
            last = rowid
        if last is None:
            return 0
        return _deleted(tx, "DELETE FROM idempotency_keys WHERE rowid <= ? AND created_at < ?",
                        (last, before))
    return _deleted(tx, "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM "
                        "idempotency_keys WHERE created_at < ? LIMIT ?)", (before, limit))
