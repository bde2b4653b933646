"""Fixtures of the cluster tests: buses started in the test's nursery, on a real Redis.

Every Redis test gets a namespace of its own (deleted afterwards) and instance ids that
carry it, so tests can share a Redis and run concurrently. Real time throughout (see
tests/support/redis.py): heartbeat 100 ms, lease 500 ms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, TypeVar

import pytest
import trio
from support.redis import delete_namespace, require_redis, unique_namespace
from support.waiting import eventually

from lcx.cluster.bus import Bus, Leadership
from lcx.cluster.local_bus import LocalBus
from lcx.cluster.redis_bus import RedisBus

HEARTBEAT_MS = 100
LEASE_MS = 500
LEASE = LEASE_MS / 1000

B = TypeVar("B", bound=Bus)


class Cluster:
    """Buses of one test: built, started, crashed and stopped in the test's nursery."""

    def __init__(self, nursery: trio.Nursery, url: str, namespace: str) -> None:
        self.nursery = nursery
        self.url = url
        self.namespace = namespace
        self.buses: list[Bus] = []
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}
        self.events: dict[str, list[Leadership | None]] = {}

    def redis(self, name: str, **options: object) -> RedisBus:
        """A Redis bus (not started) named ``<name>-<namespace>``."""
        bus = RedisBus(f"{name}-{self.namespace}", self.url, heartbeat_ms=HEARTBEAT_MS,
                       lease_ms=LEASE_MS, namespace=self.namespace,
                       url=f"http://{name}.test", **options)  # type: ignore[arg-type]
        return self._add(bus)

    def local(self, name: str) -> LocalBus:
        """A local bus (not started)."""
        return self._add(LocalBus(name))

    def _add(self, bus: B) -> B:
        self.buses.append(bus)
        events: list[Leadership | None] = []
        self.events[bus.instance_id] = events
        bus.on_leadership(events.append)
        return bus

    async def start(self, *buses: Bus) -> None:
        """Start ``buses`` (all, if none named), each reporting started in turn."""
        for bus in buses or tuple(self.buses):
            self._done[bus.instance_id] = trio.Event()
            await self.nursery.start(self._run, bus)

    async def _run(self, bus: Bus, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scopes[bus.instance_id] = scope
                await bus.run(task_status=task_status)
        finally:
            self._done[bus.instance_id].set()

    async def crash(self, bus: Bus) -> None:
        """Cancel ``bus`` without a graceful stop (as if its process died); wait for it."""
        self._scopes[bus.instance_id].cancel()
        await self._done[bus.instance_id].wait()

    async def stop(self, bus: Bus) -> None:
        """Gracefully stop ``bus`` and wait until its ``run`` returned."""
        bus.request_stop()
        await self._done[bus.instance_id].wait()

    async def stop_all(self) -> None:
        """Stop every started bus."""
        for bus in self.buses:
            if bus.instance_id in self._done:
                await self.stop(bus)

    def running(self) -> list[Bus]:
        """The started buses whose ``run`` has not returned."""
        return [bus for bus in self.buses
                if bus.instance_id in self._done and not self._done[bus.instance_id].is_set()]

    def leaders(self) -> list[Bus]:
        """The running buses that believe they lead."""
        return [bus for bus in self.running() if bus.is_leader()]

    async def converged(self, timeout: float = 5.0) -> None:
        """Wait until every running bus is subscribed, sees all running buses, and agrees
        with the others on one leader."""
        def agreed() -> bool:
            running = self.running()
            ids = {bus.instance_id for bus in running}
            views = [set(bus.members()) == ids and _subscribed(bus) for bus in running]
            leads = {bus.leadership() for bus in running}
            return all(views) and len(self.leaders()) == 1 and len(leads) == 1
        await eventually(agreed, timeout=timeout)

    def watch_single_leader(self) -> list[int]:
        """Start sampling how many buses believe they lead; the returned list collects every
        sample above one (the invariant: it stays empty)."""
        violations: list[int] = []

        async def sample() -> None:
            while True:
                count = len(self.leaders())
                if count > 1:
                    violations.append(count)
                await trio.sleep(0.005)

        self.nursery.start_soon(sample)
        return violations


def _subscribed(bus: Bus) -> bool:
    """Whether ``bus`` listens on its channels (always, for a local bus)."""
    return not isinstance(bus, RedisBus) or bus.statistics().subscribed


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (skips, or fails under LCX_REQUIRE_SERVICES=1, if down)."""
    return require_redis()


@pytest.fixture
async def cluster(nursery: trio.Nursery, redis_url: str) -> AsyncIterator[Cluster]:
    """A cluster of Redis buses in a fresh namespace; stopped and cleaned after the test."""
    namespace = unique_namespace()
    buses = Cluster(nursery, redis_url, namespace)
    yield buses
    with trio.fail_after(10):
        await buses.stop_all()
        await delete_namespace(redis_url, namespace)


Kind = Literal["local", "redis"]


class Pair:
    """A caller and a callee: two Redis buses, or one local bus playing both parts."""

    def __init__(self, kind: Kind, cluster: Cluster) -> None:
        self.kind = kind
        self.cluster = cluster
        if kind == "local":
            self.caller: Bus = cluster.local("solo")
            self.callee: Bus = self.caller
        else:
            self.caller = cluster.redis("caller")
            self.callee = cluster.redis("callee")

    async def start(self) -> None:
        """Start both and wait until they see each other and agree on a leader."""
        await self.cluster.start()
        await self.cluster.converged()


@pytest.fixture(params=["local", "redis"])
async def pair(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[Pair]:
    """The contract's subject: each Bus implementation in turn."""
    kind: Kind = request.param
    url = require_redis() if kind == "redis" else ""
    namespace = unique_namespace()
    buses = Cluster(nursery, url, namespace)
    yield Pair(kind, buses)
    with trio.fail_after(10):
        await buses.stop_all()
        if kind == "redis":
            await delete_namespace(url, namespace)
