"""Placement answers from a cached, versioned member set, and a membership change (a member
joining, leaving, dying or draining) invalidates what it cached."""

from __future__ import annotations

import trio
from conftest import Cluster
from support.waiting import eventually

from lcx.cluster.local_bus import LocalBus
from lcx.cluster.placement import Placement, owner_of

KEYS = [f"c{i}" for i in range(300)]


def owners(placement: Placement) -> dict[str, str]:
    """The owner of every test key, as ``placement`` answers now."""
    return {key: placement.owner("conversation", key) for key in KEYS}


def expected(members: list[str]) -> dict[str, str]:
    """The owners rendezvous hashing gives over ``members`` (computed afresh, no cache)."""
    return {key: owner_of(f"conversation:{key}", members) or "" for key in KEYS}


async def test_owners_follow_joins_drains_and_departures(cluster: Cluster) -> None:
    """Every change of the member set reaches the cached answers; nothing stale remains."""
    a, b, c = cluster.redis("a"), cluster.redis("b"), cluster.redis("c")
    placement = Placement(a)
    with trio.fail_after(15):
        await cluster.start(a, b)
        await cluster.converged()
        first = owners(placement)
        assert first == expected([a.instance_id, b.instance_id])
        assert set(first.values()) == {a.instance_id, b.instance_id}

        version = a.member_set().version
        await cluster.start(c)
        await cluster.converged()
        assert a.member_set().version > version
        assert owners(placement) == expected([a.instance_id, b.instance_id, c.instance_id])

        b.set_draining(True)
        await eventually(lambda: b.instance_id not in a.member_set().candidates, timeout=5)
        assert owners(placement) == expected([a.instance_id, c.instance_id])

        await cluster.crash(c)
        await eventually(lambda: c.instance_id not in a.member_set().candidates, timeout=5)
        assert set(owners(placement).values()) == {a.instance_id}


async def test_heartbeats_without_a_change_keep_the_version(cluster: Cluster) -> None:
    """Heartbeats refresh the view (the load each member reports changes) but keep the
    version, so the cache survives them."""
    a, b = cluster.redis("a"), cluster.redis("b")
    with trio.fail_after(10):
        await cluster.start(a, b)
        await cluster.converged()
        version = a.member_set().version
        await trio.sleep(0.5)  # five heartbeats
    assert a.member_set().version == version
    assert a.member_set().candidates == tuple(sorted([a.instance_id, b.instance_id]))


async def test_local_bus_owns_everything_while_it_runs(nursery: trio.Nursery) -> None:
    """A single instance owns every key without hashing; a stopped bus a new version."""
    bus = LocalBus("solo")
    placement = Placement(bus)
    before = bus.member_set()
    assert before.candidates == ()
    assert placement.owner("conversation", "c1") == "solo"  # falls back on itself
    await nursery.start(bus.run)
    running = bus.member_set()
    assert running.candidates == ("solo",)
    assert running.version > before.version
    assert set(owners(placement).values()) == {"solo"}
    bus.request_stop()
    await eventually(lambda: bus.member_set().version > running.version, timeout=2)
    assert bus.member_set().candidates == ()


async def test_local_bus_report_is_built_only_when_read(nursery: trio.Nursery) -> None:
    """Placement never builds the actor report; reading a member's actors does."""
    calls: list[int] = []

    def report() -> dict[str, int]:
        calls.append(1)
        return {"conversation": 3}

    bus = LocalBus("solo")
    bus.set_report(report)
    await nursery.start(bus.run)
    placement = Placement(bus)
    owners(placement)
    member = bus.members()["solo"]
    assert calls == []
    assert dict(member.actors) == {"conversation": 3}
    assert calls == [1]
    bus.request_stop()
