"""The rules of one queue (an organization's user group): order, offers and assignment.

Requests wait first come, first served (by ``queuedAt``, then id). ``broadcast``: every
online agent of the group is offered a new request, and an agent who comes online is
offered every waiting one; the first accept wins. ``auto``: the oldest request goes to the
online agent with the fewest active chats under ``maxConcurrentChats`` (ties by agent id).
A :class:`QueueBook` is the queue's pure state; the queue actor does the talking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lcx.errors import Conflict
from lcx.model import AgentRef, Conversation, parse_iso

DEFAULT_WAIT_SECONDS = 30.0
"""The estimated wait of a queue that has not seen an accept yet."""


class NoFreeSlot(Conflict):
    """The agent is at its ``maxConcurrentChats`` (or not available)."""


@dataclass
class QueuedAgent:
    """An agent of the queue's group, as the queue last heard of it."""

    ref: AgentRef
    status: str
    active: int


@dataclass
class QueueBook:
    """The waiting requests and the group's agents; see the module docstring."""

    pending: dict[str, Conversation] = field(default_factory=dict)
    agents: dict[str, QueuedAgent] = field(default_factory=dict)
    average_wait: float = DEFAULT_WAIT_SECONDS

    def reload(self, rows: list[Conversation]) -> None:
        """Replace the waiting requests with ``rows`` (the store's view)."""
        self.pending = {}
        for row in rows:
            self.pending[row.id] = row
        self._order()

    def enqueue(self, conversation: Conversation) -> bool:
        """Add (or refresh) a waiting request; True when it was not waiting yet."""
        known = conversation.id in self.pending
        self.pending[conversation.id] = conversation
        self._order()
        return not known

    def dequeue(self, conversation_id: str) -> Conversation | None:
        """Remove a request; the one removed, if it was waiting."""
        return self.pending.pop(conversation_id, None)

    def online(self) -> list[QueuedAgent]:
        """The agents who are online (not away, not offline)."""
        return [a for a in self.agents.values() if a.status == "online"]

    def candidates(self, limit: int) -> list[QueuedAgent]:
        """Who may be assigned the next request: online, under ``limit``, least loaded
        first."""
        return sorted((a for a in self.online() if a.active < limit),
                      key=lambda a: (a.active, a.ref.id))

    def heard(self, agent: AgentRef, status: str, active: int) -> bool:
        """Record an agent's presence; True when it just came online."""
        if status == "offline":
            self.agents.pop(agent.id, None)
            return False
        was = self.agents.get(agent.id)
        self.agents[agent.id] = QueuedAgent(agent, status, active)
        return status == "online" and (was is None or was.status != "online")

    def taken(self, conversation: Conversation, agent_id: str, now: datetime) -> None:
        """A request was accepted by ``agent_id``: it stops waiting, the agent is busier,
        and the estimated wait learns from it."""
        self.pending.pop(conversation.id, None)
        waited = (now - parse_iso(conversation.queued_at)).total_seconds()
        self.average_wait = 0.8 * self.average_wait + 0.2 * max(0.0, waited)
        slot = self.agents.get(agent_id)
        if slot is not None:
            slot.active += 1

    def full(self, agent_id: str, limit: int) -> None:
        """The agent turned out to have no free slot: skip it until it reports again."""
        slot = self.agents.get(agent_id)
        if slot is not None:
            slot.active = limit

    def position(self, conversation_id: str) -> tuple[int | None, int | None]:
        """(1-based position, estimated wait in seconds) of a waiting request."""
        order = list(self.pending)
        if conversation_id not in order:
            return None, None
        position = order.index(conversation_id) + 1
        agents = max(1, len(self.online()))
        return position, round(self.average_wait * position / agents)

    def _order(self) -> None:
        self.pending = dict(sorted(self.pending.items(),
                                   key=lambda kv: (kv[1].queued_at, kv[0])))
