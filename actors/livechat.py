"""The livechat domain of one instance: its actor supervisors, and the ports they use.

:class:`Livechat` owns one router per actor kind (conversations, queues, agent sessions,
provider links) and implements every port of :mod:`actors.ports` on top of them, the
store, the organization settings cache and the presence book. Routers deliver to the
instance that owns a key (this one or another, over the bus) and activate virtual actors on
demand. Which class serves a kind is not known here: the composition root registers a
factory per kind (:meth:`Livechat.register`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import trio

from actors.keys import agent_key, queue_key, split_key
from actors.messages import (
    Accept,
    Accepted,
    Msg,
    OpenLink,
    Push,
    Recover,
    Reserve,
    Resync,
    Timeout,
)
from actors.ports import FrameSink
from actors.presence import Presence, PresenceBook
from actors.routing import ActorRouter, ForwardServer
from adapters.edges import Channel, Provider
from lcx.cluster.bus import Bus
from lcx.cluster.placement import Placement
from lcx.config import TenantConfig
from lcx.errors import ActorStopped
from lcx.livechat.decision import Counter
from lcx.livechat.settings import LivechatSettings
from lcx.org_settings import OrgSettings
from lcx.runtime import (
    DEFAULT_ASK_TIMEOUT,
    Actor,
    ChildSpec,
    KeyedSupervisor,
    Registry,
    Restart,
    TimerService,
)
from lcx.store import Store
from lcx.store.conversations import open_ids_of_org

log = logging.getLogger("lcx.livechat")

CONVERSATION_IDLE_SECONDS = 120.0
AGENT_IDLE_SECONDS = 300.0

ActorFactory = Callable[["Livechat", str], Actor]
"""Builds the actor for a key (the composition root registers one per kind)."""


def _no_sink(socket_id: str) -> FrameSink | None:
    return None


AgentsPush = Callable[[str, Iterable[str], bytes], None]
"""Offers one encoded frame to the sockets of several agents of an organization."""


@dataclass
class LivechatCounters:
    """Domain counters exported to ``/metrics``."""

    requests_created: int = 0
    requests_missed: int = 0
    messages_stored: int = 0
    conversations_ended: int = 0
    ws_sessions: int = 0
    slow_consumers_cut: int = 0
    ws_writes: int = 0
    """Writes to agent sockets (each carries one or more frames)."""
    ws_frames_sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Livechat:
    """Owns the actor supervisors of one instance and implements their ports."""

    def __init__(self, *, store: Callable[[], Store], tenants: Mapping[str, TenantConfig],
                 registry: Registry, wake_delivery: Callable[[str], None], bus: Bus,
                 heartbeat_seconds: float = 20.0, max_queued_frames: int = 1000,
                 max_queued_bytes: int = 1024 * 1024,
                 max_queued_bytes_total: int = 64 * 1024 * 1024,
                 settle_seconds: float = 0.0) -> None:
        self._store = store
        self.tenants = tenants
        self.registry = registry
        self._wake_delivery = wake_delivery
        self.heartbeat_seconds = heartbeat_seconds
        self.max_queued_frames = max_queued_frames
        self.max_queued_bytes = max_queued_bytes
        """``ws.max_queued_bytes``: bytes one agent socket may have waiting."""
        self.max_queued_bytes_total = max_queued_bytes_total
        """``ws.max_queued_bytes_total``: bytes all agent sockets may have waiting."""
        self.org_settings = OrgSettings(store)
        self._bus = bus
        self.settle_seconds = settle_seconds
        """How long a message waits for its actor's owner to settle after the owner died or
        left (``2 x cluster.lease_ms + 1 s`` in a cluster; 0 on one instance)."""
        self.placement = Placement(bus, suspect_seconds=max(settle_seconds, 1.0))
        self.local_sink: Callable[[str], FrameSink | None] = _no_sink
        """The sink of a socket held by this instance (the socket directory sets it)."""
        self.local_push: AgentsPush | None = None
        """Direct fan-out to agent sockets (the socket directory sets it); None: through
        each agent's session actor."""
        self.presence_book = PresenceBook(bus)
        self.draining = trio.Event()
        """Set when the instance shuts down: agent sockets close with 1012."""
        self.counters = LivechatCounters()
        self.timers = TimerService()
        """Deadlines of conversations (which may passivate while they wait)."""
        self._factories: dict[str, ActorFactory] = {}
        self.conversations = self._router("conversation", CONVERSATION_IDLE_SECONDS, 512)
        self.queues = self._router("queue", None, 4096)
        self.agents = self._router("agent_session", AGENT_IDLE_SECONDS, 4096)
        self.links = self._router("provider_link", 60.0, 1024)
        self._providers: dict[str, Provider] = {}
        self.channels: dict[str, Channel] = {}
        """Configured channels by name (``bot``, the bot API, is not one of them)."""
        self.routers = {r.kind: r for r in (self.conversations, self.queues, self.agents,
                                            self.links)}
        ForwardServer(self.routers, bus.instance_id).install(bus)

    def _router(self, kind: str, idle: float | None, mailbox: int) -> ActorRouter:
        async def activate(key: str) -> Actor:
            return self._factories[kind](self, key)

        return ActorRouter(KeyedSupervisor(kind, activate, idle_seconds=idle,
                                           mailbox_size=mailbox, registry=self.registry),
                           self._bus, self.placement, settle_seconds=self.settle_seconds)

    def register(self, kind: str, factory: ActorFactory) -> None:
        """Serve actors of ``kind`` (``conversation``, ``queue``, ``agent_session``,
        ``provider_link``) with ``factory``."""
        if kind not in self.routers:
            raise ValueError(f"no actor kind {kind!r}")
        self._factories[kind] = factory

    def children(self) -> list[ChildSpec]:
        """Child specs for the root supervisor, in start order."""
        missing = set(self.routers) - set(self._factories)
        if missing:
            raise RuntimeError(f"no factory registered for {sorted(missing)}")
        return [
            ChildSpec("timers", lambda: self.timers, kind="service"),
            ChildSpec("agent_sessions", lambda: self.agents.local, kind="supervisor",
                      restart=Restart.PERMANENT),
            ChildSpec("conversations", lambda: self.conversations.local, kind="supervisor"),
            ChildSpec("queues", lambda: self.queues.local, kind="supervisor"),
            ChildSpec("provider_links", lambda: self.links.local, kind="supervisor"),
        ]

    # --- ports: the store and settings ------------------------------------------------

    @property
    def store(self) -> Store:
        """The open store (raises Unavailable while it is not open)."""
        return self._store()

    @property
    def bus(self) -> Bus:
        """The instance's bus."""
        return self._bus

    @property
    def providers(self) -> dict[str, Provider]:
        """Configured providers by name (``helvia``, lcx itself, is not one of them)."""
        return self._providers

    @providers.setter
    def providers(self, providers: dict[str, Provider]) -> None:
        self._providers = providers

    async def settings(self, org_id: str) -> LivechatSettings:
        """An organization's livechat settings (cached briefly)."""
        return await self.org_settings.get(org_id)

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The configured tenant with this id."""
        return self.tenants.get(tenant_id)

    def arm_timeout(self, conversation_id: str, delay: float, timeout: Timeout) -> None:
        """Post ``timeout`` to the conversation after ``delay`` seconds, if this instance
        still owns it then (a new owner arms its own when the conversation moves there)."""
        def fire() -> None:
            if self.conversations.owner(conversation_id) == self._bus.instance_id:
                # shutting down: the next start re-arms it from the store
                with suppress(ActorStopped):
                    self.conversations.post(conversation_id, timeout)

        self.timers.arm(conversation_id, delay, fire)

    def cancel_timeout(self, conversation_id: str) -> None:
        """Forget the conversation's pending timeout."""
        self.timers.cancel(conversation_id)

    def wake_delivery(self, conversation_id: str) -> None:
        """The conversation has new outbox rows: deliver them soon."""
        self._wake_delivery(conversation_id)

    def count(self, counter: Counter) -> None:
        """Count a domain event for ``/metrics``."""
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)

    def count_slow_consumer(self) -> None:
        """Count a socket cut off because it could not keep up."""
        self.counters.slow_consumers_cut += 1

    # --- ports: notifications and asks --------------------------------------------------

    def tell_queue(self, org_id: str, user_group_id: str, message: Msg) -> None:
        """Notify a queue without waiting (activating it in the background if needed)."""
        try:
            self.queues.post(queue_key(org_id, user_group_id), message)
        except ActorStopped:
            log.warning("queue notification dropped (resync will repair it)",
                        extra={"queue": queue_key(org_id, user_group_id)})

    def push_to_agent(self, org_id: str, agent_id: str, frame: bytes) -> None:
        """Send an encoded frame to every socket of a connected agent (dropped if not
        connected)."""
        self.tell_agent(org_id, agent_id, Push(frame=frame))

    def push_to_agents(self, org_id: str, agent_ids: Iterable[str], frame: bytes) -> None:
        """Send one encoded frame to every socket of each agent, without waiting: straight
        to the sockets when a socket directory is attached, else agent by agent."""
        if self.local_push is not None:
            self.local_push(org_id, agent_ids, frame)
            return
        for agent_id in agent_ids:
            self.push_to_agent(org_id, agent_id, frame)

    def tell_agent(self, org_id: str, agent_id: str, message: Msg) -> None:
        """Notify an agent's session without waiting, wherever it lives; dropped when the
        agent is connected nowhere (a session that wakes up later reloads from the store)."""
        key = agent_key(org_id, agent_id)
        if self.agents.get(key) is None and not self.presence_book.knows(org_id, agent_id):
            return
        try:
            self.agents.post(key, message)
        except ActorStopped:
            log.warning("agent notification dropped", extra={"agent": agent_id})

    def open_link(self, conversation_id: str) -> None:
        """Open (or resume) the conversation's provider session."""
        self.links.post(conversation_id, OpenLink())

    async def reserve_slot(self, org_id: str, agent_id: str, reserve: Reserve) -> bool:
        """Ask the agent's session for a chat slot."""
        reserved: bool = await self.agents.ask(agent_key(org_id, agent_id), reserve)
        return reserved

    async def accept(self, conversation_id: str, accept: Accept) -> Accepted:
        """Ask the conversation to accept its agent."""
        accepted: Accepted = await self.conversations.ask(conversation_id, accept)
        return accepted

    async def tell_conversation(self, conversation_id: str, message: Msg,
                                timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Ask the conversation to apply ``message``; its answer."""
        return await self.conversations.ask(conversation_id, message, timeout)

    # --- ports: presence ----------------------------------------------------------------

    def presence(self, org_id: str, agent_id: str) -> Presence | None:
        """The agent's presence, if it is connected anywhere."""
        return self.presence_book.get(org_id, agent_id)

    def group_presence(self, org_id: str, user_group_id: str) -> list[Presence]:
        """The connected agents of one user group."""
        return self.presence_book.in_group(org_id, user_group_id)

    def announce_presence(self, presence: Presence) -> None:
        """Record an agent's presence here and tell every other instance."""
        self.presence_book.announce(presence)

    def agents_online(self, org_id: str, user_group_id: str | None = None) -> int:
        """How many agents of an organization (optionally of one group) are online."""
        return self.presence_book.online(org_id, user_group_id)

    async def settings_changed(self, org_id: str) -> None:
        """Apply new organization settings at once: open conversations re-arm their timers
        and the organization's queues route again (e.g. after a switch to auto)."""
        for conversation_id in await self.store.read(lambda tx: open_ids_of_org(tx, org_id)):
            self.conversations.post(conversation_id, Recover())
        for key in self.queues.live_keys():
            if split_key(key)[0] == org_id:
                self.queues.post(key, Resync())
