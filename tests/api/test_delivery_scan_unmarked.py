"""A scan that finds a lane whose head this service already delivered (its 2xx waiting
for the marker) leaves the lane alone: no read of it, and its next commit is still handed
over from memory. Nothing is delivered twice or lost meanwhile."""

from __future__ import annotations

from typing import TypeVar

import trio
from fakes.bot import open_fake_bot, outbox_event
from support.outbox import Counting, add, eventually

from adapters.bot_events import open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.store import Store
from lcx.store.outbox import pending_count
from services.bot_delivery import DeliveryLimits, DeliveryService

pytest_plugins = ["support.stores"]

T = TypeVar("T")


async def test_scans_skip_lanes_whose_head_waits_for_its_mark(any_store: Store) -> None:
    """Marks held back for a long time, scans every 20 ms: after its first event the
    lane is read no more, the next events come from memory, each delivered once."""
    counting = Counting(any_store)
    limits = DeliveryLimits(scan_interval=0.02, stop_grace=0.2, mark_gather=600.0)
    async with open_fake_bot("s3cret") as bot, open_bot_client(timeout=2.0) as client, \
            trio.open_nursery() as nursery:
        tenant = TenantConfig(id="t1", organization_id="o1", bot_events_url=bot.url,
                              webhook_secret=bot.secret)
        service = DeliveryService(counting.as_store(), {"t1": tenant}, DeliveryConfig(),
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
