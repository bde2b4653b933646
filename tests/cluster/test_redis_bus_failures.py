"""RedisBus under the failures of FAILURES.md (1-5, 8-10, 12, 14, 15) on a real Redis.

Several buses share one trio.run (three RedisBus objects, one namespace); real time with a
100 ms heartbeat and a 500 ms lease; invariants over timings wherever possible.
"""

from __future__ import annotations

import gc
import itertools
import json
import signal
import subprocess
import sys
from typing import Any

import pytest
import trio
from support.redis import (
    client_ids,
    delete_namespace,
    kill_clients,
    open_admin,
    private_redis,
)
from support.waiting import eventually

from lcx.cluster.bus import BusUnavailable, Leadership, MemberGone, MemberInfo, RpcTimeout
from lcx.cluster.redis_bus import RedisBus
from lcx.cluster.redis_frames import Reply, encode
from lcx.cluster.redis_keys import Keys
from tests.cluster.conftest import LEASE, Cluster


def three(cluster: Cluster) -> list[RedisBus]:
    """Three Redis buses answering ``echo``."""
    async def echo(sender: str, payload: bytes) -> bytes:
        return payload

    buses = [cluster.redis(name) for name in ("a", "b", "c")]
    for bus in buses:
        bus.handle("echo", echo)
    return buses


def only_leader(cluster: Cluster) -> RedisBus:
    """The one bus that leads now."""
    [leader] = cluster.leaders()
    assert isinstance(leader, RedisBus)
    return leader


async def test_three_instances_see_each_other_and_one_leads(cluster: Cluster) -> None:
    """Three buses converge on the same members and exactly one leader."""
    buses = three(cluster)
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
    leader = only_leader(cluster)
    assert {bus.leadership() for bus in buses} == {leader.leadership()}
    for bus in buses:
        assert {info.url for info in bus.members().values()} == {
            "http://a.test", "http://b.test", "http://c.test"}


async def test_rpc_between_every_pair_of_instances(cluster: Cluster) -> None:
    """Each instance can call each other instance, concurrently."""
    buses = three(cluster)
    replies: list[bytes] = []

    async def call(caller: RedisBus, callee: RedisBus) -> None:
        payload = f"{caller.instance_id}->{callee.instance_id}".encode()
        replies.append(await caller.request(callee.instance_id, "echo", payload, timeout=2))

    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        async with trio.open_nursery() as nursery:
            for caller in buses:
                for callee in buses:
                    nursery.start_soon(call, caller, callee)
    assert len(replies) == 9
    assert all(bus.statistics().pending_requests == 0 for bus in buses)


async def test_leader_stop_hands_over_at_once_with_a_higher_term(cluster: Cluster) -> None:
    """A stopping leader deletes its lease; another takes over with a higher term well
    within two leases, and there is never more than one leader."""
    three(cluster)
    violations = cluster.watch_single_leader()
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        leader = only_leader(cluster)
        old = leader.leadership()
        assert old is not None
        stopped_at = trio.current_time()
        await cluster.stop(leader)
        await eventually(lambda: len(cluster.leaders()) == 1, timeout=2 * LEASE)
        assert trio.current_time() - stopped_at < 2 * LEASE
    new = only_leader(cluster).leadership()
    assert new is not None
    assert new.term > old.term
    assert new.instance_id != old.instance_id
    assert violations == []


async def test_crashed_member_disappears_after_the_lease(cluster: Cluster) -> None:
    """A member that stops heartbeating without deregistering stays listed until its key
    expires, then disappears from every view and membership handlers hear of it."""
    a, b, c = three(cluster)
    views: list[set[str]] = []
    a.on_membership(lambda members: views.append(set(members)))
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        await cluster.crash(c)
        assert c.instance_id in a.members()  # no deregistration: still listed
        crashed_at = trio.current_time()
        await eventually(lambda: c.instance_id not in a.members()
                         and c.instance_id not in b.members(), timeout=3 * LEASE)
        assert trio.current_time() - crashed_at < LEASE + 0.3
    assert views[-1] == {a.instance_id, b.instance_id}


async def test_request_to_a_dead_member_fails_at_once(cluster: Cluster) -> None:
    """A member that died is still in the view for a while, but nobody listens on its
    request channel: MemberGone at once, not an RpcTimeout at the deadline."""
    a, _, c = three(cluster)
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        await cluster.crash(c)
        with trio.fail_after(1), pytest.raises(MemberGone):
            await a.request(c.instance_id, "echo", b"", timeout=5)


async def test_crashed_leader_is_replaced_after_its_lease(cluster: Cluster) -> None:
    """A leader that dies holding the lease is replaced once the lease expires in Redis,
    with a higher term; at no time do two instances believe they lead."""
    three(cluster)
    violations = cluster.watch_single_leader()
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        leader = only_leader(cluster)
        old = leader.leadership()
        assert old is not None
        await cluster.crash(leader)
        await eventually(lambda: len(cluster.leaders()) == 1, timeout=2 * LEASE + 0.2)
    new = only_leader(cluster).leadership()
    assert new is not None
    assert new.term > old.term
    assert violations == []


async def test_lost_reply_times_out_and_a_late_reply_is_counted(cluster: Cluster,
                                                                redis_url: str) -> None:
    """No reply: RpcTimeout at the deadline, no waiter left; a reply that arrives for no
    waiter is dropped and counted."""
    a, b, _ = three(cluster)

    async def never(sender: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    b.handle("never", never)
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        start = trio.current_time()
        with pytest.raises(RpcTimeout):
            await a.request(b.instance_id, "never", b"", timeout=0.3)
        assert trio.current_time() - start < 0.6
        assert a.statistics().pending_requests == 0
        await eventually(lambda: b.statistics().serving_requests == 0, timeout=1)
        late = encode(Reply("gone:1", b.instance_id, b"too late"))
        async with open_admin(redis_url) as admin:
            await admin.publish(Keys(cluster.namespace).replies(a.instance_id), late)
        await eventually(lambda: a.statistics().late_replies == 1, timeout=2)
    assert a.statistics().pending_requests == 0


async def test_slow_handler_blocks_neither_requests_nor_topics(cluster: Cluster) -> None:
    """While one handler takes its time, other requests are answered and topic messages
    delivered by the same instance."""
    a, b, _ = three(cluster)
    release = trio.Event()
    delivered: list[float] = []

    async def slow(sender: str, payload: bytes) -> bytes:
        await release.wait()
        return b"slow"

    b.handle("slow", slow)
    b.subscribe("tick", lambda sender, payload: delivered.append(trio.current_time()))
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        async with trio.open_nursery() as nursery:
            async def call_slow() -> None:
                assert await a.request(b.instance_id, "slow", b"", timeout=5) == b"slow"

            for _ in range(5):
                nursery.start_soon(call_slow)
            await eventually(lambda: b.statistics().serving_requests == 5, timeout=2)
            start = trio.current_time()
            assert await a.request(b.instance_id, "echo", b"fast", timeout=1) == b"fast"
            assert a.publish(b.instance_id, "tick", b"")
            await eventually(lambda: len(delivered) == 1, timeout=1)
            assert trio.current_time() - start < 0.5
            release.set()


async def test_killed_connections_are_replaced_and_resubscribed(cluster: Cluster,
                                                                redis_url: str) -> None:
    """CLIENT KILL of a bus's pub/sub connection, then of all its connections: it
    reconnects, re-subscribes, and requests and topics work again both ways."""
    a, b, _ = three(cluster)
    heard: list[bytes] = []
    b.subscribe("news", lambda sender, payload: heard.append(payload))
    with trio.fail_after(15):
        await cluster.start()
        await cluster.converged()
        async with open_admin(redis_url) as admin:
            name = f"lcx-bus:{b.instance_id}"
            assert await kill_clients(admin, name, pubsub=True) == 1
            await eventually(lambda: b.statistics().reconnects == 1, timeout=3)
            await _works_both_ways(a, b, heard, b"after pubsub kill")
            assert await kill_clients(admin, name) >= 2
            await eventually(lambda: b.statistics().reconnects == 2, timeout=3)
            await _works_both_ways(a, b, heard, b"after full kill")
            assert len(await client_ids(admin, name, pubsub=True)) == 1
        await cluster.converged()


async def _works_both_ways(a: RedisBus, b: RedisBus, heard: list[bytes], text: bytes) -> None:
    assert await a.request(b.instance_id, "echo", text, timeout=2) == text
    assert await b.request(a.instance_id, "echo", text, timeout=2) == text
    assert a.publish(b.instance_id, "news", text)
    await eventually(lambda: text in heard, timeout=2)


async def test_lost_keys_re_register_and_re_elect_with_a_higher_term(
        cluster: Cluster, redis_url: str) -> None:
    """All keys gone (a Redis restart without persistence, script cache included): the
    members register again and a leader is elected with a higher term than before."""
    buses = three(cluster)
    violations = cluster.watch_single_leader()
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        old = only_leader(cluster).leadership()
        assert old is not None
        assert await delete_namespace(redis_url, cluster.namespace) >= 5
        async with open_admin(redis_url) as admin:
            await admin.script_flush()
            keys = Keys(cluster.namespace)
            ids = {bus.instance_id for bus in buses}

            async def registered() -> bool:
                members = {m.decode() for m in await admin.smembers(keys.members)}
                return members == ids and await admin.exists([keys.leader]) == 1

            while not await registered():  # noqa: ASYNC110 - the state lives in Redis: poll it
                await trio.sleep(0.05)
        await eventually(lambda: (lead := only_leader_or_none(cluster)) is not None
                         and lead.term > old.term, timeout=2 * LEASE)
        await cluster.converged()
    assert violations == []


def only_leader_or_none(cluster: Cluster) -> Leadership | None:
    """The leadership of the one bus that leads, if exactly one does."""
    leaders = cluster.leaders()
    return leaders[0].leadership() if len(leaders) == 1 else None


async def test_paused_leader_steps_down_by_its_local_deadline(cluster: Cluster) -> None:
    """A leader whose heartbeat stalls (as in a process pause) stops believing it leads by
    its local deadline, before Redis lets another take over with a higher term; after the
    pause it never reports its old term again."""
    three(cluster)
    violations = cluster.watch_single_leader()
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        leader = only_leader(cluster)
        old = leader.leadership()
        assert old is not None
        leader.suspend_heartbeats()
        paused_at = trio.current_time()
        events = cluster.events[leader.instance_id]
        await eventually(lambda: not leader.is_leader() and events[-1] is None, timeout=LEASE)
        await eventually(lambda: only_leader_or_none(cluster) is not None, timeout=2 * LEASE)
        assert trio.current_time() - paused_at < 2 * LEASE
        new = only_leader_or_none(cluster)
        assert new is not None
        assert new.term > old.term
        assert new.instance_id != old.instance_id
        await trio.sleep(LEASE)  # paused well past the lease
        leader.resume_heartbeats()
        seen: list[Leadership | None] = []
        for _ in range(40):
            seen.append(leader.leadership())
            await trio.sleep(0.01)
    assert old not in seen
    assert seen[-1] == new
    assert not leader.is_leader()
    assert [event for event in cluster.events[leader.instance_id] if event] == [old]
    assert violations == []


async def test_a_member_back_after_its_record_lapsed_tells_an_empty_view_first(
        cluster: Cluster) -> None:
    """A member whose heartbeats stalled until the others dropped it tells its handlers an
    empty view before the full one when it beats again (it was isolated: the others may
    have owned its actors), even though nobody looked at its view while it stalled."""
    a, b, _ = three(cluster)
    views: list[set[str]] = []
    a.on_membership(lambda members: views.append(set(members)))
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        everyone = set(a.members())
        views.clear()
        a.suspend_heartbeats()
        await eventually(lambda: a.instance_id not in b.members(), timeout=4 * LEASE)
        a.resume_heartbeats()
        await eventually(lambda: views and views[-1] == everyone, timeout=4 * LEASE)
    assert set() in views, views


async def test_draining_is_announced_at_once(cluster: Cluster) -> None:
    """set_draining shows in the other members' views at once (hint + early heartbeat)."""
    a, b, _ = three(cluster)
    views: list[dict[str, MemberInfo]] = []
    a.on_membership(lambda members: views.append(dict(members)))
    with trio.fail_after(10):
        await cluster.start()
        await cluster.converged()
        b.set_draining(True)
        await eventually(lambda: a.members()[b.instance_id].draining, timeout=0.5)
    assert views[-1][b.instance_id].draining


# coredis leaves the memory streams of a connection that failed to connect unclosed (they
# are garbage-collected; only their ResourceWarning escapes): every heartbeat while Redis
# is down makes one such attempt. The test collects them itself, under these filters.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_redis_outage_and_restart_without_data(nursery: trio.Nursery) -> None:
    """Redis down: ping and requests fail fast, leadership ends by the local deadline,
    the view empties after the lease. Redis back, empty: members re-register,
    re-subscribe, and elect a leader with a higher term, without restarting anything."""
    async with private_redis() as server:
        cluster = Cluster(nursery, server.url, "outage")
        a, b, _ = three(cluster)
        violations = cluster.watch_single_leader()
        with trio.fail_after(20):
            await cluster.start()
            await cluster.converged()
            old = only_leader(cluster).leadership()
            assert old is not None
            await server.stop()
            down_at = trio.current_time()
            with trio.fail_after(1), pytest.raises(BusUnavailable):
                await a.ping()
            with trio.fail_after(1.5), pytest.raises((BusUnavailable, RpcTimeout)):
                await a.request(b.instance_id, "echo", b"", timeout=1)
            await eventually(lambda: cluster.leaders() == [], timeout=LEASE)
            assert trio.current_time() - down_at < LEASE + 0.2
            await eventually(lambda: all(bus.members() == {} for bus in (a, b)), timeout=2)
            await server.start()
            await cluster.converged(timeout=10)
            new = only_leader(cluster).leadership()
            assert new is not None
            assert new.term > old.term
            assert await a.request(b.instance_id, "echo", b"back", timeout=2) == b"back"
            assert await a.ping() >= 0
            await cluster.stop_all()
    gc.collect()
    assert violations == []


_PAUSABLE = """
import json, sys, trio
from lcx.cluster.redis_bus import RedisBus

async def main(url, namespace):
    bus = RedisBus("paused-" + namespace, url, heartbeat_ms=100, lease_ms=500,
                   namespace=namespace)
    def say(**fields):
        print(json.dumps({"t": trio.current_time(), **fields}), flush=True)
    bus.on_leadership(lambda lead: say(event=None if lead is None else lead.term))
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        while True:
            lead = bus.leadership()
            say(leader=bus.is_leader(), term=lead.term if lead else None,
                holder=lead.instance_id if lead else None)
            await trio.sleep(0.02)

trio.run(main, sys.argv[1], sys.argv[2])
"""


async def test_sigstopped_leader_steps_down_first_thing_after_resume(
        cluster: Cluster, redis_url: str) -> None:
    """A leader process paused (SIGSTOP) past its lease is replaced with a higher term;
    when it resumes, it reports no leadership from its first sample on, never its old
    term (FAILURES.md scenario 2, with a real process)."""
    lines: list[dict[str, Any]] = []
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _PAUSABLE, redis_url, cluster.namespace],
        stdout=subprocess.PIPE)
    assert process.stdout is not None
    stdout = process.stdout

    async def read() -> None:
        buffer = b""
        async for chunk in stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines.extend(json.loads(line) for line in complete if line)

    try:
        cluster.nursery.start_soon(read)
        with trio.fail_after(15):
            await eventually(lambda: any(line.get("leader") for line in lines), timeout=10)
            old_term = next(line["term"] for line in lines if line.get("leader"))
            follower = cluster.redis("follower")
            await cluster.start(follower)
            process.send_signal(signal.SIGSTOP)
            await eventually(lambda: follower.is_leader(), timeout=4 * LEASE)
            new = follower.leadership()
            assert new is not None
            assert new.term > old_term
            stopped_count = len(lines)
            await trio.sleep(LEASE)
            process.send_signal(signal.SIGCONT)
            await eventually(lambda: any(line.get("holder") == follower.instance_id
                                         for line in lines[stopped_count:]), timeout=3)
    finally:
        process.kill()
        await process.wait()
    samples = [line for line in lines if "leader" in line]
    gaps = [later["t"] - earlier["t"] for earlier, later in itertools.pairwise(samples)]
    resumed = gaps.index(max(gaps)) + 1
    assert max(gaps) > 2 * LEASE
    assert all(not sample["leader"] for sample in samples[resumed:])
    events = [line["event"] for line in lines if "event" in line]
    assert events == [old_term, None]
