"""A scan that finds a lane whose head this service already delivered (its 2xx waiting
for the marker) leaves the lane alone: no read of it, and its next commit is still handed
over from memory. Nothing is delivered twice or lost meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar, cast

import trio
from fakes.bot import open_fake_bot, outbox_event
from support.outbox import add, eventually

from adapters.bot_events import open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.store import Store, Tx
from lcx.store.base import CommitListener
from lcx.store.outbox import pending_count, pending_in_lanes
from services.bot_delivery import DeliveryLimits, DeliveryService

pytest_plugins = ["support.stores"]

T = TypeVar("T")


class CountingReads:
    """A store that counts the reads of lanes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lane_reads = 0

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        return await self.store.transaction(fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        if isinstance(fn, partial) and fn.func is pending_in_lanes:
            self.lane_reads += 1
        return await self.store.read(fn)

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        return self.store.on_commit(listener)


async def test_scans_skip_lanes_whose_head_waits_for_its_mark(any_store: Store) -> None:
    """Marks held back for a long time, scans every 20 ms: after its first event the
    lane is read no more, the next events come from memory, each delivered once."""
    counting = CountingReads(any_store)
    limits = DeliveryLimits(scan_interval=0.02, stop_grace=0.2, mark_gather=600.0)
    async with open_fake_bot("s3cret") as bot, open_bot_client(timeout=2.0) as client, \
            trio.open_nursery() as nursery:
        tenant = TenantConfig(id="t1", organization_id="o1", bot_events_url=bot.url,
                              webhook_secret=bot.secret)
        service = DeliveryService(cast(Store, counting), {"t1": tenant}, DeliveryConfig(),
                                  client, limits=limits)
        await nursery.start(service.run)
        ids = []
        for event_no in range(1, 6):
            (event,) = await add(any_store, [outbox_event("c1", event_no)])
            service.wake("c1")
            ids.append(event.id)
            await bot.wait_for(event_no)
            if event_no == 1:
                await trio.sleep(0.1)  # scans come and find the delivered, unmarked head
                reads = counting.lane_reads
            else:
                await trio.sleep(0.06)
        assert counting.lane_reads == reads
        service.request_stop()
    assert bot.ids() == ids
    # stopping recorded every answer received
    await eventually(lambda: any_store.read(lambda tx: pending_count(tx) == 0))
