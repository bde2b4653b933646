"""In-memory ports for driving one livechat actor shell in isolation.

:class:`FakePorts` implements the Protocols of :mod:`actors.ports` (conversation, queue and
session ports) over a real store, and records everything an actor tells the world: frames
pushed, queues and agents told, timers armed, outbox wake-ups, counters. Its asks
(``reserve_slot``, ``accept``) answer from small, settable rules. No mocks: each method is
a plain implementation a test can read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from actors.messages import Accept, Accepted, Msg, Reserve, Timeout
from actors.ports import ConversationPorts, FrameSink, QueuePorts, SessionPorts
from actors.presence import Presence
from lcx.config import TenantConfig
from lcx.errors import Conflict
from lcx.livechat.decision import Counter
from lcx.livechat.settings import DEFAULT_SETTINGS, LivechatSettings
from lcx.model import Context, Conversation, Subscriber
from lcx.runtime import Actor, ActorRef, Supervisor, actor_child
from lcx.store import Store
from lcx.store.conversations import load_conversation

ORG = "o1"
GROUP = "g1"


class FakeBus:
    """The two things a session reads of the bus (its instance, the members) and what it
    publishes there (frames for sockets held elsewhere)."""

    def __init__(self, instance_id: str = "i1", members: Iterable[str] = ("i1",)) -> None:
        self.instance_id = instance_id
        self.live = set(members)
        self.published: list[tuple[str, str, bytes]] = []

    def members(self) -> Mapping[str, Any]:
        """The live instances."""
        return {member: None for member in self.live}

    def publish(self, instance_id: str, topic: str, payload: bytes) -> bool:
        """Record a publication; always accepted."""
        self.published.append((instance_id, topic, payload))
        return True


class FakeSink:
    """A socket's frame queue: accepts up to ``room`` frames, then refuses."""

    def __init__(self, room: int = 100) -> None:
        self.room = room
        self.frames: list[bytes] = []
        self.cut_reason: str | None = None

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame`` if there is room."""
        if len(self.frames) >= self.room:
            return False
        self.frames.append(frame)
        return True

    def cut(self, reason: str) -> None:
        """Remember why the socket was closed."""
        self.cut_reason = reason


@dataclass
class FakePorts:
    """Every actor port, in memory, over a real store (see the module docstring)."""

    open_store: Store
    org_settings: LivechatSettings = DEFAULT_SETTINGS
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    presences: dict[str, Presence] = field(default_factory=dict)
    """Connected agents by id (all of group :data:`GROUP`)."""
    free_slots: dict[str, int] = field(default_factory=dict)
    """How many more chats each agent's session grants (absent: none)."""
    bus: Any = field(default_factory=FakeBus)
    sinks: dict[str, FrameSink] = field(default_factory=dict)
    pushed: list[tuple[str, bytes]] = field(default_factory=list)
    told_queues: list[tuple[str, Msg]] = field(default_factory=list)
    told_agents: list[tuple[str, Msg]] = field(default_factory=list)
    armed: dict[str, tuple[float, Timeout]] = field(default_factory=dict)
    woken: list[str] = field(default_factory=list)
    counted: list[Counter] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    reserves: list[tuple[str, Reserve]] = field(default_factory=list)
    accepts: list[tuple[str, Accept]] = field(default_factory=list)
    refuse_accept: bool = False
    announced: list[Presence] = field(default_factory=list)
    slow_consumers: int = 0
    arms: int = 0
    """How many times a timer was armed (or armed again)."""

    # --- Stored ----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The real store of the test."""
        return self.open_store

    async def settings(self, org_id: str) -> LivechatSettings:
        """The one organization's settings."""
        return self.org_settings

    # --- Notifier --------------------------------------------------------------------

    def push_to_agent(self, org_id: str, agent_id: str, frame: bytes) -> None:
        """Record a frame for one agent."""
        self.pushed.append((agent_id, frame))

    def push_to_agents(self, org_id: str, agent_ids: Iterable[str], frame: bytes) -> None:
        """Record one frame per agent."""
        for agent_id in agent_ids:
            self.pushed.append((agent_id, frame))

    def tell_agent(self, org_id: str, agent_id: str, message: Msg) -> None:
        """Record a post to an agent's session."""
        self.told_agents.append((agent_id, message))

    def tell_queue(self, org_id: str, user_group_id: str, message: Msg) -> None:
        """Record a post to a queue."""
        self.told_queues.append((user_group_id, message))

    # --- ConversationPorts -----------------------------------------------------------

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """A configured tenant, if any."""
        return self.tenants.get(tenant_id)

    def arm_timeout(self, conversation_id: str, delay: float, timeout: Timeout) -> None:
        """Record the conversation's one timer (replacing the earlier one)."""
        self.armed[conversation_id] = (delay, timeout)
        self.arms += 1

    def cancel_timeout(self, conversation_id: str) -> None:
        """Forget the conversation's timer."""
        self.armed.pop(conversation_id, None)

    def wake_delivery(self, conversation_id: str) -> None:
        """Record that the outbox has new rows."""
        self.woken.append(conversation_id)

    def count(self, counter: Counter) -> None:
        """Record a counted domain event."""
        self.counted.append(counter)

    def open_link(self, conversation_id: str) -> None:
        """Record a provider link opened."""
        self.links.append(conversation_id)

    def presence(self, org_id: str, agent_id: str) -> Presence | None:
        """The agent's presence, if connected."""
        return self.presences.get(agent_id)

    async def reserve_slot(self, org_id: str, agent_id: str, reserve: Reserve) -> bool:
        """Grant a slot while the agent has free ones."""
        self.reserves.append((agent_id, reserve))
        if self.free_slots.get(agent_id, 0) <= 0:
            return False
        self.free_slots[agent_id] -= 1
        return True

    # --- QueuePorts ------------------------------------------------------------------

    def group_presence(self, org_id: str, user_group_id: str) -> list[Presence]:
        """Every connected agent (all are of the one group)."""
        return list(self.presences.values())

    async def accept(self, conversation_id: str, accept: Accept) -> Accepted:
        """Accept as a conversation would: the stored request, now active for the agent."""
        self.accepts.append((conversation_id, accept))
        if self.refuse_accept:
            raise Conflict("the request is no longer pending")
        stored = await self.open_store.read(lambda tx: load_conversation(tx, conversation_id))
        assert stored is not None
        active = msgspec.structs.replace(stored, status="active", agent_id=accept.agent.id,
                                         agent_name=accept.agent.name)
        return Accepted(conversation=active, messages=())

    # --- SessionPorts ----------------------------------------------------------------

    def announce_presence(self, presence: Presence) -> None:
        """Record an announced presence."""
        self.announced.append(presence)

    def count_slow_consumer(self) -> None:
        """Count a socket cut off."""
        self.slow_consumers += 1

    def local_sink(self, socket_id: str) -> FrameSink | None:
        """A socket held here."""
        return self.sinks.get(socket_id)

    def pushed_frames(self) -> list[tuple[str, dict[str, Any]]]:
        """The pushed frames, decoded."""
        return [(agent, msgspec.json.decode(frame)) for agent, frame in self.pushed]


def _conformance(ports: FakePorts) -> tuple[ConversationPorts, QueuePorts, SessionPorts]:
    """Type-checks that the fake implements every port Protocol."""
    return ports, ports, ports


@asynccontextmanager
async def running(actor: Actor) -> AsyncIterator[ActorRef]:
    """Run ``actor`` under a supervisor of its own; its ref while the block runs."""
    spec = actor_child("actor", lambda: actor)
    supervisor = Supervisor("test", [spec])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert spec.ref is not None
        yield spec.ref
        supervisor.request_stop()


def pending(conversation_id: str = "c1", *, queued_at: str = "2026-12-03T06:00:00.000Z",
            provider: str = "helvia") -> Conversation:
    """A pending request of :data:`ORG` / :data:`GROUP`."""
    return Conversation(id=conversation_id, request_id=f"r-{conversation_id}", org_id=ORG,
                        tenant_id="t1", sub_handle=f"u-{conversation_id}",
                        user_group_id=GROUP, provider=provider, channel="bot",
                        status="pending", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[], flags={}, created_at=queued_at,
                        queued_at=queued_at, last_activity_at=queued_at)
