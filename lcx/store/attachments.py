"""Records of uploaded files (table ``attachments``), as functions over a :class:`Tx`.

A record is written only after its bytes are durably stored (by an
:class:`~lcx.attachments.AttachmentStorage`); the bytes are deleted before their record, so
a record may point to a missing object (its download answers 404) but an object never
outlives its record unnoticed.

Deleting attachments (retention, deleting an organization) therefore goes::

    keys = await store.read(lambda tx: keys_for_org(tx, org, conversation_ids=ids))
    await storage.delete([k.storage_key for k in keys if k.backend == storage.backend])
    await store.transaction(lambda tx: delete_rows(tx, [k.id for k in keys]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from lcx.store.base import Row, Tx

__all__ = ["AttachmentKey", "AttachmentRecord", "delete_rows", "get_attachment",
           "insert_attachment", "keys_for_org"]

_COLUMNS = ("id", "org_id", "conversation_id", "name", "content_type", "size", "backend",
            "storage_key", "uploaded_by", "created_at")
_IN_CHUNK = 500
"""Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""


class AttachmentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One upload: who sent what, where its bytes are."""

    id: str
    org_id: str
    conversation_id: str | None
    name: str
    content_type: str
    size: int
    backend: str
    """``local`` or ``s3``: the storage that holds the bytes."""
    storage_key: str
    uploaded_by: str
    """The ``sub`` of the token that uploaded it."""
    created_at: str


class AttachmentKey(NamedTuple):
    """What deleting an attachment needs: its row id and where its bytes are."""

    id: str
    backend: str
    storage_key: str


def insert_attachment(tx: Tx, record: AttachmentRecord) -> None:
    """Store a new record.

    Raises:
        IntegrityConflict: the id exists (ids are fresh, so this is a bug).
    """
    marks = ", ".join("?" for _ in _COLUMNS)
    tx.execute(f"INSERT INTO attachments ({', '.join(_COLUMNS)}) VALUES ({marks})",
               [getattr(record, column) for column in _COLUMNS])


def get_attachment(tx: Tx, attachment_id: str) -> AttachmentRecord | None:
    """The record with this id, or ``None``."""
    row = tx.fetchone(f"SELECT {', '.join(_COLUMNS)} FROM attachments WHERE id = ?",
                      (attachment_id,))
    return None if row is None else _record(row)


def keys_for_org(tx: Tx, org_id: str, *, conversation_ids: Sequence[str] | None = None,
                 before: str | None = None, unattached: bool = False) -> list[AttachmentKey]:
    """The attachments of ``org_id`` matching every filter given, oldest first.

    - ``conversation_ids``: only those tied to one of these conversations (an empty
      sequence matches nothing);
    - ``before``: only those uploaded strictly before this timestamp (the stored form,
      RFC 3339 UTC with milliseconds, e.g. from :func:`lcx.model.iso`);
    - ``unattached``: only those tied to no conversation (orphan uploads).

    No filter: every attachment of the organization. Read-only.
    """
    where, params = ["org_id = ?"], [org_id]
    if before is not None:
        where.append("created_at < ?")
        params.append(before)
    if unattached:
        where.append("conversation_id IS NULL")
    chunks: list[Sequence[str] | None] = [None]
    if conversation_ids is not None:
        ids = list(conversation_ids)
        chunks = [ids[i:i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK)]
    found: list[AttachmentKey] = []
    for chunk in chunks:
        found += _keys(tx, where, params, chunk)
    return found if len(chunks) == 1 else sorted(found, key=lambda key: key.id)


def delete_rows(tx: Tx, ids: Sequence[str]) -> int:
    """Delete the records with these ids (unknown ones are ignored); how many were deleted.

    Deletes records only: delete their bytes first (see the module docstring). Idempotent.
    """
    ids = list(ids)
    deleted = 0
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start:start + _IN_CHUNK]
        deleted += tx.execute(
            f"DELETE FROM attachments WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
    return deleted


def _keys(tx: Tx, where: list[str], params: list[Any],
          conversation_ids: Sequence[str] | None) -> list[AttachmentKey]:
    clauses, values = list(where), list(params)
    if conversation_ids is not None:
        clauses.append(f"conversation_id IN ({', '.join('?' * len(conversation_ids))})")
        values += conversation_ids
    rows = tx.fetchall("SELECT id, backend, storage_key FROM attachments "
                       f"WHERE {' AND '.join(clauses)} ORDER BY created_at, id", values)
    return [AttachmentKey(row["id"], row["backend"], row["storage_key"]) for row in rows]


def _record(row: Row) -> AttachmentRecord:
    return AttachmentRecord(**row)
