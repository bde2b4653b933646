"""The periodic ownership sweep reads a bounded number of open conversations and goes on
where the last one stopped, so its cost per period does not grow with how many are open;
a full sweep (start, a membership change) still covers every one at once."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import trio
import trio.testing

from actors.livechat import Livechat
from lcx.cluster.bus import MemberInfo, MembershipHandler
from lcx.store.conversations import OpenConversationKey
from services.ownership import OwnershipService

ME = "a"


class FakeBus:
    """One member, this instance; the test can announce a membership change."""

    instance_id = ME

    def __init__(self) -> None:
        self.handlers: list[MembershipHandler] = []

    def members(self) -> Mapping[str, MemberInfo]:
        return {ME: MemberInfo(ME, "")}

    def on_membership(self, handler: MembershipHandler) -> None:
        self.handlers.append(handler)

    def tell(self) -> None:
        for handler in self.handlers:
            handler(dict(self.members()))


class FakeRouter:
    """Owns every key and holds no actor; records what is posted to it."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    def owner(self, key: str) -> str:
        return ME

    def get(self, key: str) -> None:
        return None

    def post(self, key: str, message: Any) -> None:
        self.posted.append(key)

    def live_keys(self) -> list[str]:
        return []


def open_keys(count: int) -> list[OpenConversationKey]:
    """``count`` open conversations of a provider (a sweep that wakes one posts Recover
    to it), pending in queue o1/g1, in ``open_key`` order."""
    return [OpenConversationKey(f"c{n:03d}", "o1", "g1", "genesys", "pending",
                                f"t1/s{n:03d}", "2026-12-03T10:00:00.000Z",
                                "2026-12-03T10:00:00.000Z") for n in range(count)]


def livechat_with(rows: list[OpenConversationKey]) -> tuple[Any, FakeRouter, list[int]]:
    """A livechat over ``rows`` whose store answers ``open_conversation_keys`` pages (and
    records the size of each read)."""
    reads: list[int] = []

    async def read(query: partial[list[OpenConversationKey]]) -> list[OpenConversationKey]:
        after, limit = query.keywords["after"], query.keywords["limit"]
        page = [row for row in rows if row.open_key > after][:limit]
        reads.append(len(page))
        return page

    conversations = FakeRouter()
    livechat = SimpleNamespace(
        bus=FakeBus(), store=SimpleNamespace(read=read), conversations=conversations,
        queues=FakeRouter(), links=FakeRouter(), timers=SimpleNamespace(armed=lambda k: False))
    livechat.routers = {"conversation": conversations, "queue": livechat.queues,
                        "provider_link": livechat.links}
    return livechat, conversations, reads


async def test_periodic_sweeps_cover_25_open_conversations_10_at_a_time() -> None:
    """25 open, at most 10 per periodic sweep in pages of 4: three sweeps wake 10, 10 and
    5 (each once), the fourth starts over at the first."""
    rows = open_keys(25)
    livechat, conversations, reads = livechat_with(rows)
    service = OwnershipService(cast(Livechat, livechat), page_size=4, periodic_rows=10)
    woken_per_sweep = []
    for _ in range(3):
        before = len(conversations.posted)
        await service.periodic_sweep()
        woken_per_sweep.append(conversations.posted[before:])
    assert [len(woken) for woken in woken_per_sweep] == [10, 10, 5]
    assert sorted(c for woken in woken_per_sweep for c in woken) == [row.id for row in rows]
    assert max(reads) <= 4
    await service.periodic_sweep()
    assert conversations.posted[25:] == [row.id for row in rows[:10]]


async def test_a_full_sweep_covers_everything_and_restarts_the_periodic_pass() -> None:
    """A full sweep wakes all 25 in pages of 4; the periodic pass under way starts over."""
    rows = open_keys(25)
    livechat, conversations, _ = livechat_with(rows)
    service = OwnershipService(cast(Livechat, livechat), page_size=4, periodic_rows=10)
    await service.periodic_sweep()
    await service.sweep()
    assert conversations.posted[10:] == [row.id for row in rows]
    assert livechat.queues.posted == ["o1/g1", "o1/g1"]
    await service.periodic_sweep()
    assert conversations.posted[35:] == [row.id for row in rows[:10]]


async def test_the_service_sweeps_in_full_on_a_membership_change(
        autojump_clock: trio.testing.MockClock) -> None:
    """Running: the start is a full sweep, a period passing a periodic one (10 more),
    a membership change a full one again."""
    rows = open_keys(25)
    livechat, conversations, _ = livechat_with(rows)
    service = OwnershipService(cast(Livechat, livechat), sweep_seconds=10.0, page_size=4,
                               periodic_rows=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        assert len(conversations.posted) == 25
        await trio.sleep(10.5)
        assert len(conversations.posted) == 35
        livechat.bus.tell()
        await trio.sleep(0.1)
        assert len(conversations.posted) == 60
        service.request_stop()
