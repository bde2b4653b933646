"""The Redis bus: many lcx instances sharing one Redis (DESIGN.md "Cluster").

One :class:`RedisBus` per instance. ``run`` enters one coredis client for its whole life and
runs these tasks in one nursery::

    subscriber  one pub/sub connection on our request, reply and message channels and the
                broadcast channel; reconnects with backoff (coredis's own re-subscription
                is switched off so that we know when we are deaf); its reader decodes each
                frame and dispatches without blocking: replies to waiters, topic messages to
                sync handlers, requests to serving tasks (bounded, see redis_rpc)
    heartbeat   every heartbeat_ms (or at once on a hint): leader lease, then membership
    watchdog    steps down at the lease's local deadline, whatever the heartbeat is doing
    outbox      drains the bounded queue of publish() and of RPC replies into batches,
                written on a connection with Redis's replies off (nothing waits for them)
    publisher   sends the RPC requests queued meanwhile as one pipeline (and replies when
                the outbox is full), each caller getting its own answer (receivers, or the
                error)
    held        while calls of ours wait, checks every held_check_seconds (PUBSUB NUMSUB
                of their targets' request channels) that each target still listens; a
                target that does not died (its connection closed): its calls fail with
                MemberLost at once, not at their deadline, long before its lease expires;
                so do the calls held by a target that left our (fresh) member view
                (paused or cut off past its lease: the others place its keys anew)
    local       delivers publish() to ourselves without Redis

Modules: keys and channels ``redis_keys``, wire frames ``redis_frames``, client and error
mapping ``redis_link``, lease ``redis_leader``, membership ``redis_membership``, RPC
``redis_rpc``, subscriber ``redis_pubsub``, outgoing queue ``redis_outbox``, awaited
publishes ``redis_publisher``, error boxing
``errors``; Lua scripts in ``lua/``.

While Redis is unreachable: ``ping`` raises BusUnavailable; ``request`` fails fast with
BusUnavailable (or RpcTimeout, never later than the caller's deadline); ``publish`` drops
(at-most-once); leadership ends at the local deadline; ``members()`` keeps the last view
for up to ``lease_ms`` (see ``view_age()``), then is empty. When Redis is back (even
restarted without its data) the next beat re-registers, the subscriber re-subscribes,
and a new leader is elected with a higher term; no restart of the process is needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from lcx.cluster.bus import (
    BusError,
    BusUnavailable,
    Leadership,
    LeadershipHandler,
    MemberGone,
    MemberInfo,
    MemberSet,
    MembershipHandler,
    NotSent,
    RpcHandler,
    TopicHandler,
)
from lcx.cluster.redis_frames import (
    Failure,
    Frame,
    Hint,
    HintEvent,
    MemberRecord,
    Message,
    Reply,
    Request,
    encode,
)
from lcx.cluster.redis_keys import Keys
from lcx.cluster.redis_leader import LeaderLease
from lcx.cluster.redis_link import RedisLink, open_link
from lcx.cluster.redis_membership import Membership
from lcx.cluster.redis_outbox import Outbox
from lcx.cluster.redis_publisher import Publisher
from lcx.cluster.redis_pubsub import Subscriber
from lcx.cluster.redis_rpc import Rpc
from lcx.model import iso, utc_now
from lcx.runtime.policy import Backoff

log = logging.getLogger("lcx.cluster")
_STOPPED = MemberSet(-1, ())
"""The member set of a bus that does not run (placement then falls back on itself)."""


@dataclass(frozen=True)
class BusStatistics:
    """Counters of one Redis bus (for /metrics and tests)."""

    pending_requests: int
    serving_requests: int
    late_replies: int
    refused_requests: int
    dropped_publishes: int
    bad_frames: int
    reconnects: int
    outbox_used: int
    subscribed: bool
    """Whether our channels are subscribed now (False while reconnecting)."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBus:
    """A :class:`~lcx.cluster.bus.Bus` over Redis: membership, leader lease, RPC, topics.

    ``url`` is this instance's HTTP base URL (reported to peers). ``lease_ms`` must exceed
    twice ``heartbeat_ms``; the leader steps down ``heartbeat_ms`` before its lease would
    expire in Redis (the safety margin).
    """

    def __init__(self, instance_id: str, redis_url: str, *, heartbeat_ms: int, lease_ms: int,
                 namespace: str = "lcx", url: str = "", outbox_size: int = 1024,
                 max_concurrent_requests: int = 64, held_check_seconds: float = 0.25
                 ) -> None:
        if heartbeat_ms <= 0 or lease_ms <= 2 * heartbeat_ms:
            raise ValueError("lease_ms must be more than twice heartbeat_ms (> 0)")
        self.instance_id = instance_id
        self.url = url
        self._redis_url = redis_url
        self._keys = Keys(namespace)
        self._heartbeat = heartbeat_ms / 1000
        self._held_check = held_check_seconds
        lease = lease_ms / 1000
        self._timeout = max(0.05, min(1.0, lease / 2))
        self._backoff = Backoff(initial_seconds=min(0.05, self._heartbeat),
                                maximum_seconds=max(self._heartbeat, lease / 2), jitter=0.2)
        self._leader = LeaderLease(instance_id, self._keys, lease_ms=lease_ms,
                                   margin_ms=heartbeat_ms)
        self._membership = Membership(instance_id, self._keys, lease_ms=lease_ms)
        self._publisher = Publisher()
        self._outbox = Outbox(outbox_size)
        self._rpc = Rpc(instance_id, self._keys, self._publisher,
                        max_concurrent=max_concurrent_requests,
                        send_unanswered=self._outbox.offer)
        self._topics: dict[str, list[TopicHandler]] = {}
        self._report: Callable[[], Mapping[str, int]] = dict
        self._draining = False
        self._announcement: HintEvent | None = None
        self._local_send, self._local = trio.open_memory_channel[Message](outbox_size)
        self._subscriber = Subscriber(
            self._keys.inbound(instance_id), self._dispatch, backoff=self._backoff,
            idle_probe=max(1.0, lease), on_resubscribed=self._wake_heartbeat,
            on_lost=lambda: self._rpc.fail_all("our reply channel was disconnected"))
        self._link: RedisLink | None = None
        self._serving: trio.Nursery | None = None
        self._running = False
        self._stop = trio.Event()
        self._wake = trio.Event()
        self._gate = trio.Event()
        self._gate.set()

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Connect, subscribe, register, then heartbeat and serve until stopped.

        Reports started once our channels are subscribed and our first heartbeat is
        written (retrying with backoff until Redis answers). A graceful stop
        (:meth:`request_stop`) deregisters and releases the lease before returning;
        cancellation does not (like a crash: peers notice at lease expiry).
        """
        self._stop = trio.Event()
        name = "lcx-bus:" + re.sub(r"\s", "_", self.instance_id)
        try:
            async with open_link(self._redis_url, timeout=self._timeout, name=name) as link:
                self._link = link
                async with trio.open_nursery() as nursery:
                    self._serving = nursery
                    await nursery.start(self._subscriber.run, link)
                    await self._join(link)
                    for task in (self._heartbeats, self._outbox.run, self._publisher.run,
                                 self._check_held):
                        nursery.start_soon(task, link)
                    nursery.start_soon(self._leader.watch)
                    nursery.start_soon(self._deliver_local)
                    self._running = True
                    task_status.started()
                    await self._stop.wait()
                    self._running = False
                    await self._leave(link)
                    nursery.cancel_scope.cancel()
        finally:
            self._running = False
            self._link = self._serving = None
            self._leader.forget()
            self._membership.forget()
            self._publisher.close("the bus stopped")
            self._rpc.fail_all("the bus stopped")

    def request_stop(self) -> None:
        """Leave the cluster (deregister, release the lease at once) and return from run."""
        self._stop.set()

    async def _join(self, link: RedisLink) -> None:
        """First beat, retried with backoff until Redis answers; then say we joined."""
        failures = 0
        while not await self._beat(link):
            failures += 1
            await trio.sleep(self._backoff.delay(failures))
        self._announce("joined")

    async def _leave(self, link: RedisLink) -> None:
        """Release the lease, deregister, tell the others; bounded and shielded."""
        with trio.move_on_after(3 * self._timeout, shield=True):
            try:
                released = await self._leader.release(link)
                await self._membership.leave(link)
                event: HintEvent = "leader-released" if released else "left"
                hint = encode(Hint(self.instance_id, event))
                await link.publish("publish hint", [(self._keys.broadcast, hint)])
            except BusError as exc:
                log.warning("left without deregistering: %s", exc)

    # --- membership ---------------------------------------------------------------------
    def members(self) -> Mapping[str, MemberInfo]:
        """The live members (this instance included while it runs and reaches Redis)."""
        return self._membership.members() if self._running else {}

    def member_set(self) -> MemberSet:
        """The candidates of :meth:`members`, versioned; cheap."""
        return self._membership.member_set() if self._running else _STOPPED

    def view_age(self) -> float | None:
        """Seconds since the member view was last read from Redis (None: not running)."""
        return self._membership.view_age()

    def on_membership(self, handler: MembershipHandler) -> None:
        """Call ``handler`` with the new view (at start, and when it changes)."""
        self._membership.on_membership(handler)

    def set_draining(self, draining: bool) -> None:
        """Write the flag at once (an early heartbeat) and hint the others."""
        if draining != self._draining:
            self._draining = draining
            self._announcement = "draining"
            self._wake_heartbeat()

    def set_report(self, report: Callable[[], Mapping[str, int]]) -> None:
        """What heartbeats report as our live actors by kind."""
        self._report = report

    # --- leadership ---------------------------------------------------------------------
    def leadership(self) -> Leadership | None:
        """The leader as we last saw it (ourselves while our lease holds)."""
        return self._leader.leadership()

    def is_leader(self) -> bool:
        """Whether we hold the lease and its local deadline has not passed."""
        return self._leader.is_leader()

    def on_leadership(self, handler: LeadershipHandler) -> None:
        """Call ``handler`` on gaining (Leadership) and losing (None) the lease."""
        self._leader.on_leadership(handler)

    # --- RPC ----------------------------------------------------------------------------
    def handle(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method`` for other instances and ourselves."""
        self._rpc.handle(method, handler)

    async def request(self, instance_id: str, method: str, payload: bytes, *,
                      timeout: float) -> bytes:
        """Call ``method`` on ``instance_id`` (ourselves: locally, without Redis).

        Raises:
            RpcTimeout: no reply within ``timeout``.
            MemberGone: ``instance_id`` is not a live member (or does not listen).
            RemoteError: the handler raised (see :func:`lcx.cluster.errors.unbox`).
            BusUnavailable: Redis cannot be reached, or our reply channel was lost
                (:class:`~lcx.cluster.bus.NotSent` when nothing was published).
        """
        if instance_id == self.instance_id:
            if not self._running:
                raise MemberGone(f"{instance_id} (this instance) is not running")
            return await self._rpc.call_local(method, payload, timeout)
        link = self._link
        if link is None or not self._running:
            raise NotSent("the bus is not running")
        if not link.healthy:
            raise NotSent("redis does not answer (reconnecting)")
        if not self._subscriber.subscribed:
            raise NotSent("our reply channel is not subscribed (reconnecting)")
        if instance_id not in self._membership.members():
            raise MemberGone(f"no live member {instance_id}")
        return await self._rpc.call(instance_id, method, payload, timeout)

    # --- fire-and-forget ----------------------------------------------------------------
    def publish(self, instance_id: str | None, topic: str, payload: bytes) -> bool:
        """Queue ``topic`` for one instance (or all, with None); False if dropped (queue
        full or bus not running). At most once: Redis may still lose it."""
        if not self._running:
            return False
        message = Message(self.instance_id, topic, payload)
        if instance_id is None:
            return self._outbox.put(self._keys.broadcast, message)
        if instance_id != self.instance_id:
            return self._outbox.put(self._keys.messages(instance_id), message)
        try:
            self._local_send.send_nowait(message)
        except trio.WouldBlock:
            self._outbox.dropped += 1
            return False
        return True

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Call ``handler(sender, payload)`` for ``topic`` (on the reader: never block)."""
        self._topics.setdefault(topic, []).append(handler)

    # --- health -------------------------------------------------------------------------
    async def ping(self) -> float:
        """Round-trip time of a PING in seconds.

        Raises:
            BusUnavailable: Redis does not answer (or the bus is not running).
        """
        link = self._link
        if link is None:
            raise BusUnavailable("the bus is not running")
        start = trio.current_time()
        await link.call("ping", lambda client: client.ping())
        return trio.current_time() - start

    def statistics(self) -> BusStatistics:
        """Current counters."""
        return BusStatistics(
            pending_requests=self._rpc.pending, serving_requests=self._rpc.serving,
            late_replies=self._rpc.late_replies, refused_requests=self._rpc.refused,
            dropped_publishes=self._outbox.dropped, bad_frames=self._subscriber.bad_frames,
            reconnects=self._subscriber.reconnects,
            outbox_used=self._outbox.used,
            subscribed=self._subscriber.subscribed)

    # --- testing hooks ------------------------------------------------------------------
    def suspend_heartbeats(self) -> None:
        """Testing hook: block the heartbeat task before its next beat (a stalled process:
        no renewal, no membership write) until :meth:`resume_heartbeats`."""
        if self._gate.is_set():
            self._gate = trio.Event()

    def resume_heartbeats(self) -> None:
        """Testing hook: let a suspended heartbeat task go on."""
        self._gate.set()

    # --- tasks --------------------------------------------------------------------------
    async def _heartbeats(self, link: RedisLink) -> None:
        while True:
            await self._gate.wait()
            next_beat = trio.current_time() + self._heartbeat
            self._wake = trio.Event()
            await self._beat(link)
            with trio.move_on_at(next_beat):
                await self._wake.wait()

    async def _beat(self, link: RedisLink) -> bool:
        """One heartbeat: the lease first (its timing matters most), then membership."""
        ok = True
        try:
            await self._leader.beat(link)
        except BusError as exc:
            ok = False
            log.debug("lease beat failed: %s", exc)
        try:
            await self._membership.beat(link, self._record())
        except BusError as exc:
            log.debug("membership beat failed: %s", exc)
            self._membership.expire()
            return False
        if not self._subscriber.subscribed:
            self._subscriber.redis_back()
        if self._announcement is not None and self._running:
            self._announce(self._announcement)
            self._announcement = None
        return ok

    async def _check_held(self, link: RedisLink) -> None:
        """Fail the calls held by targets that no longer listen (see the module doc)."""
        while True:
            await trio.sleep(self._held_check)
            targets = self._rpc.held_targets()
            if not targets or not link.healthy:
                continue
            members = self._membership.members()
            for target in sorted(targets):
                if members and target not in members:  # paused or cut off past its lease
                    self._lose(target, "is no longer a member (its lease ran out)")
            channels = {self._keys.requests(target): target for target in sorted(targets)}
            try:
                listening = await self._listeners(link, list(channels))
            except BusError as exc:
                log.debug("held calls not checked: %s", exc)
                continue
            for channel, target in channels.items():
                if not listening.get(channel, 0):
                    self._lose(target, "stopped listening (it died)")

    def _lose(self, target: str, why: str) -> None:
        lost = self._rpc.lose(target, why)
        if lost:
            log.warning("calls held by a dead member failed early", extra={
                "member": target, "calls": lost, "why": why})

    async def _listeners(self, link: RedisLink, channels: list[str]) -> dict[str, int]:
        """How many subscribers each of ``channels`` has (PUBSUB NUMSUB)."""
        counts = await link.call("check held calls",
                                 lambda client: client.pubsub_numsub(*channels))
        return {_text(channel): int(count) for channel, count in counts.items()}

    def _record(self) -> MemberRecord:
        try:
            actors = dict(self._report())
        except Exception:
            log.exception("actor report failed")
            actors = {}
        return MemberRecord(instance_id=self.instance_id, last_heartbeat_at=iso(utc_now()),
                            draining=self._draining, actors=actors, url=self.url)

    def _announce(self, event: HintEvent) -> None:
        self._outbox.put(self._keys.broadcast, Hint(self.instance_id, event))

    def _dispatch(self, frame: Frame) -> None:
        """Route one frame from the reader (never blocks)."""
        match frame:
            case Request():
                if self._serving is not None and self._link is not None:
                    self._rpc.serve_soon(self._serving, frame)
            case Reply() | Failure():
                self._rpc.on_reply(frame)
            case Message():
                self._deliver(frame)
            case Hint(sender=sender) if sender != self.instance_id:
                self._wake_heartbeat()

    def _wake_heartbeat(self) -> None:
        self._wake.set()

    def _deliver(self, message: Message) -> None:
        for handler in self._topics.get(message.topic, ()):
            try:
                handler(message.sender, message.payload)
            except Exception:
                log.exception("topic handler failed", extra={"topic": message.topic})

    async def _deliver_local(self) -> None:
        while True:
            self._deliver(await self._local.receive())
