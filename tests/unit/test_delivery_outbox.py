"""Outbox delivery functions over a real SQLite store: lanes, marks, dead letters, counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from fakes.bot import outbox_event

from lcx.store import Store, Tx, open_store
from lcx.store.outbox import (
    TARGET_FLOW,
    Lane,
    LanePosition,
    OutboxEvent,
    dead_count,
    drop_dead,
    due_lanes,
    enqueue,
    list_dead,
    mark_all_delivered,
    mark_dead,
    mark_delivered,
    mark_retry,
    next_due_at,
    next_in_lane,
    pending_count,
    pending_in_lanes,
    replay_dead,
)

pytest_plugins = ["support.stores"]

T = TypeVar("T")
NOW = "2026-01-01T00:01:00.000Z"
LATER = "2026-01-01T00:05:00.000Z"
FAR = "2999-01-01T00:00:00.000Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store("sqlite:///" + str(tmp_path / "x.db")) as opened:
        yield opened


async def add(store: Store, *events: OutboxEvent) -> list[OutboxEvent]:
    def insert(tx: Tx) -> None:
        for event in events:
            enqueue(tx, event)

    await store.transaction(insert)
    return list(events)


async def run(store: Store, fn: Callable[[Tx], T]) -> T:
    return await store.transaction(fn)


async def test_due_lanes_lists_each_lane_whose_head_is_due(store: Store) -> None:
    """One entry per lane with a due head, bot and flow lanes apart, most overdue first."""
    await add(store, outbox_event("c2", 1, created_at="2026-01-01T00:00:01.000Z"),
              outbox_event("c1", 1), outbox_event("c1", 2),
              outbox_event("c1", 1, target=TARGET_FLOW, url="http://x/flow"),
              outbox_event("c3", 1, created_at=LATER))
    lanes = await run(store, lambda tx: due_lanes(tx, NOW, 10))
    assert lanes[-1] == Lane("c2", "bot", "t1")
    assert set(lanes) == {Lane("c1", "bot", "t1"), Lane("c1", "flow", "t1"),
                          Lane("c2", "bot", "t1")}


async def test_pending_in_lanes_reads_each_lane_after_its_position(any_store: Store
                                                                 ) -> None:
    """Per lane, up to ``per_lane`` pending events after its position, in order: delivered
    and dead ones passed over, lanes with nothing pending left out (on every backend: one
    statement for many lanes)."""
    store = any_store
    done, dead_one, third, fourth, fifth = await add(
        store, *(outbox_event("c1", n) for n in range(1, 6)))
    flow = outbox_event("c1", 1, target=TARGET_FLOW, url="http://x/flow")
    await add(store, flow, outbox_event("c2", 1))

    def settle(tx: Tx) -> None:
        mark_delivered(tx, done.id, 1, NOW)
        mark_dead(tx, dead_one.id, 1, "HTTP 400")

    await run(store, settle)
    lanes = [LanePosition("c1", "flow"), LanePosition("c1", "bot"), LanePosition("c3", "bot"),
             LanePosition("c2", "flow")]
    found = await run(store, lambda tx: pending_in_lanes(tx, lanes, per_lane=2))
    assert [(r.id, r.body) for r in found] == [(third.id, third.body),
                                               (fourth.id, fourth.body), (flow.id, flow.body)]
    after = await run(store, lambda tx: pending_in_lanes(tx, [LanePosition("c1", "bot", 3)],
                                                         per_lane=5))
    assert [r.id for r in after] == [fourth.id, fifth.id]
    many = [LanePosition(f"c{n}", "bot") for n in range(250)]
    assert len(await run(store, lambda tx: pending_in_lanes(tx, many))) == 2


async def test_mark_all_delivered_records_many_and_leaves_the_rest(store: Store) -> None:
    """Each listed pending event becomes delivered with its attempts and time; an event no
    longer pending (dead meanwhile) stays as it is."""
    one, two, three = await add(store, *(outbox_event("c1", n) for n in (1, 2, 3)))
    await run(store, lambda tx: mark_dead(tx, two.id, 1, "HTTP 400"))
    await run(store, lambda tx: mark_all_delivered(
        tx, [(one.id, 1, NOW), (two.id, 2, NOW), (three.id, 3, LATER)]))
    assert await run(store, lambda tx: pending_count(tx)) == 0
    (still_dead,) = await run(store, lambda tx: list_dead(tx))
    assert (still_dead.id, still_dead.attempts) == (two.id, 1)
    rows = await run(store, lambda tx: tx.fetchall(
        "SELECT id, status, attempts, delivered_at FROM outbox ORDER BY event_no"))
    assert [(r["status"], r["attempts"], r["delivered_at"]) for r in rows] == [
        ("delivered", 1, NOW), ("dead", 1, None), ("delivered", 3, LATER)]


async def test_a_lane_whose_head_is_parked_is_not_due(store: Store) -> None:
    """A head waiting for a retry keeps its lane out, even though later events are due."""
    first, _ = await add(store, outbox_event("c1", 1), outbox_event("c1", 2))
    await run(store, lambda tx: mark_retry(tx, first.id, 1, LATER, "HTTP 503"))
    assert await run(store, lambda tx: due_lanes(tx, NOW, 10)) == []
    assert await run(store, lambda tx: next_due_at(tx, NOW)) == LATER
    assert await run(store, lambda tx: due_lanes(tx, LATER, 10)) == [Lane("c1", "bot", "t1")]


async def test_due_lanes_respects_limit_and_excluded_tenants(store: Store) -> None:
    """``limit`` caps the answer; excluded tenants' lanes leave room for the others."""
    await add(store, *(outbox_event(f"a{i}", 1, tenant_id="ta") for i in range(5)),
              outbox_event("b1", 1, tenant_id="tb", created_at="2026-01-01T00:00:30.000Z"))
    assert len(await run(store, lambda tx: due_lanes(tx, NOW, 3))) == 3
    others = await run(store, lambda tx: due_lanes(tx, NOW, 3, exclude_tenants=["ta"]))
    assert others == [Lane("b1", "bot", "tb")]


async def test_next_in_lane_is_lowest_pending_and_skips_dead_and_delivered(store: Store
                                                                          ) -> None:
    """The head is the lowest pending event_no: delivered and dead ones do not hold it."""
    one, two, three = await add(store, *(outbox_event("c1", n) for n in (1, 2, 3)))
    assert (await run(store, lambda tx: next_in_lane(tx, "c1", "bot"))).id == one.id
    await run(store, lambda tx: mark_delivered(tx, one.id, 1, NOW))
    await run(store, lambda tx: mark_dead(tx, two.id, 1, "HTTP 400"))
    head = await run(store, lambda tx: next_in_lane(tx, "c1", "bot"))
    assert head is not None
    assert (head.id, head.status, head.attempts) == (three.id, "pending", 0)
    assert await run(store, lambda tx: next_in_lane(tx, "c1", "flow")) is None


async def test_row_body_is_the_exact_bytes_enqueued(store: Store) -> None:
    """The body read back is byte-for-byte the body enqueued (the signature depends on it)."""
    (event,) = await add(store, outbox_event("c1", 1))
    row = await run(store, lambda tx: next_in_lane(tx, "c1", "bot"))
    assert row is not None
    assert row.body == event.body


async def test_marks_apply_only_to_pending_events(store: Store) -> None:
    """mark_* change a pending event once; on a delivered or dead one they change nothing."""
    one, two = await add(store, outbox_event("c1", 1), outbox_event("c1", 2))
    assert await run(store, lambda tx: mark_delivered(tx, one.id, 2, NOW))
    assert not await run(store, lambda tx: mark_retry(tx, one.id, 3, LATER, "x"))
    assert not await run(store, lambda tx: mark_dead(tx, one.id, 3, "x"))
    assert await run(store, lambda tx: mark_dead(tx, two.id, 4, "HTTP 410"))
    assert not await run(store, lambda tx: mark_delivered(tx, two.id, 5, NOW))
    (dead,) = await run(store, lambda tx: list_dead(tx))
    assert (dead.id, dead.attempts, dead.last_error) == (two.id, 4, "HTTP 410")


async def test_list_replay_and_drop_filter_by_tenant_and_ids(store: Store) -> None:
    """Dead letters are listed oldest first, then replayed or dropped by tenant or by id."""
    events = await add(store, *(outbox_event(f"c{i}", 1, tenant_id="t1" if i < 3 else "t2",
                                             created_at=f"2026-01-01T00:00:0{i}.000Z")
                                for i in range(5)))

    def kill_all(tx: Tx) -> None:
        for event in events:
            mark_dead(tx, event.id, 8, "HTTP 503")

    await run(store, kill_all)
    assert [r.id for r in await run(store, lambda tx: list_dead(tx))] == [e.id for e in events]
    assert len(await run(store, lambda tx: list_dead(tx, "t2"))) == 2
    assert len(await run(store, lambda tx: list_dead(tx, limit=2))) == 2
    picked = [events[0].id, events[4].id]
    assert len(await run(store, lambda tx: list_dead(tx, ids=picked))) == 2
    assert await run(store, lambda tx: replay_dead(tx, [events[0].id], now_iso=NOW)) == 1
    assert await run(store, lambda tx: replay_dead(tx, [events[0].id], now_iso=NOW)) == 0
    assert await run(store, lambda tx: drop_dead(tx, None, "t2")) == 2
    assert await run(store, lambda tx: dead_count(tx)) == 2
    assert await run(store, lambda tx: pending_count(tx)) == 1
    replayed = await run(store, lambda tx: next_in_lane(tx, "c0", "bot"))
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, NOW)


async def test_replay_all_and_counts_per_tenant(store: Store) -> None:
    """replay_dead without filters replays everything; counts can be per tenant."""
    one, two = await add(store, outbox_event("c1", 1), outbox_event("c2", 1, tenant_id="t2"))
    await run(store, lambda tx: mark_dead(tx, one.id, 1, "x"))
    await run(store, lambda tx: mark_dead(tx, two.id, 1, "x"))
    assert await run(store, lambda tx: dead_count(tx, "t2")) == 1
    assert await run(store, lambda tx: replay_dead(tx)) == 2
    assert await run(store, lambda tx: pending_count(tx, "t1")) == 1
    assert len(await run(store, lambda tx: due_lanes(tx, FAR, 10))) == 2


async def test_many_ids_are_chunked(store: Store) -> None:
    """Filters by more ids than one IN list holds still work."""
    events = await add(store, *(outbox_event(f"c{i}", 1) for i in range(1200)))

    def kill_all(tx: Tx) -> None:
        for event in events:
            mark_dead(tx, event.id, 1, "x")

    await run(store, kill_all)
    ids = [e.id for e in events]
    assert len(await run(store, lambda tx: list_dead(tx, limit=2000, ids=ids))) == 1200
    assert await run(store, lambda tx: drop_dead(tx, ids)) == 1200
