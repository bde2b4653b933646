"""The statements that run often use the indexes shaped for them (migration 0008), on
both backends: the queue resync reads its places from the partial ``conversations_waiting``
index alone (no table lookup, no sort), the delivery statements use the partial pending
indexes, the dead-letter list its own, and listing conversations keeps its plan.

Each statement is the one the store function really sends: a :class:`Tx` stand-in
explains it instead of running it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lcx.store import Store, Tx, open_store
from lcx.store.conversations import open_conversation_keys, pending_entries
from lcx.store.listings import ListFilter, list_conversations
from lcx.store.outbox import (
    dead_count,
    due_lanes,
    list_dead,
    next_due_at,
    next_in_lane,
    pending_count,
)

pytest_plugins = ["support.stores"]

NOW = "2026-12-03T10:00:00.000Z"


class Explained:
    """A :class:`Tx` that records the plan of each statement instead of its rows."""

    def __init__(self, tx: Tx, dialect: str) -> None:
        self.tx = tx
        self.dialect = dialect
        self.plans: list[str] = []

    def _explain(self, sql: str, params: Sequence[Any]) -> None:
        prefix = "EXPLAIN QUERY PLAN " if self.dialect == "sqlite" else "EXPLAIN "
        rows = self.tx.fetchall(prefix + sql, params)
        self.plans.append(" | ".join(str(list(row.values())[-1]) for row in rows))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._explain(sql, params)
        return []

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._explain(sql, params)

    def values(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._explain(sql, params)
        return []


async def plan_of(store: Store, query: Callable[[Any], object]) -> str:
    """The plan of the one statement ``query`` sends (PostgreSQL told to avoid sequential
    scans: its tables here are empty, where a scan is always cheapest)."""
    def explain(tx: Tx) -> str:
        if store.dialect == "postgres":
            tx.execute("SET LOCAL enable_seqscan = off")
        explained = Explained(tx, store.dialect)
        query(explained)
        [plan] = explained.plans
        return plan

    return await store.transaction(explain)


@pytest.mark.parametrize(("query", "index"), [
    (lambda tx: pending_entries(tx, "o1", "g1"), "conversations_waiting"),
    (lambda tx: due_lanes(tx, NOW, 10), "outbox_due"),
    (lambda tx: next_due_at(tx, NOW), "outbox_due"),
    (lambda tx: pending_count(tx), "outbox_due"),
    (lambda tx: next_in_lane(tx, "c1", "bot"), "outbox_lane"),
    (lambda tx: list_dead(tx, "t1"), "outbox_dead"),
    (lambda tx: dead_count(tx), "outbox_dead"),
    (lambda tx: open_conversation_keys(tx, after="", limit=500), "open_key"),
], ids=["pending_entries", "due_lanes", "next_due_at", "pending_count", "next_in_lane",
        "list_dead", "dead_count", "open_conversation_keys"])
async def test_a_hot_statement_uses_its_index(any_store: Store,
                                              query: Callable[[Any], object],
                                              index: str) -> None:
    """Each statement's plan names its index (SQLite: the ``open_key`` unique index is
    its automatic one, named after the table). PostgreSQL chooses among indexes by cost,
    and on empty tables either partial index of the pending events serves a statement
    about pending events."""
    plan = await plan_of(any_store, query)
    names = {index}
    if index == "open_key":
        names = {"sqlite_autoindex_conversations" if any_store.dialect == "sqlite"
                 else "conversations_open_key_key"}
    if any_store.dialect == "postgres" and index in ("outbox_due", "outbox_lane"):
        names = {"outbox_due", "outbox_lane"}
    assert any(name in plan for name in names), plan


async def test_the_queue_resync_reads_the_index_alone_and_unsorted(any_store: Store) -> None:
    """``pending_entries``: an index-only scan in place order (no temporary sort)."""
    plan = await plan_of(any_store, lambda tx: pending_entries(tx, "o1", "g1"))
    if any_store.dialect == "sqlite":
        assert "COVERING INDEX conversations_waiting" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Index Only Scan using conversations_waiting" in plan, plan
        assert "Sort" not in plan, plan


async def test_listing_pending_requests_of_a_group_keeps_its_plan(tmp_path: Path) -> None:
    """SQLite: a page of a group's pending requests, newest first, still walks the
    ``(org_id, status, created_at)`` index rather than sorting every waiting request
    that the new index would hand over. (PostgreSQL weighs plans by its statistics, which
    an empty table does not have.)"""
    where = ListFilter(org_id="o1", statuses=("pending",), user_group_id="g1")
    async with open_store(f"sqlite:///{tmp_path / 'lcx.db'}") as store:
        plan = await plan_of(store, lambda tx: list_conversations(
            tx, where, after=None, limit=51))
    assert "conversations_org_status" in plan, plan
    assert "conversations_waiting" not in plan, plan
