"""Business hours of user groups in the store (table ``business_hours``), and their cache.

The functions over a :class:`Tx` are the table's only SQL; :class:`BusinessHoursRepo` reads
through a cache and writes through the store. One repo must serve every reader of an
instance (the bot API and the business-hours routes share one: see
:func:`lcx.api.business_hours.repo_for`), or one would keep answering from a stale cache.
The cache is per process: another instance's write is seen here only after :meth:`forget`
(or a restart); invalidation over the cluster bus is still to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec
import trio

from lcx.business_hours import BusinessHours
from lcx.model import iso, utc_now
from lcx.store.base import Store, Tx

__all__ = ["BusinessHoursRepo", "delete", "delete_for_org", "get", "insert", "upsert"]

MAX_CACHED = 10_000
"""Cached (organization, group) entries, absent ones included, before the oldest go."""

T = TypeVar("T")
_Key = tuple[str, str]


def get(tx: Tx, org_id: str, user_group_id: str) -> BusinessHours | None:
    """The group's business hours, or ``None`` when none are set."""
    row = tx.fetchone("SELECT body FROM business_hours WHERE org_id = ? AND user_group_id = ?",
                      (org_id, user_group_id))
    return None if row is None else msgspec.json.decode(row["body"], type=BusinessHours)


def insert(tx: Tx, org_id: str, user_group_id: str, hours: BusinessHours) -> bool:
    """Store the group's hours unless it has some; ``False`` (nothing written) if it has."""
    row = tx.fetchone(
        "INSERT INTO business_hours (org_id, user_group_id, body, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (org_id, user_group_id) DO NOTHING RETURNING org_id",
        (org_id, user_group_id, _body(hours), iso(utc_now())))
    return row is not None


def upsert(tx: Tx, org_id: str, user_group_id: str, hours: BusinessHours) -> None:
    """Store the group's hours, replacing any (idempotent)."""
    tx.execute(
        "INSERT INTO business_hours (org_id, user_group_id, body, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (org_id, user_group_id) DO UPDATE SET "
        "body = excluded.body, updated_at = excluded.updated_at",
        (org_id, user_group_id, _body(hours), iso(utc_now())))


def delete(tx: Tx, org_id: str, user_group_id: str) -> bool:
    """Delete the group's hours; ``False`` when it had none."""
    return tx.execute("DELETE FROM business_hours WHERE org_id = ? AND user_group_id = ?",
                      (org_id, user_group_id)) > 0


def delete_for_org(tx: Tx, org_id: str) -> int:
    """Delete the hours of every group of the organization; return how many there were.

    Callers holding a :class:`BusinessHoursRepo` must then ``forget(org_id)``.
    """
    return max(0, tx.execute("DELETE FROM business_hours WHERE org_id = ?", (org_id,)))


def _body(hours: BusinessHours) -> str:
    return msgspec.json.encode(hours).decode()


CACHE_SECONDS = 5.0
"""How long an instance trusts its cached hours (another instance may change them)."""


class BusinessHoursRepo:
    """Business hours through a cache that also remembers groups without any.

    Every write goes to the store first and updates the cache only once committed; a read
    that raced a write is answered but not cached. Methods raise what the store raises
    (:class:`~lcx.errors.StoreError`); the store is whatever ``store()`` returns at call
    time, and is owned by its opener.
    """

    def __init__(self, store: Callable[[], Store], *, max_cached: int = MAX_CACHED) -> None:
        self._current_store = store
        self._cache: dict[_Key, tuple[BusinessHours | None, float]] = {}
        """Hours by group with their expiry: trusted for ``CACHE_SECONDS`` only, since
        another instance may change them."""
        self._max_cached = max_cached
        self._writes = 0

    async def get(self, org_id: str, user_group_id: str) -> BusinessHours | None:
        """The group's hours, or ``None`` when none are set."""
        key = (org_id, user_group_id)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > trio.current_time():
            return cached[0]
        writes = self._writes
        found = await self._current_store().read(lambda tx: get(tx, *key))
        if writes == self._writes:
            self._remember(key, found)
        return found

    async def create(self, org_id: str, user_group_id: str, hours: BusinessHours) -> bool:
        """Store hours for a group that has none; ``False`` (nothing changed) if it has."""
        created = await self._write((org_id, user_group_id),
                                    lambda tx: insert(tx, org_id, user_group_id, hours))
        if created:
            self._remember((org_id, user_group_id), hours)
        return created

    async def put(self, org_id: str, user_group_id: str, hours: BusinessHours) -> None:
        """Store the group's hours, replacing any (idempotent)."""
        await self._write((org_id, user_group_id),
                          lambda tx: upsert(tx, org_id, user_group_id, hours))
        self._remember((org_id, user_group_id), hours)

    async def update(self, org_id: str, user_group_id: str,
                     change: Callable[[BusinessHours], BusinessHours]) -> BusinessHours | None:
        """Replace the group's hours by ``change(current)`` in one transaction.

        ``change`` runs in the store's worker thread and must be pure; what it raises
        propagates and nothing is written. Returns the new hours, or ``None`` (nothing
        written) when the group has none.
        """
        def write(tx: Tx) -> BusinessHours | None:
            current = get(tx, org_id, user_group_id)
            if current is None:
                return None
            changed = change(current)
            upsert(tx, org_id, user_group_id, changed)
            return changed

        key = (org_id, user_group_id)
        updated = await self._write(key, write)
        self._remember(key, updated)
        return updated

    async def delete(self, org_id: str, user_group_id: str) -> bool:
        """Delete the group's hours; ``False`` when it had none (idempotent)."""
        key = (org_id, user_group_id)
        deleted = await self._write(key, lambda tx: delete(tx, org_id, user_group_id))
        self._remember(key, None)
        return deleted

    def forget(self, org_id: str, user_group_id: str | None = None) -> None:
        """Drop cached entries of one group, or of the whole organization when ``None``
        (after the store changed behind the repo's back)."""
        self._writes += 1
        for key in [k for k in self._cache if k[0] == org_id]:
            if user_group_id is None or key[1] == user_group_id:
                del self._cache[key]

    async def _write(self, key: _Key, fn: Callable[[Tx], T]) -> T:
        try:
            return await self._current_store().transaction(fn)
        except BaseException:
            self._cache.pop(key, None)  # the outcome may be unknown: read it again
            raise
        finally:
            self._writes += 1

    def _remember(self, key: _Key, hours: BusinessHours | None) -> None:
        self._cache.pop(key, None)
        if len(self._cache) >= self._max_cached:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (hours, trio.current_time() + CACHE_SECONDS)
