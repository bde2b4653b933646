"""The rules of one queue (an organization's user group): order, offers and assignment.

Requests wait first come, first served (by ``queuedAt``, then id). ``broadcast``: every
online agent of the group is offered a new request, and an agent who comes online is
offered every waiting one; the first accept wins. ``auto``: the oldest request goes to the
online agent with the fewest active chats under ``maxConcurrentChats`` (ties by agent id).
A :class:`QueueBook` is the queue's pure state; the queue actor does the talking. The book
holds each waiting request as a :class:`Waiting` (its place and request id), not the whole
conversation: ordering, positions and routing need no more, and the actor loads a whole
conversation from the store only to show it to an agent.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import operator
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

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


class Waiting(NamedTuple):
    """What the queue keeps of one waiting request: its place (``queuedAt``, then id)
    and the request id agents know it by."""

    queued_at: str
    id: str
    request_id: str

    @classmethod
    def of(cls, conversation: Conversation) -> Waiting:
        """The waiting entry of a (pending) conversation."""
        return cls(conversation.queued_at, conversation.id, conversation.request_id)


_ID = operator.itemgetter(1)
_MAKE = functools.partial(tuple.__new__, Waiting)


def _place(waiting: Waiting | Conversation) -> tuple[str, str]:
    """A waiting request's place in the queue: first come (``queuedAt``), then id."""
    return waiting.queued_at, waiting.id


@dataclass
class QueueBook:
    """The waiting requests and the group's agents; see the module docstring.

    ``pending`` finds a waiting request by conversation id (in no particular order);
    the same entries in a sorted list (:meth:`in_order`) make adding, removing and
    ranking a request cost O(log n) searches plus a memmove, never a pass over the
    queue: the newest request is an append, and one that comes in after a newer one (as
    concurrent requests do) is an insort.
    """

    pending: dict[str, Waiting] = field(default_factory=dict)
    agents: dict[str, QueuedAgent] = field(default_factory=dict)
    """Changed only through :meth:`heard`, :meth:`taken` and :meth:`full`, which keep the
    ranking of free agents (:meth:`least_loaded`) in step."""
    average_wait: float = DEFAULT_WAIT_SECONDS
    _places: list[Waiting] = field(default_factory=list, repr=False)
    _ranked: list[tuple[int, str, int, QueuedAgent]] = field(default_factory=list, repr=False)
    """A heap of (active chats, agent id, serial, entry), one pushed whenever an online
    agent's entry is made or changes; those no longer current are dropped as they come up."""
    _serial: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _online_ids: tuple[str, ...] | None = field(default=None, repr=False)
    """:meth:`online_ids` as last listed; None once who is online changed."""

    def __post_init__(self) -> None:
        self.reload(list(self.pending.values()))

    def reload(self, rows: Iterable[Waiting]) -> None:
        """Replace the waiting requests with ``rows`` (the store's view)."""
        # Entries sort as their places (ids are unique); no key function, no Python-level
        # loop: a resync of 100,000 (already in order) stays a few C passes on the loop.
        ordered = sorted(rows)
        if ordered == self._places:  # the usual periodic resync: nothing to rebuild
            return
        self.pending = dict(zip(map(_ID, ordered), ordered, strict=True))
        self._places = ordered

    def holds(self, rows: Sequence[tuple[str, str, str]]) -> bool:
        """Whether ``rows`` (``(queued_at, id, request_id)`` in queue order, as the store
        reads them) are exactly what waits: one C comparison, so a periodic resync that
        finds nothing changed makes no entry and sorts nothing."""
        return rows == self._places

    @staticmethod
    def entries(rows: Iterable[tuple[str, str, str]]) -> Iterator[Waiting]:
        """``(queued_at, id, request_id)`` rows (as the store reads them) as entries."""
        return map(_MAKE, rows)

    def enqueue(self, request: Waiting | Conversation) -> bool:
        """Add (or refresh) a waiting request; True when it was not waiting yet."""
        waiting = request if isinstance(request, Waiting) else Waiting.of(request)
        place = _place(waiting)
        earlier = self.pending.get(waiting.id)
        if earlier is not None:
            if _place(earlier) == place:  # refreshed in place (e.g. its context changed)
                self.pending[waiting.id] = waiting
                return False
            self.dequeue(waiting.id)
        if not self._places or place > _place(self._places[-1]):
            self._places.append(waiting)
        else:  # older than the newest: requests created at the same moment, a re-queue
            bisect.insort(self._places, waiting, key=_place)
        self.pending[waiting.id] = waiting
        return earlier is None

    def in_order(self) -> list[Waiting]:
        """Every waiting request, first come first (a copy)."""
        return list(self._places)

    def page(self, after: tuple[str, str] | None, limit: int) -> list[Waiting]:
        """Up to ``limit`` waiting requests in queue order, starting after the place
        ``after`` (from the first when None): a long queue is walked a page at a time,
        and a request added or removed between pages neither stops nor repeats the walk."""
        start = 0 if after is None else bisect.bisect_right(self._places, after, key=_place)
        return self._places[start:start + limit]

    def dequeue(self, conversation_id: str) -> Waiting | None:
        """Remove a request; the one removed, if it was waiting."""
        gone = self.pending.pop(conversation_id, None)
        if gone is not None:
            place = _place(gone)
            index = bisect.bisect_left(self._places, place, key=_place)
            if index < len(self._places) and _place(self._places[index]) == place:
                del self._places[index]
        return gone

    def online(self) -> list[QueuedAgent]:
        """The agents who are online (not away, not offline)."""
        return [a for a in self.agents.values() if a.status == "online"]

    def online_ids(self) -> tuple[str, ...]:
        """The ids of the agents who are online, listed again only after who is online
        changed (a periodic report that repeats what is known keeps the list): each
        broadcast passes the same tuple, which its fan-out joins with the others cheaply."""
        ids = self._online_ids
        if ids is None:
            ids = self._online_ids = tuple(a.ref.id for a in self.online())
        return ids

    def candidates(self, limit: int) -> list[QueuedAgent]:
        """Who may be assigned the next request: online, under ``limit``, least loaded
        first."""
        return sorted((a for a in self.online() if a.active < limit),
                      key=lambda a: (a.active, a.ref.id))

    def least_loaded(self, limit: int, skip: Container[str] = ()) -> QueuedAgent | None:
        """The first of :meth:`candidates` not in ``skip`` (None when nobody is free), from
        the ranking heap: an assignment costs O(log agents) (plus the entries gone stale
        since, each dropped once), not a pass over every online agent."""
        ranked, agents = self._ranked, self.agents
        held: list[tuple[int, str, int, QueuedAgent]] = []
        found = None
        while ranked:
            active, agent_id, _, entry = ranked[0]
            if agents.get(agent_id) is not entry or entry.active != active:
                heapq.heappop(ranked)  # changed or gone since it was ranked
                continue
            if active >= limit:  # the least loaded is full: so is everyone
                break
            if agent_id in skip:
                held.append(heapq.heappop(ranked))
                continue
            found = entry
            break
        for kept in held:
            heapq.heappush(ranked, kept)
        return found

    def _rank(self, entry: QueuedAgent) -> None:
        """Rank the new or changed entry of an agent (already in :attr:`agents`) if it is
        online; an entry's status never changes (a report makes a new entry), so only
        online entries are ever ranked (see :attr:`_ranked`)."""
        if entry.status != "online":
            return
        ranked = self._ranked
        if len(ranked) > 2 * len(self.agents) + 64:  # mostly stale: start afresh, with it
            ranked[:] = [(a.active, a.ref.id, next(self._serial), a)
                         for a in self.agents.values() if a.status == "online"]
            heapq.heapify(ranked)
        else:
            heapq.heappush(ranked, (entry.active, entry.ref.id, next(self._serial), entry))

    def heard(self, agent: AgentRef, status: str, active: int) -> bool:
        """Record an agent's presence; True when it just came online."""
        was = self.agents.get(agent.id)
        was_online = was is not None and was.status == "online"
        if was_online != (status == "online"):
            self._online_ids = None
        if status == "offline":
            self.agents.pop(agent.id, None)
            return False
        entry = self.agents[agent.id] = QueuedAgent(agent, status, active)
        self._rank(entry)
        return status == "online" and not was_online

    def taken(self, conversation: Waiting | Conversation, agent_id: str,
              now: datetime) -> None:
        """A request was accepted by ``agent_id``: it stops waiting, the agent is busier,
        and the estimated wait learns from it."""
        self.dequeue(conversation.id)
        waited = (now - parse_iso(conversation.queued_at)).total_seconds()
        self.average_wait = 0.8 * self.average_wait + 0.2 * max(0.0, waited)
        slot = self.agents.get(agent_id)
        if slot is not None:
            slot.active += 1
            self._rank(slot)

    def full(self, agent_id: str, limit: int) -> None:
        """The agent turned out to have no free slot: skip it until it reports again."""
        slot = self.agents.get(agent_id)
        if slot is not None:
            slot.active = limit
            self._rank(slot)

    def position(self, conversation_id: str, online: int | None = None
                 ) -> tuple[int | None, int | None]:
        """(1-based position, estimated wait in seconds) of a waiting request; ``online``
        is how many agents are online when the caller knows (else they are counted)."""
        waiting = self.pending.get(conversation_id)
        if waiting is None:
            return None, None
        position = bisect.bisect_left(self._places, _place(waiting), key=_place) + 1
        if online is None:
            online = sum(1 for a in self.agents.values() if a.status == "online")
        agents = max(1, online)
        return position, round(self.average_wait * position / agents)
