"""The delivery service against real fake bots on loopback and a real SQLite outbox."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import trio
from fakes.bot import FakeBot, Reply, open_fake_bot, outbox_event
from support.outbox import add, add_unannounced, eventually

from adapters.bot_events import Delivered, Outcome, Retry, open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.errors import StoreUnavailable
from lcx.store import Store, Tx, open_store
from lcx.store.base import CommitListener
from lcx.store.outbox import (
    TARGET_FLOW,
    OutboxRow,
    dead_count,
    list_dead,
    mark_all_delivered,
    pending_count,
    replay_dead,
)
from services.bot_delivery import LANE_READ, DeliveryLimits, DeliveryService

T = TypeVar("T")
FAST = DeliveryConfig(max_attempts=5, initial_backoff_ms=10, max_backoff_ms=40)
LIMITS = DeliveryLimits(scan_interval=0.05, stop_grace=0.2)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store("sqlite:///" + str(tmp_path / "x.db")) as opened:
        yield opened


@pytest.fixture
async def bot() -> AsyncIterator[FakeBot]:
    async with open_fake_bot(secret="s3cret") as fake:
        yield fake


def tenant(tenant_id: str, bot: FakeBot | None, **fields: Any) -> TenantConfig:
    return TenantConfig(id=tenant_id, organization_id="o1",
                        bot_events_url=bot.url if bot else "",
                        webhook_secret=bot.secret if bot else "", **fields)


@asynccontextmanager
async def delivering(store: Store, tenants: Iterable[TenantConfig],
                     config: DeliveryConfig = FAST, limits: DeliveryLimits = LIMITS,
                     timeout: float = 2.0) -> AsyncIterator[DeliveryService]:
    async with open_bot_client(timeout=timeout) as client, trio.open_nursery() as nursery:
        service = DeliveryService(store, {t.id: t for t in tenants}, config, client,
                                  limits=limits)
        await nursery.start(service.run)
        yield service
        service.request_stop()


class MarksHeldBack:
    """A store whose batches of delivery marks wait until :attr:`gate` is set, or fail
    (``fail``); everything else goes straight through."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = trio.Event()
        self.fail = False
        self.batches: list[int] = []
        """How many marks each batch carried."""

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        if isinstance(fn, partial) and fn.func is mark_all_delivered:
            self.batches.append(len(fn.keywords["marks"]))
            if self.fail:
                raise StoreUnavailable("the store is gone")
            await self.gate.wait()
        return await self.store.transaction(fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await self.store.read(fn)

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        return self.store.on_commit(listener)

    def as_store(self) -> Store:
        return cast(Store, self)


async def count(store: Store, fn: Callable[[Tx], int], expected: int) -> bool:
    return await store.read(fn) == expected


async def dead(store: Store) -> list[OutboxRow]:
    return await store.read(lambda tx: list_dead(tx))


async def test_each_conversation_is_delivered_in_order_exactly_once(store: Store,
                                                                    bot: FakeBot) -> None:
    """Many events over several conversations: each conversation arrives in seq order."""
    rng = random.Random(7)
    bot.script(*(Reply(delay=rng.choice([0, 0, 0.01])) for _ in range(40)))
    events = await add(store, (outbox_event(f"c{c}", n) for n in range(1, 16)
                               for c in range(8)))
    async with delivering(store, [tenant("t1", bot)]):
        await bot.wait_for(len(events))
        await eventually(lambda: count(store, pending_count, 0))
    assert sorted(bot.ids()) == sorted(e.id for e in events)
    for c in range(8):
        assert [e["seq"] for e in bot.events_for(f"c{c}")] == list(range(1, 16))


async def test_a_lane_longer_than_one_read_is_delivered_in_order(store: Store,
                                                                 bot: FakeBot) -> None:
    """A backlog of several reads' worth (LANE_READ events per read) in one conversation,
    with a retry in the middle, arrives whole and in seq order."""
    total = 3 * LANE_READ + 5
    events = await add(store, (outbox_event("c1", n) for n in range(1, total + 1)))
    bot.script(Reply(503), event_id=events[LANE_READ + 2].id)
    async with delivering(store, [tenant("t1", bot)]):
        await bot.wait_for(total + 1)
        await eventually(lambda: count(store, pending_count, 0))
    assert [r.event["seq"] for r in bot.received if r.status == 200] == list(
        range(1, total + 1))


async def test_500_is_retried_with_the_same_idempotency_key(store: Store,
                                                           bot: FakeBot) -> None:
    """A 500 is retried until a 2xx; the bot sees one event id, and the next event after."""
    first, second = await add(store, [outbox_event("c1", 1), outbox_event("c1", 2)])
    bot.script(Reply(500), Reply(502), event_id=first.id)
    async with delivering(store, [tenant("t1", bot)]) as service:
        await bot.wait_for(4)
        await eventually(lambda: count(store, pending_count, 0))
        stats = service.statistics()
    assert bot.ids() == [first.id, first.id, first.id, second.id]
    assert [r.status for r in bot.received] == [500, 502, 200, 200]
    assert (stats.delivered, stats.retried, stats.dead) == (2, 2, 0)


async def test_retry_after_is_honoured(store: Store, bot: FakeBot) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by a second, not the short backoff."""
    (event,) = await add(store, [outbox_event("c1", 1)])
    bot.script(Reply(429, {"Retry-After": "1"}), event_id=event.id)
    async with delivering(store, [tenant("t1", bot)]) as service:
        await bot.wait_for(1)
        await trio.sleep(0.3)
        parked = service.statistics()
        first, second = await bot.wait_for(2, timeout=3)
    assert (parked.active_lanes, parked.in_flight, parked.retried) == (0, 0, 1)
    assert 0.95 <= second.at - first.at < 1.5
    assert second.status == 200


async def test_400_is_dead_at_once_and_not_retried(store: Store, bot: FakeBot) -> None:
    """A 400 sends the event to the dead-letter list after one attempt."""
    (event,) = await add(store, [outbox_event("c1", 1)])
    bot.script(Reply(400), event_id=event.id)
    async with delivering(store, [tenant("t1", bot)]) as service:
        await eventually(lambda: count(store, dead_count, 1))
        await trio.sleep(0.1)
        stats = service.statistics()
    assert bot.ids() == [event.id]
    (row,) = await dead(store)
    assert (row.attempts, row.last_error) == (1, "HTTP 400")
    assert (stats.dead, stats.rejected_auth, stats.retried) == (1, 0, 0)


async def test_401_is_dead_and_counted_as_auth_rejection(store: Store, bot: FakeBot) -> None:
    """401/403 are not retried and raise the rejected_auth counter."""
    (event,) = await add(store, [outbox_event("c1", 1)])
    bot.script(Reply(401), event_id=event.id)
    async with delivering(store, [tenant("t1", bot)]) as service:
        await eventually(lambda: count(store, dead_count, 1))
        assert service.statistics().rejected_auth == 1


async def test_out_of_attempts_goes_dead_then_replay_delivers(store: Store,
                                                              bot: FakeBot) -> None:
    """A bot down for max_attempts kills the event; replayed, it is delivered."""
    bot.mode = "down"
    (event,) = await add(store, [outbox_event("c1", 1)])
    async with delivering(store, [tenant("t1", bot)]):
        await eventually(lambda: count(store, dead_count, 1))
        (row,) = await dead(store)
        assert row.attempts == FAST.max_attempts
        assert "HTTP 503" in (row.last_error or "")
        assert bot.ids() == [event.id] * FAST.max_attempts
        bot.mode = "ok"
        assert await store.transaction(lambda tx: replay_dead(tx, [event.id])) == 1
        await bot.wait_for(FAST.max_attempts + 1)
        await eventually(lambda: count(store, pending_count, 0))
    assert bot.received[-1].status == 200
    assert await store.read(lambda tx: dead_count(tx)) == 0


async def test_a_dead_event_does_not_block_its_lane(store: Store, bot: FakeBot) -> None:
    """The events after a dead one are delivered, in order."""
    events = await add(store, [outbox_event("c1", n) for n in (1, 2, 3)])
    bot.script(Reply(410), event_id=events[1].id)
    async with delivering(store, [tenant("t1", bot)]):
        await bot.wait_for(3)
        await eventually(lambda: count(store, pending_count, 0))
    assert bot.ids() == [e.id for e in events]
    assert [r.id for r in await dead(store)] == [events[1].id]


async def test_a_stalled_tenant_does_not_delay_another(store: Store, bot: FakeBot) -> None:
    """Tenant A's bot never answers; tenant B's events are delivered at once meanwhile."""
    async with open_fake_bot() as slow:
        slow.mode = "stall"
        await add(store, (outbox_event(f"a{i}", 1, tenant_id="ta") for i in range(20)))
        b_events = await add(store, (outbox_event(f"b{i}", n, tenant_id="tb")
                                     for i in range(5) for n in (1, 2)))
        async with delivering(store, [tenant("ta", slow), tenant("tb", bot)],
                              timeout=5) as service:
            await slow.wait_for(4)
            started = trio.current_time()
            await bot.wait_for(len(b_events), timeout=1)
            assert trio.current_time() - started < 0.5
            await eventually(lambda: count(store, lambda tx: pending_count(tx, "tb"), 0))
            assert len(slow.received) == 4
            assert service.statistics().in_flight == 4
            slow.release()


async def test_the_global_limit_caps_lanes_across_tenants(store: Store, bot: FakeBot) -> None:
    """With total=3, at most three POSTs are in flight whatever the tenants."""
    bot.mode = "stall"
    await add(store, (outbox_event(f"{t}{i}", 1, tenant_id=t) for t in ("ta", "tb")
                      for i in range(4)))
    limits = DeliveryLimits(total=3, scan_interval=0.05, stop_grace=0.2)
    async with delivering(store, [tenant("ta", bot), tenant("tb", bot)],
                          limits=limits) as service:
        await bot.wait_for(3)
        await trio.sleep(0.2)
        assert len(bot.received) == 3
        assert service.statistics().active_lanes == 3
        bot.release()
        await bot.wait_for(8)


def test_limits_below_one_are_refused() -> None:
    """DeliveryLimits refuses a zero limit."""
    with pytest.raises(ValueError, match="at least 1"):
        DeliveryLimits(per_tenant=0)


async def test_signature_and_flow_bearer_are_sent(store: Store, bot: FakeBot) -> None:
    """Bot events are signed with the tenant secret; flow triggers also carry the bearer."""
    flow_url = bot.base_url + "/connectors/flows:trigger?triggerType=livechat-request-missed"
    config = tenant("t1", bot, event_publisher_url=bot.base_url,
                    event_publisher_token="pub-token")
    await add(store, [outbox_event("c1", 1),
                      outbox_event("c1", 1, target=TARGET_FLOW, url=flow_url)])
    async with delivering(store, [config]):
        received = await bot.wait_for(2)
    assert all(r.signature_valid for r in received)
    by_path = {r.path: r for r in received}
    assert by_path["/livechat-events"].headers.get("authorization") is None
    flow = by_path["/connectors/flows:trigger?triggerType=livechat-request-missed"]
    assert flow.headers["authorization"] == "Bearer pub-token"
    assert flow.headers["content-type"] == "application/json"


async def test_no_signature_header_without_a_secret(store: Store, bot: FakeBot) -> None:
    """A tenant without webhook_secret gets no X-Lcx-Signature header."""
    await add(store, [outbox_event("c1", 1)])
    unsigned = TenantConfig(id="t1", organization_id="o1", bot_events_url=bot.url)
    async with delivering(store, [unsigned]):
        (received,) = await bot.wait_for(1)
    assert "x-lcx-signature" not in received.headers
    assert received.signature_valid is False


async def test_unknown_tenant_or_missing_url_is_dead_with_a_reason(store: Store) -> None:
    """Events of an unknown tenant, or of a tenant without a URL, die with a clear error."""
    await add(store, [outbox_event("c1", 1, tenant_id="ghost"),
                      outbox_event("c2", 1, tenant_id="t1")])
    async with delivering(store, [tenant("t1", None)]):
        await eventually(lambda: count(store, dead_count, 2))
    errors = {row.tenant_id: row.last_error for row in await dead(store)}
    assert errors == {"ghost": "unknown tenant 'ghost' (not in [[tenants]])",
                      "t1": "tenants.t1.bot_events_url is empty"}


async def test_a_new_service_delivers_what_was_pending(store: Store, bot: FakeBot) -> None:
    """State is in the store: a second service resumes retries and pending events."""
    bot.mode = "down"
    events = await add(store, [outbox_event("c1", n) for n in (1, 2)])
    async with delivering(store, [tenant("t1", bot)]):
        await bot.wait_for(2)
    assert await store.read(lambda tx: pending_count(tx)) == 2
    bot.mode = "ok"
    async with delivering(store, [tenant("t1", bot)]):
        await eventually(lambda: count(store, pending_count, 0))
    assert [r.event_id for r in bot.received if r.status == 200] == [e.id for e in events]


async def test_wake_delivers_without_waiting_for_the_scan(store: Store, bot: FakeBot) -> None:
    """wake() after a commit starts delivery at once, even with a long scan interval."""
    limits = DeliveryLimits(scan_interval=30, stop_grace=0.2)
    async with delivering(store, [tenant("t1", bot)], limits=limits) as service:
        await trio.sleep(0.05)
        await add(store, [outbox_event("c1", 1)])
        service.wake("c1")
        await bot.wait_for(1, timeout=0.5)


async def test_wake_starts_only_the_woken_conversation(store: Store, bot: FakeBot) -> None:
    """wake(c) reads c's lanes, not the whole outbox: another conversation's events that
    this service did not commit (another writer's) wait for the periodic scan."""
    limits = DeliveryLimits(scan_interval=30, stop_grace=0.2)
    async with delivering(store, [tenant("t1", bot)], limits=limits) as service:
        await trio.sleep(0.05)
        woken, other = await add_unannounced(store, [outbox_event("c1", 1),
                                                     outbox_event("c2", 1)])
        service.wake("c1")
        await bot.wait_for(1, timeout=0.5)
        await trio.sleep(0.1)
        assert bot.ids() == [woken.id]
        service.wake()  # no conversation: scan everything
        await bot.wait_for(2, timeout=0.5)
    assert bot.ids() == [woken.id, other.id]


async def test_woken_lanes_beyond_the_tenant_limit_start_as_slots_free(store: Store,
                                                                      bot: FakeBot) -> None:
    """Conversations woken together while their tenant has one slot are delivered one
    after the other as the slot frees up, without waiting for the periodic scan."""
    limits = DeliveryLimits(per_tenant=1, scan_interval=30, stop_grace=0.2)
    events = [outbox_event(f"c{n}", 1) for n in range(4)]
    bot.script(*(Reply(delay=0.05) for _ in events))
    async with delivering(store, [tenant("t1", bot)], limits=limits) as service:
        await trio.sleep(0.05)
        await add(store, events)
        for event in events:
            service.wake(event.conversation_id)
        received = await bot.wait_for(len(events), timeout=1.5)
        assert service.statistics().active_lanes <= 1
    assert sorted(r.event_id for r in received) == sorted(e.id for e in events)
    gaps = [later.at - earlier.at for earlier, later in pairwise(received)]
    assert all(gap >= 0.04 for gap in gaps)  # one at a time: each waited for the previous


async def test_an_event_woken_during_the_lanes_last_post_follows_it(store: Store,
                                                                   bot: FakeBot) -> None:
    """An event committed while its lane delivers the one before is delivered right after
    it, by the same lane, without waiting for the scan."""
    limits = DeliveryLimits(scan_interval=30, stop_grace=0.2)
    first = outbox_event("c1", 1)
    bot.script(Reply(delay=0.2), event_id=first.id)
    async with delivering(store, [tenant("t1", bot)], limits=limits) as service:
        await trio.sleep(0.05)
        await add(store, [first])
        service.wake("c1")
        await trio.sleep(0.1)  # the first POST is in flight
        (second,) = await add(store, [outbox_event("c1", 2)])
        service.wake("c1")
        await bot.wait_for(2, timeout=0.6)
    assert bot.ids() == [first.id, second.id]


async def test_a_lane_posts_on_while_its_2xx_waits_to_be_recorded(store: Store,
                                                                  bot: FakeBot) -> None:
    """A lane does not wait for the store to record a 2xx before it POSTs its next event;
    the answers that came in meanwhile are recorded together, in one transaction."""
    held = MarksHeldBack(store)
    events = await add(store, [outbox_event("c1", n) for n in range(1, 6)])
    async with delivering(held.as_store(), [tenant("t1", bot)],
                          limits=replace(LIMITS, mark_gather=0.0)) as service:
        await bot.wait_for(5)
        await eventually(lambda: delivered(service, 5))
        assert await store.read(lambda tx: pending_count(tx)) == 5
        held.gate.set()
        await eventually(lambda: count(store, pending_count, 0))
    assert bot.ids() == [e.id for e in events]
    assert held.batches == [1, 4]


async def test_the_marker_gathers_the_2xx_of_a_moment_into_one_transaction(
        store: Store, bot: FakeBot) -> None:
    """Events answered within ``mark_gather`` of the first answer are recorded together,
    even when the store is idle (one write for many events, not one each)."""
    held = MarksHeldBack(store)
    held.gate.set()
    events = await add(store, [outbox_event("c1", n) for n in range(1, 6)])
    async with delivering(held.as_store(), [tenant("t1", bot)],
                          limits=replace(LIMITS, mark_gather=2.0)) as service:
        await bot.wait_for(5)
        await eventually(lambda: delivered(service, 5))
        await eventually(lambda: count(store, pending_count, 0))
    assert bot.ids() == [e.id for e in events]
    assert held.batches == [5]


async def test_stopping_records_the_2xx_still_gathering(store: Store, bot: FakeBot) -> None:
    """A stop within the gather window records the answers gathered so far."""
    await add(store, [outbox_event("c1", n) for n in (1, 2)])
    async with delivering(store, [tenant("t1", bot)],
                          limits=replace(LIMITS, mark_gather=600.0)) as service:
        await bot.wait_for(2)
        await eventually(lambda: delivered(service, 2))
        assert await store.read(lambda tx: pending_count(tx)) == 2
    assert await store.read(lambda tx: pending_count(tx)) == 0


async def test_a_2xx_not_recorded_before_the_end_is_delivered_again(store: Store,
                                                                   bot: FakeBot) -> None:
    """2xx answers the store failed to record before the service ended (as in a crash)
    are delivered again by the next service: in order, with the same Idempotency-Key,
    never twice by the same service."""
    held = MarksHeldBack(store)
    held.fail = True
    events = await add(store, [outbox_event("c1", n) for n in (1, 2)])
    async with delivering(held.as_store(), [tenant("t1", bot)]) as service:
        await bot.wait_for(2)
        await eventually(lambda: delivered(service, 2))
        await trio.sleep(0.2)  # several scans: the lane is not read back
    assert await store.read(lambda tx: pending_count(tx)) == 2
    async with delivering(store, [tenant("t1", bot)]):
        await bot.wait_for(4)
        await eventually(lambda: count(store, pending_count, 0))
    assert bot.ids() == [e.id for e in events] * 2


async def delivered(service: DeliveryService, expected: int) -> bool:
    return service.statistics().delivered == expected


async def test_stop_finishes_the_post_in_flight_and_records_it(store: Store,
                                                               bot: FakeBot) -> None:
    """A POST in flight at stop completes and is recorded; the next event is not started."""
    events = await add(store, [outbox_event("c1", 1), outbox_event("c1", 2)])
    bot.script(Reply(delay=0.1), event_id=events[0].id)
    limits = DeliveryLimits(scan_interval=0.05, stop_grace=1.0)
    async with delivering(store, [tenant("t1", bot)], limits=limits) as service:
        await bot.wait_for(1)
        service.request_stop()
    assert bot.ids() == [events[0].id]
    assert await store.read(lambda tx: pending_count(tx)) == 1
    assert service.statistics().delivered == 1


async def test_refusals_without_a_call_do_not_use_up_attempts(store: Store) -> None:
    """A sender refusing without calling (an open circuit breaker) many more times than
    max_attempts does not dead-letter the event: it goes once the edge is back."""
    refusals = 3 * FAST.max_attempts
    seen: list[str] = []

    async def send(row: OutboxRow) -> Outcome:
        seen.append(row.id)
        if len(seen) <= refusals:
            return Retry("circuit open", 0.01, attempted=False)
        return Delivered(200)

    event = outbox_event("c1", 1, target="edge")
    await add(store, [event])
    async with open_bot_client() as client, trio.open_nursery() as nursery:
        service = DeliveryService(store, {"t1": tenant("t1", None)}, FAST, client,
                                  limits=LIMITS, senders={"edge": send})
        await nursery.start(service.run)
        await eventually(lambda: count(store, pending_count, 0), timeout=10)
        service.request_stop()
    assert await store.read(lambda tx: dead_count(tx)) == 0
    assert len(seen) == refusals + 1
