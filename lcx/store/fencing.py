"""Fencing tokens in the store: the last line of defence against a stale leader."""

from __future__ import annotations

from lcx.errors import FencedOut
from lcx.store.base import Tx


def advance(tx: Tx, name: str, term: int, holder: str, at: str) -> None:
    """Record that ``holder`` acts for ``name`` with ``term``, inside the caller's
    transaction (so the duty's own writes commit only if the term is still current).

    Raises:
        FencedOut: a higher term already acted for ``name`` (this leader is stale).
    """
    tx.execute(
        "INSERT INTO fencing_terms (name, term, holder, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET term = excluded.term, holder = excluded.holder, "
        "updated_at = excluded.updated_at WHERE fencing_terms.term <= excluded.term",
        (name, term, holder, at))
    row = tx.fetchone("SELECT term, holder FROM fencing_terms WHERE name = ?", (name,))
    if row is None or int(row["term"]) > term:
        current = None if row is None else row["term"]
        raise FencedOut(f"{name}: term {term} of {holder} is stale (current: {current})")
