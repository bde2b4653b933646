"""Lanes run on parked worker tasks: starting a lane wakes an idle worker instead of
spawning a task, so a conversation's events, one lane run each, cost no task spawn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from fakes.bot import FakeBot, Reply, open_fake_bot, outbox_event
from support.outbox import add, eventually

from adapters.bot_events import open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.store import Store
from lcx.store.outbox import pending_count
from services.bot_delivery import DeliveryLimits, DeliveryService

pytest_plugins = ["support.stores"]

LIMITS = DeliveryLimits(scan_interval=30, stop_grace=0.2, mark_gather=0.0)


class SpawnedWorkers(trio.abc.Instrument):
    """Counts the lane worker tasks spawned while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("DeliveryService._work"):
            self.count += 1


@asynccontextmanager
async def delivering(store: Store, bot: FakeBot) -> AsyncIterator[DeliveryService]:
    tenant = TenantConfig(id="t1", organization_id="o1", bot_events_url=bot.url,
                          webhook_secret=bot.secret)
    async with open_bot_client(timeout=2.0) as client, trio.open_nursery() as nursery:
        service = DeliveryService(store, {"t1": tenant}, DeliveryConfig(), client,
                                  limits=LIMITS)
        await nursery.start(service.run)
        yield service
        service.request_stop()


async def idle(service: DeliveryService) -> bool:
    return service.statistics().active_lanes == 0


async def nothing_pending(store: Store) -> bool:
    return await store.read(lambda tx: pending_count(tx)) == 0


async def test_lanes_one_after_another_share_one_worker(any_store: Store) -> None:
    """Twenty conversations, one event each, one after the other: one worker task
    delivers them all, every event once."""
    workers = SpawnedWorkers()
    trio.lowlevel.add_instrument(workers)
    try:
        async with open_fake_bot("s3cret") as bot, delivering(any_store, bot) as service:
            ids = []
            for n in range(20):
                (event,) = await add(any_store, [outbox_event(f"c{n}", 1)])
                service.wake(f"c{n}")
                ids.append(event.id)
                await bot.wait_for(n + 1)
                await eventually(lambda: idle(service))
            await eventually(lambda: nothing_pending(any_store))
    finally:
        trio.lowlevel.remove_instrument(workers)
    assert bot.ids() == ids
    assert workers.count == 1


async def test_busy_workers_are_added_then_reused(any_store: Store) -> None:
    """Four lanes at once (a slow bot) take four workers (the tenant's slots); lanes
    started afterwards reuse them, and the service still stops at once."""
    workers = SpawnedWorkers()
    trio.lowlevel.add_instrument(workers)
    try:
        async with open_fake_bot("s3cret") as bot, delivering(any_store, bot) as service:
            bot.script(*(Reply(delay=0.1) for _ in range(4)))
            await add(any_store, [outbox_event(f"c{n}", 1) for n in range(4)])
            for n in range(4):
                service.wake(f"c{n}")
            await bot.wait_for(4)
            await eventually(lambda: idle(service))
            spawned = workers.count
            await add(any_store, [outbox_event(f"d{n}", 1) for n in range(4)])
            for n in range(4):
                service.wake(f"d{n}")
            await bot.wait_for(8)
            await eventually(lambda: nothing_pending(any_store))
    finally:
        trio.lowlevel.remove_instrument(workers)
    assert spawned == 4
    assert workers.count == 4
    assert sorted(bot.ids()) == sorted(set(bot.ids()))  # each event once
