"""Supervisors with Erlang/OTP semantics, built on one Trio nursery each.

A supervisor starts its children in order, each after the previous one reported started,
and watches them. When one exits it applies the child's restart type (permanent,
transient, temporary) and its own strategy (one_for_one, one_for_all, rest_for_one),
waits an exponential backoff, and restarts. More restarts than its intensity allows make
it stop every child and fail to its parent with :class:`RestartIntensityExceeded`.

Children never share fate through the nursery: each runs in a wrapper task that catches
its exception and reports the exit on an internal channel that only the supervisor reads.

Shutdown is ordered: reverse start order; each child is asked to stop
(``request_stop``), given ``shutdown_timeout`` seconds, then cancelled, and waited for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from lcx.errors import RestartIntensityExceeded
from lcx.runtime.actor import Actor, ActorProcess
from lcx.runtime.mailbox import Mailbox
from lcx.runtime.policy import Backoff, Intensity, Restart, RestartWindow, Strategy
from lcx.runtime.ref import ActorRef
from lcx.runtime.registry import Registry

log = logging.getLogger("lcx.runtime")


class Child(Protocol):
    """Anything a supervisor can run: an actor incarnation or another supervisor."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Run until done; call ``task_status.started()`` once ready."""

    def request_stop(self) -> None:
        """Begin a graceful stop; ``run`` should return soon after."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start (and restart) one child, and how to treat its exits."""

    id: str
    start: Callable[[], Child]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    kind: str = "actor"
    ref: ActorRef | None = None
    """For actor children: the stable ref whose mailbox outlives restarts."""


def actor_child(id: str, factory: Callable[[], Actor], *, kind: str | None = None,
                mailbox_size: int = 100, restart: Restart = Restart.PERMANENT,
                shutdown_timeout: float = 5.0) -> ChildSpec:
    """A child spec for an actor whose behaviour ``factory`` builds anew at each start.

    The spec's ``ref`` is the actor's address for its whole life under the supervisor.
    """
    actor_kind = kind or id
    ref = ActorRef(actor_kind, id, Mailbox(mailbox_size))

    async def activate() -> Actor:
        return factory()

    return ChildSpec(id=id, start=lambda: ActorProcess(ref, activate), restart=restart,
                     shutdown_timeout=shutdown_timeout, kind=actor_kind, ref=ref)


def supervisor_child(supervisor: Supervisor, *, restart: Restart = Restart.PERMANENT,
                     shutdown_timeout: float = math.inf) -> ChildSpec:
    """A child spec for a nested supervisor (which restarts by running again)."""
    return ChildSpec(id=supervisor.name, start=lambda: supervisor, restart=restart,
                     shutdown_timeout=shutdown_timeout, kind="supervisor")


class _ReadySignal:
    """The ``task_status`` handed to a child: marks its incarnation ready."""

    def __init__(self, ready: trio.Event) -> None:
        self._ready = ready

    def started(self, value: Any = None) -> None:
        self._ready.set()


@dataclass(eq=False)
class _Slot:
    spec: ChildSpec
    current: _Incarnation | None = None
    restarts: int = 0
    consecutive: int = 0
    terminated: bool = False


@dataclass(eq=False)
class _Incarnation:
    slot: _Slot
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ready: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    child: Child | None = None
    started_at: float | None = None
    error: Exception | None = None
    stopping: bool = False


@dataclass(frozen=True)
class ChildInfo:
    """What ``which_children`` reports of one child."""

    id: str
    kind: str
    running: bool
    restarts: int


class _Stop:
    pass


_STOP = _Stop()


class Supervisor:
    """Starts, watches and restarts children; see the module docstring for the rules."""

    def __init__(self, name: str, children: Sequence[ChildSpec] = (), *,
                 strategy: Strategy = Strategy.ONE_FOR_ONE,
                 intensity: Intensity | None = None, backoff: Backoff | None = None,
                 registry: Registry | None = None) -> None:
        ids = [spec.id for spec in children]
        if len(ids) != len(set(ids)):
            raise ValueError(f"supervisor {name}: child ids must be unique: {ids}")
        self.name = name
        self.strategy = strategy
        self.intensity = intensity or Intensity()
        self.backoff = backoff or Backoff()
        self.registry = registry or Registry()
        self._specs = list(children)
        self._slots: list[_Slot] = []
        self._nursery: trio.Nursery | None = None
        self._events: trio.MemorySendChannel[_Incarnation | _Stop] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<Supervisor {self.name} {self.strategy.value}>"

    @property
    def running(self) -> bool:
        """Whether the supervisor is between start and stop."""
        return self._nursery is not None

    def which_children(self) -> list[ChildInfo]:
        """The children in start order, with whether they run and how often they restarted."""
        return [ChildInfo(s.spec.id, s.spec.kind, s.current is not None, s.restarts)
                for s in self._slots]

    def request_stop(self) -> None:
        """Stop every child in reverse start order, then return from ``run``. Idempotent."""
        self._stopping = True
        if self._events is not None:
            self._events.send_nowait(_STOP)

    async def start_child(self, spec: ChildSpec) -> None:
        """Add a child to a running supervisor and wait until it reports started.

        Raises:
            ValueError: a child with this id exists.
            RuntimeError: the supervisor is not running.
        """
        if self._nursery is None or self._stopping:
            raise RuntimeError(f"supervisor {self.name} is not running")
        if any(s.spec.id == spec.id for s in self._slots):
            raise ValueError(f"supervisor {self.name} already has a child {spec.id}")
        self._specs.append(spec)
        slot = self._add_slot(spec)
        await self._spawn(slot, 0.0, None).ready.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start the children in order, report started, then supervise until stopped.

        Raises:
            RestartIntensityExceeded: too many restarts; every child was stopped first.
        """
        send, receive = trio.open_memory_channel[_Incarnation | _Stop](math.inf)
        self._events = send
        self._slots = []
        self._window = RestartWindow(self.intensity)
        failure: RestartIntensityExceeded | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._stopping:
                    send.send_nowait(_STOP)
                for spec in self._specs:
                    if self._stopping:
                        break
                    await self._spawn(self._add_slot(spec), 0.0, None).ready.wait()
                task_status.started()
                failure = await self._supervise(receive)
        finally:
            self._nursery = None
            self._events = None
            send.close()
        if failure is not None:
            raise failure

    def _add_slot(self, spec: ChildSpec) -> _Slot:
        slot = _Slot(spec)
        if spec.ref is not None and spec.ref.mailbox.closed:
            spec.ref.mailbox.reopen()
        self._slots.append(slot)
        if spec.ref is not None:
            self.registry.register(spec.ref)
        return slot

    def _spawn(self, slot: _Slot, delay: float, after: trio.Event | None) -> _Incarnation:
        assert self._nursery is not None
        incarnation = _Incarnation(slot)
        slot.current = incarnation
        self._nursery.start_soon(self._run_incarnation, incarnation, delay, after,
                                 name=f"{self.name}/{slot.spec.id}")
        return incarnation

    async def _run_incarnation(self, inc: _Incarnation, delay: float,
                               after: trio.Event | None) -> None:
        try:
            with inc.scope:
                if delay > 0:
                    await trio.sleep(delay)
                if after is not None:
                    await after.wait()
                inc.child = inc.slot.spec.start()
                inc.started_at = trio.current_time()
                self.registry.note_started(inc.slot.spec.kind)
                await inc.child.run(task_status=_ReadySignal(inc.ready))
        except Exception as exc:
            inc.error = exc
        finally:
            if inc.started_at is not None:
                self.registry.note_stopped(inc.slot.spec.kind)
            inc.ready.set()
            inc.done.set()
            if self._events is not None:
                self._events.send_nowait(inc)

    async def _supervise(self, events: trio.MemoryReceiveChannel[_Incarnation | _Stop]
                         ) -> RestartIntensityExceeded | None:
        async for event in events:
            if isinstance(event, _Stop):
                await self._stop_all(close_mailboxes=True)
                return None
            if event.slot.current is not event or event.stopping:
                continue  # an incarnation we stopped on purpose, or an old one
            failure = await self._handle_exit(event)
            if failure is not None:
                return failure
        return None  # pragma: no cover - the channel is never closed while we read it

    async def _handle_exit(self, inc: _Incarnation) -> RestartIntensityExceeded | None:
        slot = inc.slot
        slot.current = None
        crashed = inc.error is not None
        self._report_exit(inc)
        if not slot.spec.restart.wants_restart(crashed):
            self._terminate(slot, forget=slot.spec.restart is Restart.TEMPORARY)
            return None
        if not self._window.admit(trio.current_time()):
            return await self._give_up(inc)
        delay = self._next_delay(slot, inc)
        slot.restarts += 1
        self.registry.note_restart(slot.spec.kind)
        group = self._restart_group(slot)
        siblings = [s for s in group if s is not slot]
        await self._stop_slots(reversed(siblings))
        self._start_in_order(slot, group, delay)
        return None

    def _restart_group(self, slot: _Slot) -> list[_Slot]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [slot]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._slots)
        return self._slots[self._slots.index(slot):]

    def _start_in_order(self, crashed: _Slot, group: list[_Slot], delay: float) -> None:
        after: trio.Event | None = None
        for slot in group:
            if slot is not crashed and slot.spec.restart is Restart.TEMPORARY:
                self._terminate(slot, forget=True)  # OTP: temporary siblings are not restarted
                continue
            if slot.terminated:
                continue
            after = self._spawn(slot, delay, after).ready

    def _next_delay(self, slot: _Slot, inc: _Incarnation) -> float:
        ran_for = 0.0 if inc.started_at is None else trio.current_time() - inc.started_at
        if ran_for >= self.backoff.reset_after_seconds:
            slot.consecutive = 0
        slot.consecutive += 1
        return self.backoff.delay(slot.consecutive)

    async def _give_up(self, inc: _Incarnation) -> RestartIntensityExceeded:
        limit = self.intensity
        failure = RestartIntensityExceeded(
            f"supervisor {self.name}: more than {limit.max_restarts} restarts in "
            f"{limit.period_seconds:g}s (last: {inc.slot.spec.id})")
        failure.__cause__ = inc.error
        log.error("supervisor gave up", extra={"supervisor": self.name,
                                               "actor": inc.slot.spec.id,
                                               "kind": inc.slot.spec.kind})
        await self._stop_all(close_mailboxes=False)
        return failure

    async def _stop_all(self, *, close_mailboxes: bool) -> None:
        await self._stop_slots(reversed(self._slots))
        if close_mailboxes:
            for slot in list(self._slots):
                self._terminate(slot, forget=False)

    async def _stop_slots(self, slots: Iterable[_Slot]) -> None:
        for slot in slots:
            inc = slot.current
            if inc is not None:
                await self._stop_incarnation(inc)
                slot.current = None

    async def _stop_incarnation(self, inc: _Incarnation) -> None:
        inc.stopping = True
        if inc.done.is_set():
            return
        if inc.child is None:
            inc.scope.cancel()
        else:
            inc.child.request_stop()
        with trio.move_on_after(inc.slot.spec.shutdown_timeout):
            await inc.done.wait()
        if not inc.done.is_set():
            log.warning("child did not stop in time; cancelling",
                        extra={"supervisor": self.name, "actor": inc.slot.spec.id})
            inc.scope.cancel()
            await inc.done.wait()
        if inc.error is not None:
            log.error("child failed while stopping", exc_info=inc.error,
                      extra={"supervisor": self.name, "actor": inc.slot.spec.id})

    def _terminate(self, slot: _Slot, *, forget: bool) -> None:
        slot.terminated = True
        ref = slot.spec.ref
        if ref is not None:
            ref.mailbox.close()
            self.registry.unregister(ref)
        if forget and slot in self._slots:
            self._slots.remove(slot)
            self._specs.remove(slot.spec)

    def _report_exit(self, inc: _Incarnation) -> None:
        spec = inc.slot.spec
        fields = {"supervisor": self.name, "actor": spec.id, "kind": spec.kind,
                  "restarts": inc.slot.restarts}
        if inc.error is not None:
            self.registry.note_crash(spec.kind)
            log.error("actor crashed", exc_info=inc.error, extra=fields)
        else:
            log.info("actor exited", extra=fields)
