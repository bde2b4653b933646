"""The bus port: how lcx instances see each other and talk (DESIGN.md "Cluster").

Two implementations pass one contract test suite: ``LocalBus`` (one instance, in-process;
the embedded default) and ``RedisBus`` (many instances sharing a Redis). What travels on
the bus is hints and RPC, never the only copy of something that must not be lost: the
store is the source of truth.

Errors::

    BusError (lcx.errors.LcxError)
    ├── BusUnavailable     the bus cannot be reached (Redis down)
    │   └── NotSent        ... and the call never left this instance
    ├── RpcTimeout         no reply before the caller's deadline
    ├── MemberGone         the target instance is not a live member: nothing was sent
    ├── MemberLost         the target died while a call to it was held: it may have read it
    └── RemoteError        the handler on the other instance raised; boxed with its origin
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from lcx.errors import LcxError


class BusError(LcxError):
    """The bus failed to carry a message."""


class BusUnavailable(BusError):
    """The bus (Redis) cannot be reached."""


class NotSent(BusUnavailable):
    """The bus cannot be reached and the call never left this instance (nothing was
    published): sending it again later cannot apply it twice."""


class RpcTimeout(BusError):
    """No reply arrived before the caller's deadline (the request may still run)."""


class MemberGone(BusError):
    """The target instance is not (or no longer) a live member: the call was never sent
    (nobody listened), so sending it to another instance cannot apply it twice."""


class MemberLost(BusError):
    """The target instance died while a call to it was held: the call was sent to it, and
    it may have read (and even carried out) it before dying. Only a call that is safe to
    repeat may be sent again elsewhere."""


class RemoteError(BusError):
    """A handler on another instance raised; ``origin`` names the instance, ``kind`` the
    exception class, ``details`` its envelope details (for ApiErrors)."""

    def __init__(self, message: str, *, origin: str, kind: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{kind} on {origin}: {message}")
        self.message = message
        self.origin = origin
        self.kind = kind
        self.details = details


@dataclass(frozen=True)
class MemberInfo:
    """One live instance as the cluster sees it."""

    instance_id: str
    last_heartbeat_at: str
    """RFC 3339 (the member's own clock: informative only, never compared across hosts)."""
    draining: bool = False
    actors: Mapping[str, int] = field(default_factory=dict)
    """Live actors by kind, as the member last reported them."""
    url: str = ""
    """The member's HTTP base URL, when known."""


@dataclass(frozen=True, slots=True)
class MemberSet:
    """Who may own actors now, and a version that changes whenever that does.

    Placement caches its answers against ``version``: a new version (a member joined,
    left, died, started or stopped draining) invalidates them; anything else (the load a
    member reports, its heartbeat time) does not make a new version.
    """

    version: int
    candidates: tuple[str, ...]
    """The non-draining members (every member, if all of them drain), sorted."""


def candidates_of(members: Mapping[str, MemberInfo]) -> tuple[str, ...]:
    """The members that may own actors: the non-draining ones (all, if every one drains)."""
    serving = sorted(m for m, info in members.items() if not info.draining)
    return tuple(serving or sorted(members))


@dataclass(frozen=True)
class Leadership:
    """Who leads, and the fencing term of that leadership (bumped at every new term)."""

    instance_id: str
    term: int


RpcHandler = Callable[[str, bytes], Awaitable[bytes]]
"""``handler(sender_instance_id, payload) -> reply payload``; may raise (boxed to caller)."""
TopicHandler = Callable[[str, bytes], None]
"""``handler(sender_instance_id, payload)``; runs on the bus reader task: never blocks."""
MembershipHandler = Callable[[Mapping[str, MemberInfo]], None]
"""Called (without blocking) with the new live-member view whenever it changes."""
LeadershipHandler = Callable[[Leadership | None], None]
"""Called (without blocking) whenever this instance gains or loses leadership."""


class Bus(Protocol):
    """Membership, leadership, RPC and fire-and-forget messages between instances.

    Lifecycle: a supervised service (``run(task_status=...)`` reports started once
    connected, subscribed and registered as a member; ``request_stop()`` leaves the
    cluster gracefully: deregisters, releases leadership at once). Handlers must be
    registered before ``run`` starts.
    """

    instance_id: str

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Connect, join, heartbeat, serve requests and subscriptions until stopped."""

    def request_stop(self) -> None:
        """Leave the cluster (deregister, give up leadership) and return from ``run``."""

    # --- membership ---------------------------------------------------------------------
    def members(self) -> Mapping[str, MemberInfo]:
        """The live members now (this instance included while it runs)."""

    def member_set(self) -> MemberSet:
        """The members that may own actors, versioned; cheap (no report is built)."""

    def on_membership(self, handler: MembershipHandler) -> None:
        """Call ``handler`` with the new view whenever members join, leave or die."""

    def set_draining(self, draining: bool) -> None:
        """Announce (at the next heartbeat, and at once as a hint) that we are draining."""

    def set_report(self, report: Callable[[], Mapping[str, int]]) -> None:
        """What this instance reports as its live actors by kind in heartbeats."""

    # --- leadership ---------------------------------------------------------------------
    def leadership(self) -> Leadership | None:
        """The current leader as this instance believes it (None: unknown)."""

    def is_leader(self) -> bool:
        """Whether this instance holds a lease it has renewed within its local deadline."""

    def on_leadership(self, handler: LeadershipHandler) -> None:
        """Call ``handler`` when this instance becomes leader (Leadership) or stops (None)."""

    # --- RPC ----------------------------------------------------------------------------
    def handle(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method`` for other instances (and for ourselves)."""

    async def request(self, instance_id: str, method: str, payload: bytes, *,
                      timeout: float) -> bytes:
        """Call ``method`` on ``instance_id`` and return its reply.

        Raises:
            RpcTimeout: no reply within ``timeout`` seconds (the waiter is cleaned up; a
                late reply is dropped and counted).
            MemberGone: the instance is not a live member (nothing was sent).
            MemberLost: the instance died while the call was held (a Redis bus checks
                every ``held_check_seconds`` that its target still listens).
            RemoteError: the handler raised.
            BusUnavailable: the bus cannot be reached.
        """

    # --- fire-and-forget ----------------------------------------------------------------
    def publish(self, instance_id: str | None, topic: str, payload: bytes) -> bool:
        """Send without waiting to one instance (or all, with None); batched. False when
        the outgoing queue is full (the message was dropped)."""

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Receive ``topic`` messages addressed to us or broadcast (register before run)."""

    # --- health -------------------------------------------------------------------------
    async def ping(self) -> float:
        """Round-trip time to the bus in seconds.

        Raises:
            BusUnavailable: the bus does not answer.
        """
