"""The delivery service: outbox events to bots and flow triggers, at least once, in order.

A *lane* is the events of one conversation to one target (:class:`~lcx.store.outbox.Lane`).
A lane delivers strictly in ``event_no`` order: the next event is POSTed only after the
previous one got a 2xx or died. Lanes run concurrently, each run, while it delivers, by
one of a pool of worker tasks (parked between lanes: no task is spawned per lane) and
holding one slot of its tenant (``per_tenant``) and one global slot (``total``); a tenant
at its limit is left out of the scan, so a slow or dead bot of tenant A uses at most A's
slots and never delays tenant B.

::

    commit ------rows, in memory (hand-off)--------+
    wake(c) --lane heads of c--+                   |
                               v                   v
    scheduler  --scan (due_lanes)-->  lane task --POST--> bot
       ^  lane exit / timer                |  2xx: next event     5xx...: park (retry later)
       +-----------------------------------+  4xx or out of attempts: dead, next event

Committed events are handed over in memory: :func:`~lcx.store.outbox.enqueue` announces
each row to the store's commit listeners (``Store.on_commit``), and right after the
commit the service gives the rows to their lanes, without reading them back, when memory
knows they are all the lane has pending: the lane read the store, or drained, and every
commit of its conversation since then was handed over (``event_no`` follows on: see
``_LaneState.through``). A running lane queues them; a drained one starts from them. A
commit memory cannot vouch for (the first after a (re)start, another instance's writes
in between, a lane that parked or was left out for want of a slot) hints the
conversation instead, whose lanes then read the store. So the store stays the state:
a crash, a takeover or a failed attempt finds the rows there.

``wake(conversation_id)``, called after each commit that enqueued events, has nothing to
do when the commit was handed over in full; otherwise it starts that conversation's
lanes from their first pending events (one indexed lookup per lane, all hinted
conversations in one read), so the hot path never scans the outbox; a lane already
delivering looks once more before it ends, and one that finds its tenant's slots taken
waits in its tenant's queue and is woken again when a slot frees up. The full scan
(:func:`due_lane_heads`) runs every ``scan_interval``, when a parked lane is due, and when a
slot frees up that lanes found by a scan waited for: it finds everything the wakes did
not announce (a restart, replays, other instances' leftovers).

A lane reads up to :data:`LANE_READ` events at a time and delivers them from memory; the
store stays the state. 2xx answers are recorded in batches by one marker task (one
transaction for every answer that came in within ``mark_gather`` of the first one or while
the previous batch committed): a lane does
not wait for its event's mark before it POSTs the next one, and it remembers, until the
mark commits, how far it got (``_unmarked``), so that it never reads a delivered event
back. Failures (retry, dead letter) are recorded at once, before the lane goes on.

The outbox row is the state (attempts, ``next_attempt_at``, status); memory only holds
what is being delivered. A lane whose head waits for a retry is *parked*: its task ends
and the scheduler starts it again when the head is due (it sleeps until the earliest
``next_attempt_at``, at most ``scan_interval``). After a crash a new service picks
everything up from the store: an event whose 2xx was not recorded yet (a batch not yet
committed) is delivered again, with the same ``Idempotency-Key`` and in order, which
at-least-once allows. Stopping records every answer received (shielded from
cancellation); a POST cancelled mid-flight is simply attempted again later.

In a cluster every instance runs a delivery service, and each delivers only the lanes of
the conversations it owns (``owns``), so a lane has one deliverer and keeps its order;
when ownership moves, the new owner picks the lane up from the store.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import trio

from adapters.bot_events import BotClient, Delivered, Outcome, Reject, Retry, open_bot_client
from lcx.config import DeliveryConfig, TenantConfig
from lcx.errors import StoreError
from lcx.logs import bind
from lcx.model import iso, parse_iso, utc_now
from lcx.runtime.policy import Backoff
from lcx.store import Store, Tx
from lcx.store.outbox import (
    TARGET_BOT,
    TARGET_FLOW,
    Lane,
    LanePosition,
    OutboxEvent,
    OutboxRow,
    due_lane_heads,
    mark_all_delivered,
    mark_dead,
    mark_retry,
    next_due_at,
    pending_in_lanes,
)

__all__ = ["LANE_READ", "BotOpener", "DeliveryLimits", "DeliveryService",
           "DeliveryStatistics"]

log = logging.getLogger("lcx.delivery")

BotOpener = Callable[[], AbstractAsyncContextManager[BotClient]]
"""Opens the shared :class:`BotClient` for the life of one :meth:`DeliveryService.run`."""


_CLUSTER_SCAN_FACTOR = 8
LANE_READ = 16
"""Pending events a lane reads at a time (then delivers from memory)."""
_MARK_RETRY_SECONDS = 1.0
"""Pause before the marker tries a batch again after a store failure."""
_KNOWN_LIMIT = 65536
"""Conversations (and lanes) whose hand-off state the service remembers; the oldest is
forgotten beyond it (its next commit is then looked up in the store: slower, not wrong)."""

K = TypeVar("K")
V = TypeVar("V")

Sender = Callable[[OutboxRow], Awaitable[Outcome]]
"""Carries out one outbox row of a non-HTTP target; never raises for the edge's failures."""


@dataclass(frozen=True)
class DeliveryLimits:
    """Concurrency and pacing of a :class:`DeliveryService`."""

    per_tenant: int = 4
    """Lanes of one tenant delivering at once."""
    total: int = 64
    """Lanes delivering at once, all tenants together."""
    scan_interval: float = 1.0
    """Longest pause between two scans of the outbox, in seconds."""
    scan_batch: int = 256
    """Due lanes read per scan (on top of those already running)."""
    stop_grace: float = 3.0
    """Seconds in-flight POSTs get to finish after :meth:`DeliveryService.request_stop`."""
    mark_gather: float = 0.2
    """Seconds the marker waits after a 2xx before it records it, so that the answers of
    that moment share one transaction (at 200 events/s: one store write, one fsync, for
    forty instead of one each; at most five a second). Only a crash within it costs
    anything: those events are delivered again, with their Idempotency-Key, as
    at-least-once allows."""

    def __post_init__(self) -> None:
        """Raises ValueError for a limit below 1 or a pause that is not positive."""
        if min(self.per_tenant, self.total, self.scan_batch) < 1:
            raise ValueError("delivery limits must be at least 1")
        if self.scan_interval <= 0 or self.stop_grace < 0 or self.mark_gather < 0:
            raise ValueError("scan_interval must be positive, stop_grace and mark_gather "
                             "not negative")


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    """Counters since the service was built (``in_flight``/``active_lanes``: right now)."""

    delivered: int
    retried: int
    dead: int
    rejected_auth: int
    """Dead at once because the receiver answered 401 or 403 (worth an alert)."""
    in_flight: int
    active_lanes: int


@dataclass
class _Counters:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    rejected_auth: int = 0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class _Mark:
    """A 2xx answer not recorded yet."""

    lane: tuple[str, str]
    event_no: int
    event_id: str
    attempts: int
    delivered_at: str


class _LaneState:
    """What a running lane holds in memory: its next events, and how far they are all the
    lane has pending.

    ``exact``: the queue holds every pending event of the lane that the last read found
    (a read of :data:`LANE_READ` may have left more behind: then it reads on).
    ``through`` is the conversation's ``event_no`` up to which the queue is exact: every
    pending event of the lane numbered up to it is queued (or handled). A read sets it to
    the last ``event_no`` of the conversation announced before the read began (the read
    sees those commits, and whatever is committed later is numbered higher); a hand-off
    moves it on only from the commit right after it. ``None``: not exact (a read cut
    short, a read under way, or nothing announced yet).
    """

    __slots__ = ("exact", "last_no", "queued", "through")

    def __init__(self, rows: list[OutboxRow], exact: bool, through: int | None) -> None:
        self.queued: deque[OutboxRow] = deque(rows)
        self.exact = exact
        self.through = through if exact else None
        self.last_no = rows[-1].event_no if rows else -1
        """The highest ``event_no`` this lane has queued (handed-off events at or below it
        came in through a read already)."""

    def extend(self, rows: list[OutboxRow], *, through: int | None) -> None:
        """Queue rows read from the store (``through``: as of the read's start)."""
        self.queued.extend(rows)
        if rows:
            self.last_no = max(self.last_no, rows[-1].event_no)
        self.exact = len(rows) < LANE_READ
        self.through = through if self.exact else None

    def hand_off(self, rows: list[OutboxRow]) -> None:
        """Queue committed rows handed over in memory."""
        for row in rows:
            if row.event_no > self.last_no:
                self.queued.append(row)
                self.last_no = row.event_no


class _Worker:
    """A lane worker's task, and the lane it is handed when it is woken."""

    __slots__ = ("job", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.job: tuple[Lane, bool] | None = None


def _remember(table: dict[K, V], key: K, value: V) -> None:
    """Insert ``key`` last (the most recent), forgetting the oldest beyond the limit."""
    table.pop(key, None)
    table[key] = value
    if len(table) > _KNOWN_LIMIT:
        del table[next(iter(table))]


@dataclass(frozen=True)
class _Target:
    url: str
    secret: str
    bearer: str


class DeliveryService:
    """Delivers the outbox; a supervised service (``run`` + ``request_stop``).

    ``tenants`` maps tenant ids to their config (looked up at each attempt, so a fixed URL
    or secret applies to retries and replays). ``client`` is a shared :class:`BotClient`
    owned by the caller; without one, ``open_client`` opens one per :meth:`run`. ``now``
    is the wall clock of ``next_attempt_at`` (injectable for tests).
    """

    def __init__(self, store: Store, tenants: Mapping[str, TenantConfig],
                 config: DeliveryConfig, client: BotClient | None = None, *,
                 open_client: BotOpener = open_bot_client,
                 limits: DeliveryLimits | None = None,
                 now: Callable[[], datetime] = utc_now,
                 owns: Callable[[str], bool] | None = None,
                 senders: Mapping[str, Sender] | None = None) -> None:
        self._store = store
        self._senders = dict(senders or {})
        """Targets other than the bot and the flows (edge commands for channels and
        providers), each with the function that carries a row out."""
        self._owns = owns
        """In a cluster, whether this instance owns a conversation (and so delivers its
        lanes: one deliverer per lane keeps its order); None: every lane is ours."""
        self._tenants = tenants
        self._config = config
        self._limits = limits or DeliveryLimits()
        self._given_client = client
        self._open_client = open_client
        self._client: BotClient | None = client
        self._now = now
        self._backoff = Backoff(initial_seconds=config.initial_backoff_ms / 1000,
                                maximum_seconds=config.max_backoff_ms / 1000, jitter=0.2)
        self._counters = _Counters()
        self._active: dict[tuple[str, str], str] = {}
        self._lanes: dict[tuple[str, str], _LaneState] = {}
        """The running lanes' queues (the events handed over after commit join them)."""
        self._announced: dict[str, int] = {}
        """Per conversation, the last ``event_no`` of its commits announced to this run
        (what a lane read that starts now is exact through)."""
        self._drained: dict[tuple[str, str], tuple[int, int]] = {}
        """Lanes that ended with nothing pending: the last ``event_no`` each queued, and
        its ``through`` (see :class:`_LaneState`). A commit right after ``through`` is then
        all the lane has pending: it is handed over, no read needed."""
        self._covered: set[str] = set()
        """Conversations whose last commit was handed to their lanes in full: the
        ``wake`` that follows it has nothing left to do."""
        self._nursery: trio.Nursery | None = None
        self._per_tenant: Counter[str] = Counter()
        self._targets = (TARGET_BOT, TARGET_FLOW, *self._senders)
        """Every target a conversation can have a lane to (those ``wake`` looks at)."""
        self._target_set = frozenset(self._targets)
        self._kick = trio.Event()
        self._hinted: set[str] = set()
        """Conversations woken since the scheduler last looked."""
        self._waiting: dict[str, dict[tuple[str, str], _LaneState | None]] = {}
        """Per tenant, woken lanes that found its slots taken, oldest first (woken again
        as slots free up, without a scan of the outbox); with the rows handed over to them
        meanwhile, or ``None``: read them then."""
        self._recheck: set[tuple[str, str]] = set()
        self._rescan = False
        """A scan is wanted as soon as a lane ends (a lane parked, or lanes were left out
        for want of room)."""
        self._scan_now = True
        self._scan_at = 0.0
        """``trio.current_time()`` of the next full scan."""
        self._marks: list[_Mark] = []
        """2xx answers waiting for the marker."""
        self._marks_waiting = trio.Event()
        self._unmarked: dict[tuple[str, str], int] = {}
        """Per lane, the last event delivered whose mark is not committed yet: reads of
        the lane start after it."""
        self._lane_exited = trio.Event()
        self._idle: list[_Worker] = []
        """Lane workers parked until a lane is started (``_dispatch``)."""
        self._stop = trio.Event()
        self._stopping = False

    def wake(self, conversation_id: str | None = None) -> None:
        """Hint that events were committed for ``conversation_id`` (``None``: somewhere):
        start its lanes now (scan the whole outbox now).

        Never blocks and never raises; calls coalesce into one read. Call it from the Trio
        thread, after the transaction that enqueued the events committed. Events are found
        by the periodic scan anyway; this only removes the wait.
        """
        if conversation_id is None:
            self._scan_now = True
            # e.g. dead events replayed: look in the store before trusting memory
            self._drained.clear()
            for waiting in self._waiting.values():
                waiting.update(dict.fromkeys(waiting))
        elif conversation_id in self._covered:
            self._covered.discard(conversation_id)  # its lanes have the events already
            return
        else:
            self._hinted.add(conversation_id)
        self._kick.set()

    def statistics(self) -> DeliveryStatistics:
        """A snapshot of the counters (for metrics)."""
        c = self._counters
        return DeliveryStatistics(delivered=c.delivered, retried=c.retried, dead=c.dead,
                                  rejected_auth=c.rejected_auth, in_flight=c.in_flight,
                                  active_lanes=len(self._active))

    def request_stop(self) -> None:
        """Stop starting POSTs; in-flight ones get ``stop_grace`` seconds. Idempotent."""
        self._stopping = True
        self._stop.set()
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Deliver until stopped. Started once the bot client is open.

        Store failures are logged and retried at the next scan; other exceptions are bugs
        and propagate (the supervisor restarts the service, which resumes from the store).
        """
        self._stop, self._stopping = trio.Event(), False
        self._scan_now = True  # first scan at once
        self._kick.set()
        self._marks, self._unmarked = [], {}  # what a previous run did not record is redone
        self._waiting, self._idle = {}, []
        # what memory knew is worth nothing once commits were not handed over meanwhile
        self._announced, self._drained, self._covered = {}, {}, set()
        async with self._client_context() as client:
            self._client = client
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    unlisten = self._store.on_commit(self._committed)
                    try:
                        nursery.start_soon(self._schedule, nursery)
                        nursery.start_soon(self._mark_delivered)
                        task_status.started()
                        await self._stop.wait()
                        with trio.move_on_after(self._limits.stop_grace):
                            await self._lanes_finished()
                        nursery.cancel_scope.cancel()
                    finally:
                        unlisten()
                        self._nursery = None
            finally:
                with trio.CancelScope(shield=True):
                    await self._record_marks()

    def _client_context(self) -> AbstractAsyncContextManager[BotClient]:
        if self._given_client is not None:
            return nullcontext(self._given_client)
        return self._open_client()

    async def _lanes_finished(self) -> None:
        while self._active:
            self._lane_exited = trio.Event()
            await self._lane_exited.wait()

    # --- hand-off after commit -------------------------------------------------------

    def _committed(self, announced: Sequence[object]) -> None:
        """Store listener (Trio thread, after a commit): hand the committed outbox events
        to their lanes, when memory knows that they are all those lanes have pending;
        otherwise hint the conversation (its lanes are read from the store)."""
        if self._stopping or self._nursery is None:
            return
        by_conversation: dict[str, list[OutboxRow]] = {}
        for item in announced:
            if isinstance(item, OutboxEvent):
                by_conversation.setdefault(item.conversation_id, []).append(
                    OutboxRow.from_event(item))
        for conversation_id, rows in by_conversation.items():
            self._hand_off(self._nursery, conversation_id, rows)

    def _hand_off(self, nursery: trio.Nursery, conversation_id: str,
                  rows: list[OutboxRow]) -> None:
        """Give one commit's rows of a conversation to its lanes (see :meth:`_committed`):
        to those that know they hold everything up to this commit; the others read."""
        if self._owns is not None and not self._owns(conversation_id):
            # its owner delivers it, from the store; what this instance knew goes stale
            self._announced.pop(conversation_id, None)
            for target in self._targets:
                self._drained.pop((conversation_id, target), None)
            return
        by_target: dict[str, list[OutboxRow]]
        if len(rows) == 1:  # the common commit: one event, to one lane
            by_target = {rows[0].target: rows}
        else:
            rows.sort(key=lambda row: row.event_no)
            by_target = {}
            for row in rows:
                by_target.setdefault(row.target, []).append(row)
        before, last = rows[0].event_no - 1, rows[-1].event_no
        _remember(self._announced, conversation_id, last)
        read_needed = False
        waiting = self._waiting.get(rows[0].tenant_id, {})
        targets: Iterable[str] = self._targets
        if not self._target_set.issuperset(by_target):
            targets = dict.fromkeys((*self._targets, *by_target))
        for target in targets:
            key = (conversation_id, target)
            lane_rows = by_target.get(target, [])
            state = self._lanes.get(key)
            if state is not None:
                if state.through == before:
                    state.hand_off(lane_rows)
                    state.through = last
                elif lane_rows:
                    self._recheck.add(key)  # it reads again before it ends
                continue
            if key in waiting:  # for a slot of its tenant
                held = waiting[key]
                if held is not None and held.through == before:
                    held.hand_off(lane_rows)
                    held.through = last
                elif lane_rows:
                    waiting[key] = None  # it reads the store when it starts
                continue
            drained = self._drained.pop(key, None)
            if drained is None or drained[1] != before:
                read_needed = read_needed or bool(lane_rows)  # memory does not know enough
                continue
            queued_last = drained[0]
            if lane_rows and lane_rows[0].event_no <= queued_last:
                # a lane read some of these rows before this hand-off came: not twice
                lane_rows = [row for row in lane_rows if row.event_no > queued_last]
            if lane_rows:
                self._start_lane(nursery, Lane(conversation_id, target,
                                               lane_rows[0].tenant_id), lane_rows,
                                 exact=True, through=last, handed=True)
            else:
                self._drained[key] = (queued_last, last)
        if read_needed:
            self._covered.discard(conversation_id)
            self._hinted.add(conversation_id)
            self._kick.set()
        else:
            self._covered.add(conversation_id)

    # --- scheduling ---------------------------------------------------------------------

    async def _schedule(self, nursery: trio.Nursery) -> None:
        while not self._stopping:
            await self._wait_for_work()
            if self._stopping:
                return
            self._covered.clear()  # a wake follows its commit at once, or never
            try:
                if self._hinted:
                    await self._start_hinted(nursery)
                if self._scan_now or trio.current_time() >= self._scan_at:
                    self._scan_now = False
                    next_due = await self._scan(nursery)
                    pause = self._limits.scan_interval
                    if next_due is not None:
                        pause = min(pause, max(0.0, next_due))
                    self._scan_at = trio.current_time() + pause
            except StoreError:
                log.warning("delivery scan failed; retrying", exc_info=True)
                self._scan_at = trio.current_time() + self._limits.scan_interval

    async def _wait_for_work(self) -> None:
        with trio.move_on_at(self._scan_at):
            await self._kick.wait()
        self._kick = trio.Event()

    async def _start_hinted(self, nursery: trio.Nursery) -> None:
        """Start the lanes of the woken conversations with their pending events, read at
        once."""
        wanted: list[LanePosition] = []
        # what each lane read is exact through (commits announced later are numbered higher)
        through = {conversation_id: self._announced.get(conversation_id)
                   for conversation_id in self._hinted}
        for conversation_id in self._hinted:
            if self._owns is not None and not self._owns(conversation_id):
                continue
            for target in self._targets:
                key = (conversation_id, target)
                if key in self._active:
                    self._recheck.add(key)  # the lane looks again before it ends
                else:
                    wanted.append(self._position(key))
        self._hinted.clear()
        if not wanted:
            return
        found = await self._store.read(partial(pending_in_lanes, lanes=wanted,
                                               per_lane=LANE_READ))
        now = iso(self._now())
        by_lane: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in found:
            by_lane.setdefault((row.conversation_id, row.target), []).append(row)
        for key, rows in by_lane.items():
            if (drained := self._drained.get(key)) is not None:
                # read before its lane delivered them and ended: not twice
                rows = [row for row in rows if row.event_no > drained[0]]
                if not rows:
                    continue
            head = rows[0]
            if head.next_attempt_at <= now:  # else parked: the scan's timer knows it
                self._start_lane(nursery, Lane(head.conversation_id, head.target,
                                               head.tenant_id), rows,
                                 exact=len(rows) < LANE_READ,
                                 through=through.get(head.conversation_id))

    def _position(self, key: tuple[str, str]) -> LanePosition:
        """Where reads of lane ``key`` start: after its last delivered, unrecorded event."""
        return LanePosition(*key, self._unmarked.get(key, -1))

    async def _scan(self, nursery: trio.Nursery) -> float | None:
        """Start the due lanes there is room for; seconds until the next parked one is due."""
        if len(self._active) >= self._limits.total:
            self._rescan = True
            return None
        full = [t for t, n in self._per_tenant.items() if n >= self._limits.per_tenant]
        now = self._now()
        # in a cluster most due lanes belong to other instances: look further
        reach = self._limits.scan_batch * (_CLUSTER_SCAN_FACTOR if self._owns else 1)
        limit = reach + len(self._active)

        def scan(tx: Tx) -> tuple[list[tuple[Lane, int]], str | None]:
            return (due_lane_heads(tx, iso(now), limit, exclude_tenants=full),
                    next_due_at(tx, iso(now)))

        lanes, due_at = await self._store.read(scan)
        for lane, head in lanes:
            # a head this service already delivered (its 2xx waits for the marker) is
            # not due: starting the lane would read it back for nothing and forget what
            # the lane knew (its next commit would then be read, not handed over)
            if head <= self._unmarked.get((lane.conversation_id, lane.target), -1):
                continue
            self._start_lane(nursery, lane)
        return None if due_at is None else (parse_iso(due_at) - now).total_seconds()

    def _start_lane(self, nursery: trio.Nursery, lane: Lane,
                    rows: list[OutboxRow] | None = None, *, exact: bool = False,
                    through: int | None = None, handed: bool = False) -> None:
        """Start delivering ``lane`` (from ``rows``, its first pending events, if known;
        ``exact`` and ``through``: see :class:`_LaneState`; ``handed``: the rows came
        from memory, not from a read that may be stale by now)."""
        key = (lane.conversation_id, lane.target)
        self._drained.pop(key, None)  # found due, or started: no longer known to be empty
        if self._owns is not None and not self._owns(lane.conversation_id):
            return
        if key in self._active:
            self._recheck.add(key)  # it may end before it sees what made it due: look again
            return
        if len(self._active) >= self._limits.total:
            self._rescan = True
            return
        tenant_lanes = self._per_tenant.get(lane.tenant_id, 0)
        if tenant_lanes >= self._limits.per_tenant:
            if rows is not None:  # woken: woken again when its tenant has a free slot
                self._waiting.setdefault(lane.tenant_id, {})[key] = \
                    _LaneState(rows, exact, through) if handed else None
            else:
                self._rescan = True
            return
        waiting = self._waiting.get(lane.tenant_id)
        if waiting is not None:
            waiting.pop(key, None)
            if not waiting:
                del self._waiting[lane.tenant_id]
        self._active[key] = lane.tenant_id
        self._per_tenant[lane.tenant_id] = tenant_lanes + 1
        self._lanes[key] = _LaneState(rows or [], exact and rows is not None, through)
        self._dispatch(nursery, lane, rows is None)

    def _release(self, lane: Lane, drained: bool) -> None:
        key = (lane.conversation_id, lane.target)
        del self._active[key]
        state = self._lanes.pop(key)
        if drained and not self._stopping and state.through is not None:
            _remember(self._drained, key, (state.last_no, state.through))
        self._per_tenant[lane.tenant_id] -= 1
        if not self._per_tenant[lane.tenant_id]:
            del self._per_tenant[lane.tenant_id]
        self._lane_exited.set()
        if waiting := self._waiting.get(lane.tenant_id):
            # a slot of this tenant is free: start the lane that waited longest for one,
            # from the rows handed to it meanwhile, or wake it (the scheduler reads it)
            first = next(iter(waiting))
            held = waiting.pop(first)
            if not waiting:
                del self._waiting[lane.tenant_id]
            if held is not None and self._nursery is not None and not self._stopping:
                self._start_lane(self._nursery, Lane(*first, lane.tenant_id),
                                 list(held.queued), exact=held.exact, through=held.through,
                                 handed=True)
            else:
                self._hinted.add(first[0])
                self._kick.set()
        # look again only if this lane was found due or woken while it ran (it may have
        # ended before it saw why), or scan if lanes were left out for want of room or a
        # lane parked (its retry time must join the scheduler's timer); otherwise the next
        # wake() or the periodic scan looks
        if key in self._recheck:
            self._recheck.discard(key)
            self._hinted.add(lane.conversation_id)
            self._kick.set()
        if self._rescan:
            self._rescan = False
            self._scan_now = True
            self._kick.set()

    # --- one lane -----------------------------------------------------------------------

    def _dispatch(self, nursery: trio.Nursery, lane: Lane, read_first: bool) -> None:
        """Run a started lane on an idle worker, or on a new one when none is idle."""
        if self._idle:
            worker = self._idle.pop()  # the most recently used: its frames are warm
            worker.job = (lane, read_first)
            trio.lowlevel.reschedule(worker.task)
        else:
            nursery.start_soon(self._work, lane, read_first)

    async def _work(self, lane: Lane, read_first: bool) -> None:
        """A lane worker: runs one started lane after the other and waits, parked, for
        the next between them (a task is spawned only when every worker is busy: at most
        ``total`` of them)."""
        worker = _Worker(trio.lowlevel.current_task())
        while True:
            await self._run_lane(lane, read_first)
            if self._stopping:
                return
            self._idle.append(worker)

            def abort(_: object, worker: _Worker = worker) -> trio.lowlevel.Abort:
                self._idle.remove(worker)  # never handed a lane: there is none to run
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            assert worker.job is not None
            (lane, read_first), worker.job = worker.job, None

    async def _run_lane(self, lane: Lane, read_first: bool) -> None:
        """Deliver the lane's due events in order, from its queue (read first if
        ``read_first``; events handed over after commit join it), until it is empty,
        parked or stopping."""
        key = (lane.conversation_id, lane.target)
        state = self._lanes[key]
        drained = False
        try:
            if read_first:
                await self._read_lane(key, state)
            while not self._stopping:
                if not state.queued:
                    # a full read may have left events behind, and a woken lane looks
                    # once more: otherwise the queue was all the lane had
                    if state.exact and key not in self._recheck:
                        drained = True
                        return
                    self._recheck.discard(key)
                    await self._read_lane(key, state)
                    continue
                row = state.queued[0]
                if row.next_attempt_at > iso(self._now()):
                    return
                outcome = await self._attempt(row)
                if isinstance(outcome, Delivered):
                    self._delivered(row)  # nothing awaited: no shield needed
                else:
                    with trio.CancelScope(shield=True):
                        if not await self._record(row, outcome):
                            return
                state.queued.popleft()
        except StoreError:
            with bind(conversationId=lane.conversation_id, tenantId=lane.tenant_id):
                log.warning("delivery lane failed on the store; retrying later",
                            exc_info=True)
        finally:
            self._release(lane, drained)

    async def _read_lane(self, key: tuple[str, str], state: _LaneState) -> None:
        """Queue the lane's next pending events from the store (its queue is empty)."""
        through = self._announced.get(key[0])
        state.through = None  # commits announced during the read: read again, not handed
        rows = await self._store.read(partial(pending_in_lanes, lanes=[self._position(key)],
                                              per_lane=LANE_READ))
        state.extend(rows, through=through)

    async def _attempt(self, row: OutboxRow) -> Outcome:
        sender = self._senders.get(row.target)
        if sender is not None:
            self._counters.in_flight += 1
            try:
                with bind(conversationId=row.conversation_id, tenantId=row.tenant_id):
                    return await sender(row)
            finally:
                self._counters.in_flight -= 1
        target = self._resolve(row)
        if isinstance(target, Reject):
            return target
        assert self._client is not None
        self._counters.in_flight += 1
        try:
            return await self._client.post(target.url, row.body, event_id=row.id,
                                           secret=target.secret, bearer=target.bearer)
        finally:
            self._counters.in_flight -= 1

    def _resolve(self, row: OutboxRow) -> _Target | Reject:
        """Where and how to POST ``row``, from the tenant's current config."""
        tenant = self._tenants.get(row.tenant_id)
        if tenant is None:
            return Reject(f"unknown tenant {row.tenant_id!r} (not in [[tenants]])")
        if row.target == TARGET_BOT:
            if not tenant.bot_events_url:
                return Reject(f"tenants.{tenant.id}.bot_events_url is empty")
            return _Target(tenant.bot_events_url, tenant.webhook_secret, "")
        if row.target == TARGET_FLOW:
            if not tenant.event_publisher_url:
                return Reject(f"tenants.{tenant.id}.event_publisher_url is empty")
            if not row.url:
                return Reject("flow event without a URL")
            return _Target(row.url, tenant.webhook_secret, tenant.event_publisher_token)
        return Reject(f"unknown delivery target {row.target!r}")

    async def _record(self, row: OutboxRow, outcome: Outcome) -> bool:
        """Record the outcome of one attempt (a 2xx: hand it to the marker); whether the
        lane may go on with its next event."""
        if isinstance(outcome, Delivered):
            self._delivered(row)
            return True
        not_attempted = isinstance(outcome, Retry) and not outcome.attempted
        attempts = row.attempts + (0 if not_attempted else 1)
        if isinstance(outcome, Reject):
            self._counters.rejected_auth += outcome.auth
            await self._bury(row, attempts, outcome.reason)
            return True
        if attempts >= self._config.max_attempts and not not_attempted:
            await self._bury(row, attempts, f"{outcome.reason} (attempt {attempts}, the last)")
            return True
        await self._park(row, attempts, outcome)
        return False

    def _delivered(self, row: OutboxRow) -> None:
        """A 2xx for ``row``: hand it to the marker; reads of its lane start after it."""
        key = (row.conversation_id, row.target)
        self._marks.append(_Mark(key, row.event_no, row.id, row.attempts + 1,
                                 iso(self._now())))
        self._unmarked[key] = row.event_no
        self._marks_waiting.set()
        self._counters.delivered += 1

    async def _mark_delivered(self) -> None:
        """The marker: record the 2xx answers, all those waiting in one transaction."""
        while True:
            await self._marks_waiting.wait()
            if self._limits.mark_gather:
                await trio.sleep(self._limits.mark_gather)  # let the batch fill up
            self._marks_waiting = trio.Event()
            with trio.CancelScope(shield=True):
                recorded = await self._record_marks()
            if not recorded:
                await trio.sleep(_MARK_RETRY_SECONDS)
                self._marks_waiting.set()

    async def _record_marks(self) -> bool:
        """Commit the waiting marks; False (they wait for another try) on a store failure."""
        batch, self._marks = self._marks, []
        if not batch:
            return True
        try:
            await self._store.transaction(partial(mark_all_delivered, marks=[
                (mark.event_id, mark.attempts, mark.delivered_at) for mark in batch]))
        except StoreError:
            log.warning("recording deliveries failed; retrying", exc_info=True)
            self._marks = batch + self._marks
            return False
        for mark in batch:
            if self._unmarked.get(mark.lane) == mark.event_no:
                del self._unmarked[mark.lane]  # else a later event of the lane waits
        return True

    async def _park(self, row: OutboxRow, attempts: int, outcome: Retry) -> None:
        backoff = self._backoff.delay(attempts) if outcome.attempted else 0.0
        delay = max(backoff, outcome.after_seconds or 0.0)
        due = iso(self._now() + timedelta(seconds=delay))
        await self._store.transaction(
            partial(mark_retry, event_id=row.id, attempts=attempts, next_attempt_at=due,
                    error=outcome.reason))
        self._counters.retried += 1
        self._rescan = True
        with bind(conversationId=row.conversation_id, tenantId=row.tenant_id):
            log.info("delivery failed; will retry", extra={
                "eventId": row.id, "attempts": attempts, "retryAt": due,
                "error": outcome.reason})

    async def _bury(self, row: OutboxRow, attempts: int, error: str) -> None:
        """Dead-letter ``row``."""
        await self._store.transaction(partial(mark_dead, event_id=row.id, attempts=attempts,
                                              error=error))
        self._counters.dead += 1
        with bind(conversationId=row.conversation_id, tenantId=row.tenant_id):
            log.warning("event dead-lettered", extra={
                "eventId": row.id, "type": row.type, "target": row.target,
                "attempts": attempts, "error": error})
