"""Canned responses in the store (table ``canned_responses``, API.md section 6).

A canned response belongs to an organization and, optionally, to one user group; its
``shortcut`` is unique per organization and group. Organization-wide ones are stored with
``user_group_id = ''`` so that the unique constraint covers them too.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from lcx.ids import new_id
from lcx.model import iso, utc_now
from lcx.store.base import Row, Tx

__all__ = ["CannedResponse", "delete", "delete_for_org", "get", "insert", "listed", "update"]

_COLUMNS = "id, user_group_id, shortcut, title, text, created_at, updated_at"


class CannedResponse(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """A saved reply, as the API shows it."""

    id: str
    shortcut: str
    title: str
    text: str
    user_group_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


def _from_row(row: Row) -> CannedResponse:
    return CannedResponse(id=row["id"], shortcut=row["shortcut"], title=row["title"],
                          text=row["text"], user_group_id=row["user_group_id"] or None,
                          created_at=row["created_at"], updated_at=row["updated_at"])


def listed(tx: Tx, org_id: str, groups: Sequence[str] | None) -> list[CannedResponse]:
    """The organization's canned responses by shortcut: every one (``groups`` is None), or
    the organization-wide ones and those of ``groups``."""
    if groups is None:
        rows = tx.fetchall(f"SELECT {_COLUMNS} FROM canned_responses WHERE org_id = ? "
                           "ORDER BY shortcut, user_group_id", (org_id,))
    else:
        wanted = ["", *groups]
        marks = ", ".join("?" for _ in wanted)
        rows = tx.fetchall(f"SELECT {_COLUMNS} FROM canned_responses WHERE org_id = ? AND "
                           f"user_group_id IN ({marks}) ORDER BY shortcut, user_group_id",
                           (org_id, *wanted))
    return [_from_row(row) for row in rows]


def get(tx: Tx, org_id: str, response_id: str) -> CannedResponse | None:
    """One canned response of the organization, or ``None``."""
    row = tx.fetchone(f"SELECT {_COLUMNS} FROM canned_responses WHERE org_id = ? AND id = ?",
                      (org_id, response_id))
    return None if row is None else _from_row(row)


def insert(tx: Tx, org_id: str, *, shortcut: str, title: str, text: str,
           user_group_id: str | None) -> CannedResponse | None:
    """Store a new canned response; ``None`` (nothing written) when the shortcut is taken
    in that organization and group."""
    now = iso(utc_now())
    row = tx.fetchone(
        f"INSERT INTO canned_responses ({_COLUMNS}, org_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (org_id, user_group_id, shortcut) DO NOTHING RETURNING id",
        (new_id(), user_group_id or "", shortcut, title, text, now, now, org_id))
    return None if row is None else get(tx, org_id, row["id"])


def taken(tx: Tx, org_id: str, user_group_id: str | None, shortcut: str,
          except_id: str) -> bool:
    """Whether another canned response of the organization and group has ``shortcut``."""
    return tx.fetchone("SELECT id FROM canned_responses WHERE org_id = ? AND "
                       "user_group_id = ? AND shortcut = ? AND id <> ?",
                       (org_id, user_group_id or "", shortcut, except_id)) is not None


def update(tx: Tx, org_id: str, changed: CannedResponse) -> CannedResponse:
    """Write ``changed`` over the stored response with its id (the caller checked that it
    exists and that its shortcut is free)."""
    tx.execute("UPDATE canned_responses SET user_group_id = ?, shortcut = ?, title = ?, "
               "text = ?, updated_at = ? WHERE org_id = ? AND id = ?",
               (changed.user_group_id or "", changed.shortcut, changed.title, changed.text,
                iso(utc_now()), org_id, changed.id))
    found = get(tx, org_id, changed.id)
    assert found is not None
    return found


def delete(tx: Tx, org_id: str, response_id: str) -> bool:
    """Delete one canned response; ``False`` when there was none."""
    return tx.execute("DELETE FROM canned_responses WHERE org_id = ? AND id = ?",
                      (org_id, response_id)) > 0


def delete_for_org(tx: Tx, org_id: str) -> int:
    """Delete every canned response of the organization; how many there were."""
    return max(0, tx.execute("DELETE FROM canned_responses WHERE org_id = ?", (org_id,)))
