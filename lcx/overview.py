"""The supervisors' live overview (API.md section 6): queues and agents of an organization.

:func:`build_overview` is pure: it turns the counts of the open conversations (from the
store, :func:`open_figures`), the cluster-wide presence view and the organization's chat
limit into the document.
:class:`OverviewFeed` computes it for the route and for the supervisors' sockets, at most
once a second per organization (a cached answer younger than that is reused), and only
when someone asks: nothing on the message path pays for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import msgspec
import trio

from lcx.model import iso, parse_iso, utc_now
from lcx.store.base import Tx

__all__ = ["AgentFigures", "OpenFigures", "Overview", "OverviewFeed", "PresenceView",
           "QueueFigures", "build_overview", "open_figures", "same_figures"]

PERIOD_SECONDS = 1.0
"""The shortest time between two computations of one organization's overview."""


class QueueFigures(msgspec.Struct, rename="camel", kw_only=True):
    """One user group's queue."""

    user_group_id: str
    waiting: int
    longest_wait_seconds: int
    agents_online: int
    agents_away: int
    active_conversations: int


class AgentFigures(msgspec.Struct, rename="camel", kw_only=True):
    """One connected agent."""

    id: str
    name: str | None
    status: str
    active_chats: int
    max_chats: int
    groups: list[str]
    connected_since: str | None


class Overview(msgspec.Struct, rename="camel", kw_only=True):
    """``GET .../livechat-overview`` and the ``overview`` notification."""

    queues: list[QueueFigures]
    agents: list[AgentFigures]
    at: str


@dataclass(frozen=True, slots=True)
class OpenFigures:
    """What the overview needs of an organization's open conversations, per user group.

    Read by :func:`open_figures` as counts (the store aggregates the waiting ones), so a
    computation costs one row per user group for the queue and one per active
    conversation for the agents' load, not one decoded row per open conversation.
    """

    waiting: dict[str, int]
    """Pending conversations per user group."""
    oldest_queued_at: dict[str, str]
    """The earliest ``queued_at`` of a pending conversation, per user group."""
    active: dict[str, int]
    """Active conversations per user group."""
    chats: dict[str, int]
    """Active conversations each agent is in and has not left, per agent."""


@dataclass(frozen=True)
class PresenceView:
    """What the overview needs of one connected agent."""

    agent_id: str
    name: str | None
    status: str
    groups: tuple[str, ...]
    connected_since: str | None = None


class _Present(msgspec.Struct, rename="camel"):
    """The two fields of a stored participant the load count reads."""

    id: str
    left_at: str | None = None


_participants = msgspec.json.Decoder(list[_Present])


def open_figures(tx: Tx, org_id: str) -> OpenFigures:
    """The counts of the organization's pending and active conversations."""
    waiting: dict[str, int] = {}
    oldest: dict[str, str] = {}
    # ISO timestamps in one format and zone sort as text, so min() is the earliest
    for row in tx.fetchall("SELECT user_group_id, count(*) AS n, min(queued_at) AS oldest "
                           "FROM conversations WHERE org_id = ? AND status = 'pending' "
                           "GROUP BY user_group_id", (org_id,)):
        waiting[row["user_group_id"]] = int(row["n"])
        if row["oldest"] is not None:
            oldest[row["user_group_id"]] = row["oldest"]
    active: dict[str, int] = {}
    chats: dict[str, int] = {}
    for row in tx.fetchall("SELECT user_group_id, participants FROM conversations "
                           "WHERE org_id = ? AND status = 'active'", (org_id,)):
        group = row["user_group_id"]
        active[group] = active.get(group, 0) + 1
        for participant in {p.id for p in _participants.decode(row["participants"])
                            if p.left_at is None}:
            chats[participant] = chats.get(participant, 0) + 1
    return OpenFigures(waiting, oldest, active, chats)


def build_overview(figures: OpenFigures, presence: Iterable[PresenceView], *,
                   max_chats: int, now: datetime) -> Overview:
    """The overview of one organization; queues and agents sorted by id.

    A queue is listed when it has waiting or active conversations or a connected agent.
    """
    agents = sorted(presence, key=lambda p: p.agent_id)
    online: dict[str, int] = {}
    away: dict[str, int] = {}
    for agent in agents:
        counts = online if agent.status == "online" else away if agent.status == "away" \
            else None
        for group in agent.groups:
            if counts is not None:
                counts[group] = counts.get(group, 0) + 1
    groups = sorted({*figures.waiting, *figures.active, *(g for a in agents for g in a.groups)})
    queues = []
    for group in groups:
        oldest = figures.oldest_queued_at.get(group)
        longest = (now - parse_iso(oldest)).total_seconds() if oldest is not None else 0.0
        queues.append(QueueFigures(
            user_group_id=group, waiting=figures.waiting.get(group, 0),
            longest_wait_seconds=max(0, int(longest)),
            agents_online=online.get(group, 0), agents_away=away.get(group, 0),
            active_conversations=figures.active.get(group, 0)))
    return Overview(queues=queues, agents=[AgentFigures(
        id=a.agent_id, name=a.name, status=a.status,
        active_chats=figures.chats.get(a.agent_id, 0), max_chats=max_chats,
        groups=list(a.groups), connected_since=a.connected_since)
        for a in agents], at=iso(now))


class OverviewFeed:
    """Computes organizations' overviews on demand, at most once per ``period`` each."""

    def __init__(self, rows: Callable[[str], Awaitable[OpenFigures]],
                 presence: Callable[[str], list[PresenceView]],
                 max_chats: Callable[[str], Awaitable[int]], *,
                 period: float = PERIOD_SECONDS) -> None:
        self._rows = rows
        self._presence = presence
        self._max_chats = max_chats
        self._period = period
        self._cache: dict[str, tuple[float, Overview]] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def current(self, org_id: str) -> Overview:
        """The organization's overview, at most ``period`` old."""
        lock = self._locks.setdefault(org_id, trio.Lock())
        async with lock:
            cached = self._cache.get(org_id)
            if cached is not None and trio.current_time() - cached[0] < self._period:
                return cached[1]
            figures = await self._rows(org_id)
            limit = await self._max_chats(org_id)
            overview = build_overview(figures, self._presence(org_id), max_chats=limit,
                                      now=utc_now())
            self._cache[org_id] = (trio.current_time(), overview)
            return overview


def same_figures(a: Overview, b: Overview) -> bool:
    """Whether two overviews differ only in their ``at``."""
    return a.queues == b.queues and a.agents == b.agents

