"""Committed outbox rows handed to the delivery lanes in memory (``Store.on_commit``):
no read per event, and nothing lost, reordered or doubled when memory is not the whole
story (a crash, another writer, a failed attempt). On every store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from itertools import pairwise
from typing import Any, TypeVar

import trio
from fakes.bot import FakeBot, Reply, open_fake_bot, outbox_event
from support.outbox import Counting, add, add_unannounced, eventually

from adapters.bot_events import open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.store import Store
from lcx.store.outbox import (
    OutboxRow,
    list_dead,
    pending_count,
)
from services.bot_delivery import DeliveryLimits, DeliveryService

pytest_plugins = ["support.stores"]

T = TypeVar("T")
FAST = DeliveryConfig(max_attempts=3, initial_backoff_ms=10, max_backoff_ms=40)
# a long scan interval: whatever is delivered in these tests came by hand-off or wake
LIMITS = DeliveryLimits(scan_interval=30, stop_grace=0.2, mark_gather=0.0)


def tenant(bot: FakeBot) -> TenantConfig:
    return TenantConfig(id="t1", organization_id="o1", bot_events_url=bot.url,
                        webhook_secret=bot.secret)


@asynccontextmanager
async def delivering(store: Store, bot: FakeBot, *, limits: DeliveryLimits = LIMITS,
                     **options: Any) -> AsyncIterator[DeliveryService]:
    async with open_bot_client(timeout=2.0) as client, trio.open_nursery() as nursery:
        service = DeliveryService(store, {"t1": tenant(bot)}, FAST, client, limits=limits,
                                  **options)
        await nursery.start(service.run)
        yield service
        service.request_stop()


async def nothing_pending(store: Store) -> bool:
    return await store.read(lambda tx: pending_count(tx)) == 0


async def idle(service: DeliveryService) -> bool:
    return service.statistics().active_lanes == 0


async def commit_one_by_one(store: Store, service: DeliveryService, conversation_id: str,
                            numbers: range) -> list[str]:
    """One transaction per event, each followed by the actor's wake, as lcx does."""
    ids = []
    for event_no in numbers:
        (event,) = await add(store, [outbox_event(conversation_id, event_no)])
        service.wake(conversation_id)
        ids.append(event.id)
    return ids


async def test_commits_reach_a_drained_lane_without_reading_the_store(any_store: Store
                                                                      ) -> None:
    """Once a lane has read the store and emptied, its next commits are delivered from
    memory: no lane read per event."""
    counting = Counting(any_store)
    async with open_fake_bot("s3cret") as bot, \
            delivering(counting.as_store(), bot) as service:
        first = await commit_one_by_one(any_store, service, "c1", range(1, 2))
        await bot.wait_for(1)
        await eventually(lambda: idle(service))
        reads = counting.lane_reads
        later = await commit_one_by_one(any_store, service, "c1", range(2, 12))
        await bot.wait_for(11)
        await eventually(lambda: nothing_pending(any_store))
        assert counting.lane_reads == reads
    assert bot.ids() == first + later


async def test_events_handed_to_a_running_lane_keep_their_order(any_store: Store) -> None:
    """Commits that come while their lane is POSTing join its queue: delivered in order,
    each once."""
    async with open_fake_bot("s3cret") as bot, delivering(any_store, bot) as service:
        bot.script(*(Reply(delay=0.01) for _ in range(30)))
        ids = await commit_one_by_one(any_store, service, "c1", range(1, 31))
        await bot.wait_for(30)
        await eventually(lambda: nothing_pending(any_store))
    assert bot.ids() == ids


async def test_another_writers_commit_in_between_is_delivered_first(any_store: Store
                                                                    ) -> None:
    """An event of the conversation committed by another writer (another instance, a
    previous run) breaks the run of hand-offs: the lane reads the store and delivers it
    before the event handed over after it."""
    async with open_fake_bot("s3cret") as bot, delivering(any_store, bot) as service:
        ids = await commit_one_by_one(any_store, service, "c1", range(1, 3))
        await bot.wait_for(2)
        await eventually(lambda: idle(service))
        (foreign,) = await add_unannounced(any_store, [outbox_event("c1", 3)])
        ids += [foreign.id, *await commit_one_by_one(any_store, service, "c1", range(4, 6))]
        await bot.wait_for(5)
        await eventually(lambda: nothing_pending(any_store))
    assert bot.ids() == ids


async def test_handed_off_events_are_delivered_after_a_crash(any_store: Store) -> None:
    """Events handed over in memory and not delivered when the service dies (its task
    cancelled, as in a crash) are in the store: the next service delivers them, in order."""
    async with open_fake_bot("s3cret") as stalled, open_fake_bot("s3cret") as bot:
        with trio.CancelScope() as crash:
            async with delivering(any_store, stalled) as service:
                ids = await commit_one_by_one(any_store, service, "c1", range(1, 2))
                await stalled.wait_for(1)
                await eventually(lambda: idle(service))
                stalled.mode = "stall"
                ids += await commit_one_by_one(any_store, service, "c1", range(2, 5))
                await stalled.wait_for(2)  # the first handed-off event is in flight
                crash.cancel()
        assert await any_store.read(lambda tx: pending_count(tx)) == 3
        async with delivering(any_store, bot):
            await bot.wait_for(3)
            await eventually(lambda: nothing_pending(any_store))
        assert bot.ids() == ids[1:]
        stalled.release()


async def test_handed_off_answers_are_marked_in_batches(any_store: Store) -> None:
    """The 2xx answers to handed-off events are recorded together, a transaction for
    those of a moment, not one each."""
    counting = Counting(any_store)
    limits = replace(LIMITS, mark_gather=0.5)
    async with open_fake_bot("s3cret") as bot, \
            delivering(counting.as_store(), bot, limits=limits) as service:
        await commit_one_by_one(any_store, service, "c1", range(1, 2))
        await bot.wait_for(1)
        await eventually(lambda: nothing_pending(any_store))
        await commit_one_by_one(any_store, service, "c1", range(2, 12))
        await bot.wait_for(11)
        await eventually(lambda: nothing_pending(any_store))
    assert sum(counting.mark_batches) == 11
    assert len(counting.mark_batches) < 6


async def test_a_failing_handed_off_event_is_retried_then_dead_and_its_lane_goes_on(
        any_store: Store) -> None:
    """Retries with backoff, then the dead letter, then the next event: as for events
    read from the store."""
    async with open_fake_bot("s3cret") as bot, delivering(any_store, bot) as service:
        await commit_one_by_one(any_store, service, "c1", range(1, 2))
        await bot.wait_for(1)
        await eventually(lambda: idle(service))
        bot.script(Reply(status=500), Reply(status=500), Reply(status=503))
        poisoned, after = await commit_one_by_one(any_store, service, "c1", range(2, 4))
        await bot.wait_for(5)
        await eventually(lambda: nothing_pending(any_store))
        dead: list[OutboxRow] = await any_store.read(lambda tx: list_dead(tx))
    assert bot.ids()[1:] == [poisoned] * 3 + [after]
    gaps = [later.at - earlier.at for earlier, later in pairwise(bot.received[1:4])]
    assert all(gap >= 0.008 for gap in gaps)  # backoff between attempts (10 ms, jittered)
    assert [(row.id, row.attempts) for row in dead] == [(poisoned, 3)]
    assert dead[0].last_error is not None


async def test_commits_of_conversations_owned_elsewhere_are_left_to_their_owner(
        any_store: Store) -> None:
    """In a cluster, a hand-off for a conversation this instance does not own starts
    nothing (its owner delivers it from the store)."""
    async with open_fake_bot("s3cret") as bot, \
            delivering(any_store, bot, owns=lambda conversation_id: False) as service:
        await commit_one_by_one(any_store, service, "c1", range(1, 3))
        await trio.sleep(0.2)
        assert service.statistics().active_lanes == 0
    assert bot.received == []
    assert await any_store.read(lambda tx: pending_count(tx)) == 2


async def test_a_lane_waiting_for_its_tenants_slot_keeps_its_handed_off_events(
        any_store: Store) -> None:
    """With one slot per tenant, a drained lane whose commit finds the slot taken waits
    with its rows (and those committed meanwhile) and starts from them when the slot
    frees up: no lane read, order kept."""
    counting = Counting(any_store)
    limits = replace(LIMITS, per_tenant=1)
    async with open_fake_bot("s3cret") as bot, \
            delivering(counting.as_store(), bot, limits=limits) as service:
        first = [*await commit_one_by_one(any_store, service, "c1", range(1, 2)),
                 *await commit_one_by_one(any_store, service, "c2", range(1, 2))]
        await bot.wait_for(2)
        await eventually(lambda: idle(service))
        reads = counting.lane_reads
        bot.script(Reply(delay=0.2))
        c1 = await commit_one_by_one(any_store, service, "c1", range(2, 3))
        await bot.wait_for(3)  # c1 holds the tenant's one slot for 0.2 s
        c2 = await commit_one_by_one(any_store, service, "c2", range(2, 5))
        assert service.statistics().active_lanes == 1
        await bot.wait_for(6)
        await eventually(lambda: nothing_pending(any_store))
        assert counting.lane_reads == reads
    assert sorted(bot.ids()[:2]) == sorted(first)
    assert bot.ids()[2:] == c1 + c2
