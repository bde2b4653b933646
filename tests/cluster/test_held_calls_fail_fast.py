"""A call held by an instance that dies fails with MemberLost within a check period (250 ms),
not at its deadline, and long before the dead member's lease runs out; a call to an
instance that answers slowly but lives is not failed by the check."""

from __future__ import annotations

import pytest
import trio

from lcx.cluster.bus import MemberLost
from lcx.cluster.redis_bus import RedisBus
from tests.cluster.conftest import HEARTBEAT_MS, LEASE, Cluster

CHECK = 0.25
"""The Redis bus's default held_check_seconds."""
LONG_LEASE_MS = 4000
"""The crashed callee's lease: its record outlives the check by far, so only the check
can fail the call in time."""


async def test_a_call_held_by_a_crashed_instance_fails_at_once(cluster: Cluster) -> None:
    """The callee takes the call and never answers, then crashes (its connection closes):
    the caller gets MemberLost soon after the crash, while the callee's record lives on."""
    caller = cluster.redis("caller")
    callee = cluster._add(RedisBus(
        f"callee-{cluster.namespace}", cluster.url, heartbeat_ms=HEARTBEAT_MS,
        lease_ms=LONG_LEASE_MS, namespace=cluster.namespace, url="http://callee.test"))

    async def hold(sender: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    callee.handle("hold", hold)
    failed: list[tuple[BaseException, float]] = []

    async def call() -> None:
        try:
            await caller.request(callee.instance_id, "hold", b"", timeout=10)
        except MemberLost as exc:
            failed.append((exc, trio.current_time()))

    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.3)
            crashed_at = trio.current_time()
            await cluster.crash(callee)
    assert failed, "the held call did not fail with MemberLost"
    waited = failed[0][1] - crashed_at
    assert waited < 4 * CHECK < LONG_LEASE_MS / 1000, waited  # a check or two, with room


@pytest.mark.parametrize("seconds", [0.8])
async def test_a_slow_answer_of_a_live_instance_is_waited_for(cluster: Cluster,
                                                             seconds: float) -> None:
    """A handler that takes several check periods still answers: the check fails only the
    calls of targets that stopped listening."""
    caller, callee = cluster.redis("caller"), cluster.redis("callee")

    async def slow(sender: str, payload: bytes) -> bytes:
        await trio.sleep(seconds)
        return payload

    callee.handle("slow", slow)
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        assert await caller.request(callee.instance_id, "slow", b"ok", timeout=5) == b"ok"


async def test_a_call_held_by_a_stalled_instance_fails_when_its_lease_ends(
        cluster: Cluster) -> None:
    """The callee stalls (no heartbeat; it still listens) while holding a call: once its
    lease runs out and it leaves the caller's view, the call fails with MemberLost,
    long before its deadline."""
    caller, callee = cluster.redis("caller"), cluster.redis("callee")

    async def hold(sender: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    callee.handle("hold", hold)
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        callee.suspend_heartbeats()
        began = trio.current_time()
        with pytest.raises(MemberLost):
            await caller.request(callee.instance_id, "hold", b"", timeout=5)
        waited = trio.current_time() - began
        callee.resume_heartbeats()
    assert waited < LEASE + 3 * CHECK + 0.3, waited
