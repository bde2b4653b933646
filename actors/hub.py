"""The livechat domain of one instance: its actor supervisors and how actors reach each other.

Actors never hold each other's refs for long: they address conversations, queues and agent
sessions by key through this hub's routers, which deliver to the owning instance (this one
or another, over the bus) and activate virtual actors on demand. Asks only go "downwards"
(queue -> agent session, queue -> conversation, conversation -> agent session); upward
notifications are posts, so no two actors can wait on each other.

Presence (which agents are connected, online or away) is a cluster-wide view: each agent
session announces itself on the bus when it changes and every ``PRESENCE_REFRESH_SECONDS``;
an entry not refreshed within ``PRESENCE_TTL_SECONDS`` is forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from actors.messages import Msg, Push
from actors.routing import ActorRouter, ForwardServer
from adapters.edges import Channel, Provider
from lcx.cluster.bus import Bus
from lcx.cluster.placement import Placement
from lcx.config import TenantConfig
from lcx.errors import ActorStopped
from lcx.org_settings import OrgSettings
from lcx.runtime import Actor, ChildSpec, KeyedSupervisor, Registry, Restart
from lcx.store import Store

log = logging.getLogger("lcx.livechat")

CONVERSATION_IDLE_SECONDS = 120.0
AGENT_IDLE_SECONDS = 300.0
PRESENCE_REFRESH_SECONDS = 10.0
PRESENCE_TTL_SECONDS = 3 * PRESENCE_REFRESH_SECONDS
PRESENCE_TOPIC = "presence"


def agent_key(org_id: str, agent_id: str) -> str:
    """The key of an agent's session actor."""
    return f"{org_id}/{agent_id}"


def queue_key(org_id: str, user_group_id: str) -> str:
    """The key of a queue actor (one per organization and user group)."""
    return f"{org_id}/{user_group_id}"


def split_key(key: str) -> tuple[str, str]:
    """The (org, rest) of a queue or agent key."""
    org, _, rest = key.partition("/")
    return org, rest


class Presence(msgspec.Struct, kw_only=True):
    """What the cluster knows of a connected agent, for routing, availability and metrics."""

    org_id: str
    agent_id: str
    status: str
    """online, away or offline (offline entries are removed)."""
    groups: tuple[str, ...] = ()
    name: str | None = None
    seen: float = 0.0
    """Local ``trio.current_time()`` when this instance last heard of it."""


@dataclass
class LivechatCounters:
    """Domain counters exported to ``/metrics``."""

    requests_created: int = 0
    requests_missed: int = 0
    messages_stored: int = 0
    conversations_ended: int = 0
    ws_sessions: int = 0
    slow_consumers_cut: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Livechat:
    """Owns the conversation, queue and agent-session supervisors and the shared services."""

    def __init__(self, *, store: Callable[[], Store], tenants: Mapping[str, TenantConfig],
                 registry: Registry, wake_delivery: Callable[[str], None], bus: Bus,
                 heartbeat_seconds: float = 20.0, max_queued_frames: int = 1000) -> None:
        self._store = store
        self.tenants = tenants
        self.registry = registry
        self.wake_delivery = wake_delivery
        self.heartbeat_seconds = heartbeat_seconds
        self.max_queued_frames = max_queued_frames
        self.org_settings = OrgSettings(store)
        self.bus = bus
        self.placement = Placement(bus)
        self._presence: dict[tuple[str, str], Presence] = {}
        self.draining = trio.Event()
        """Set when the instance shuts down: agent sockets close with 1012."""
        self.counters = LivechatCounters()
        self.conversations = ActorRouter(KeyedSupervisor(
            "conversation", self._activate_conversation, idle_seconds=CONVERSATION_IDLE_SECONDS,
            mailbox_size=512, registry=registry), bus, self.placement)
        self.queues = ActorRouter(KeyedSupervisor(
            "queue", self._activate_queue, idle_seconds=None, mailbox_size=4096,
            registry=registry), bus, self.placement)
        self.agents = ActorRouter(KeyedSupervisor(
            "agent_session", self._activate_agent, idle_seconds=AGENT_IDLE_SECONDS,
            mailbox_size=4096, registry=registry), bus, self.placement)
        self.links = ActorRouter(KeyedSupervisor(
            "provider_link", self._activate_link, idle_seconds=60.0, mailbox_size=1024,
            registry=registry), bus, self.placement)
        self.providers: dict[str, Provider] = {}
        """Configured providers by name (``helvia``, lcx itself, is not one of them)."""
        self.channels: dict[str, Channel] = {}
        """Configured channels by name (``bot``, the bot API, is not one of them)."""
        self.routers = {r.kind: r for r in (self.conversations, self.queues, self.agents,
                                            self.links)}
        ForwardServer(self.routers).install(bus)
        bus.subscribe(PRESENCE_TOPIC, self._heard_presence)

    @property
    def store(self) -> Store:
        """The open store (raises Unavailable while it is not open)."""
        return self._store()

    def children(self) -> list[ChildSpec]:
        """Child specs for the root supervisor, in start order."""
        return [
            ChildSpec("agent_sessions", lambda: self.agents.local, kind="supervisor",
                      restart=Restart.PERMANENT),
            ChildSpec("conversations", lambda: self.conversations.local, kind="supervisor"),
            ChildSpec("queues", lambda: self.queues.local, kind="supervisor"),
            ChildSpec("provider_links", lambda: self.links.local, kind="supervisor"),
        ]

    async def _activate_conversation(self, key: str) -> Actor:
        from actors.conversation import ConversationActor
        return ConversationActor(self, key)

    async def _activate_queue(self, key: str) -> Actor:
        from actors.queue import QueueActor
        org, group = split_key(key)
        return QueueActor(self, org, group)

    async def _activate_link(self, key: str) -> Actor:
        from actors.provider_link import ProviderLinkActor
        return ProviderLinkActor(self, key)

    async def _activate_agent(self, key: str) -> Actor:
        from actors.agent_session import AgentSessionActor
        org, agent = split_key(key)
        return AgentSessionActor(self, org, agent)

    def tell_queue(self, org_id: str, user_group_id: str, message: Msg) -> None:
        """Notify a queue without waiting (activating it in the background if needed)."""
        try:
            self.queues.post(queue_key(org_id, user_group_id), message)
        except ActorStopped:
            log.warning("queue notification dropped (resync will repair it)",
                        extra={"queue": queue_key(org_id, user_group_id)})

    def push_to_agent(self, org_id: str, agent_id: str, frame: dict[str, Any]) -> None:
        """Send a frame to every socket of a connected agent (dropped if not connected)."""
        self.tell_agent(org_id, agent_id, Push(frame=msgspec.json.encode(frame)))

    def tell_agent(self, org_id: str, agent_id: str, message: Msg) -> None:
        """Notify an agent's session without waiting, wherever it lives; dropped when the
        agent is connected nowhere (a session that wakes up later reloads from the store)."""
        key = agent_key(org_id, agent_id)
        if self.agents.get(key) is None and (org_id, agent_id) not in self._presence:
            return
        try:
            self.agents.post(key, message)
        except ActorStopped:
            log.warning("agent notification dropped", extra={"agent": agent_id})

    # --- presence ------------------------------------------------------------------------

    @property
    def presence(self) -> dict[tuple[str, str], Presence]:
        """Connected agents across the cluster, by (org, agent) (stale entries dropped)."""
        horizon = trio.current_time() - PRESENCE_TTL_SECONDS
        for key in [k for k, p in self._presence.items() if p.seen < horizon]:
            del self._presence[key]
        return self._presence

    def announce_presence(self, presence: Presence) -> None:
        """Record an agent's presence here and tell every other instance."""
        self._note_presence(presence)
        self.bus.publish(None, PRESENCE_TOPIC, msgspec.msgpack.encode(presence))

    def _heard_presence(self, sender: str, payload: bytes) -> None:
        if sender != self.bus.instance_id:
            self._note_presence(msgspec.msgpack.decode(payload, type=Presence))

    def _note_presence(self, presence: Presence) -> None:
        key = (presence.org_id, presence.agent_id)
        if presence.status == "offline":
            self._presence.pop(key, None)
        else:
            self._presence[key] = msgspec.structs.replace(presence, seen=trio.current_time())

    async def settings_changed(self, org_id: str) -> None:
        """Apply new organization settings at once: open conversations re-arm their timers
        and the organization's queues route again (e.g. after a switch to auto)."""
        from actors.messages import Recover
        from actors.queue import Resync
        from lcx.store.conversations import open_conversations

        rows = await self.store.read(open_conversations)
        for conversation in rows:
            if conversation.org_id == org_id:
                self.conversations.post(conversation.id, Recover())
        for key in self.queues.live_keys():
            if split_key(key)[0] == org_id:
                self.queues.post(key, Resync())

    def agents_online(self, org_id: str, user_group_id: str | None = None) -> int:
        """How many agents of an organization (optionally of one group) are online."""
        return sum(1 for (org, _), presence in self.presence.items()
                   if org == org_id and presence.status == "online"
                   and (user_group_id is None or user_group_id in presence.groups))

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The configured tenant with this id."""
        return self.tenants.get(tenant_id)
