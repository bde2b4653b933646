"""The in-process bus: one instance, which is its own only member and its own leader."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import trio

from lcx.cluster.bus import (
    Leadership,
    LeadershipHandler,
    MemberGone,
    MemberInfo,
    MemberSet,
    MembershipHandler,
    RemoteError,
    RpcHandler,
    RpcTimeout,
    TopicHandler,
)
from lcx.model import iso, utc_now


class _LazyReport(Mapping[str, int]):
    """The live-actor report, built only when someone reads it (``/cluster``)."""

    def __init__(self, report: Callable[[], Mapping[str, int]]) -> None:
        self._report = report
        self._built: Mapping[str, int] | None = None

    def _counts(self) -> Mapping[str, int]:
        if self._built is None:
            self._built = dict(self._report())
        return self._built

    def __getitem__(self, kind: str) -> int:
        return self._counts()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts())

    def __len__(self) -> int:
        return len(self._counts())


class LocalBus:
    """A :class:`~lcx.cluster.bus.Bus` for a single instance (no Redis)."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._handlers: dict[str, RpcHandler] = {}
        self._topics: dict[str, list[TopicHandler]] = {}
        self._membership: list[MembershipHandler] = []
        self._leadership_handlers: list[LeadershipHandler] = []
        self._report: Callable[[], Mapping[str, int]] = dict
        self._draining = False
        self._running = False
        self._member_set = MemberSet(0, ())
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Leave (there is nobody to tell) and return from ``run``."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Become the only member and the leader; report started; wait to be stopped."""
        self._stop = trio.Event()
        self._running = True
        self._member_set = MemberSet(self._member_set.version + 1, (self.instance_id,))
        for handler in self._membership:
            handler(self.members())
        for on_leadership in self._leadership_handlers:
            on_leadership(self.leadership())
        task_status.started()
        try:
            await self._stop.wait()
        finally:
            self._running = False
            self._member_set = MemberSet(self._member_set.version + 1, ())
            for on_leadership in self._leadership_handlers:
                on_leadership(None)

    def members(self) -> Mapping[str, MemberInfo]:
        """This instance, while it runs (its actor report is built only when read)."""
        if not self._running:
            return {}
        return {self.instance_id: MemberInfo(self.instance_id, iso(utc_now()), self._draining,
                                             _LazyReport(self._report))}

    def member_set(self) -> MemberSet:
        """This instance while it runs (draining or not: it is the only candidate)."""
        return self._member_set

    def on_membership(self, handler: MembershipHandler) -> None:
        """Register a membership handler (called once at start)."""
        self._membership.append(handler)

    def set_draining(self, draining: bool) -> None:
        """Note that we are draining."""
        self._draining = draining

    def set_report(self, report: Callable[[], Mapping[str, int]]) -> None:
        """What ``members()`` reports as our live actors."""
        self._report = report

    def leadership(self) -> Leadership | None:
        """Ourselves, term 1, while running."""
        return Leadership(self.instance_id, 1) if self._running else None

    def is_leader(self) -> bool:
        """True while running."""
        return self._running

    def on_leadership(self, handler: LeadershipHandler) -> None:
        """Register a leadership handler (called at start and stop)."""
        self._leadership_handlers.append(handler)

    def handle(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method``."""
        self._handlers[method] = handler

    async def request(self, instance_id: str, method: str, payload: bytes, *,
                      timeout: float) -> bytes:
        """Call our own handler (the only instance there is)."""
        if instance_id != self.instance_id or not self._running:
            raise MemberGone(f"no live member {instance_id}")
        handler = self._handlers.get(method)
        if handler is None:
            raise RemoteError(f"no handler for {method}", origin=self.instance_id,
                              kind="NotFound")
        with trio.move_on_after(timeout):
            try:
                return await handler(self.instance_id, payload)
            except Exception as exc:
                raise RemoteError(str(exc), origin=self.instance_id,
                                  kind=type(exc).__name__) from exc
        raise RpcTimeout(f"{method} on {instance_id} did not answer within {timeout:g}s")

    def publish(self, instance_id: str | None, topic: str, payload: bytes) -> bool:
        """Deliver to our own subscribers at once."""
        if instance_id not in (None, self.instance_id):
            return True  # nobody else exists: a message to another instance goes nowhere
        for handler in self._topics.get(topic, ()):
            handler(self.instance_id, payload)
        return True

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Register a topic handler."""
        self._topics.setdefault(topic, []).append(handler)

    async def ping(self) -> float:
        """Zero: the bus is this process."""
        return 0.0
