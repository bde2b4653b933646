"""The supervisors' live overview (API.md section 6): queues and agents of an organization.

:func:`build_overview` is pure: it turns the open conversations (from the store), the
cluster-wide presence view and the organization's chat limit into the document.
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

__all__ = ["AgentFigures", "OpenRow", "Overview", "OverviewFeed", "PresenceView",
           "QueueFigures", "build_overview", "open_rows", "same_figures"]

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


@dataclass(frozen=True)
class OpenRow:
    """What the overview needs of one open conversation."""

    user_group_id: str
    status: str
    queued_at: str
    agents: tuple[str, ...]
    """Agents in it who have not left."""


@dataclass(frozen=True)
class PresenceView:
    """What the overview needs of one connected agent."""

    agent_id: str
    name: str | None
    status: str
    groups: tuple[str, ...]
    connected_since: str | None = None


def open_rows(tx: Tx, org_id: str) -> list[OpenRow]:
    """The organization's pending and active conversations."""
    rows = tx.fetchall("SELECT user_group_id, status, queued_at, participants "
                       "FROM conversations WHERE org_id = ? AND status IN ('pending', 'active')",
                       (org_id,))
    found: list[OpenRow] = []
    for row in rows:
        participants = msgspec.json.decode(row["participants"])
        agents = tuple(p["id"] for p in participants if p.get("leftAt") is None)
        found.append(OpenRow(row["user_group_id"], row["status"], row["queued_at"], agents))
    return found


def build_overview(rows: Iterable[OpenRow], presence: Iterable[PresenceView], *,
                   max_chats: int, now: datetime) -> Overview:
    """The overview of one organization; queues and agents sorted by id.

    A queue is listed when it has waiting or active conversations or a connected agent.
    """
    rows = list(rows)
    agents = sorted(presence, key=lambda p: p.agent_id)
    groups = sorted({r.user_group_id for r in rows} | {g for a in agents for g in a.groups})
    chats: dict[str, int] = {}
    for row in rows:
        if row.status == "active":
            for agent_id in row.agents:
                chats[agent_id] = chats.get(agent_id, 0) + 1
    queues = []
    for group in groups:
        waiting = [r for r in rows if r.user_group_id == group and r.status == "pending"]
        longest = max((now - parse_iso(r.queued_at)).total_seconds() for r in waiting) \
            if waiting else 0.0
        queues.append(QueueFigures(
            user_group_id=group, waiting=len(waiting),
            longest_wait_seconds=max(0, int(longest)),
            agents_online=sum(1 for a in agents if a.status == "online" and group in a.groups),
            agents_away=sum(1 for a in agents if a.status == "away" and group in a.groups),
            active_conversations=sum(1 for r in rows
                                     if r.user_group_id == group and r.status == "active")))
    return Overview(queues=queues, agents=[AgentFigures(
        id=a.agent_id, name=a.name, status=a.status, active_chats=chats.get(a.agent_id, 0),
        max_chats=max_chats, groups=list(a.groups), connected_since=a.connected_since)
        for a in agents], at=iso(now))


class OverviewFeed:
    """Computes organizations' overviews on demand, at most once per ``period`` each."""

    def __init__(self, rows: Callable[[str], Awaitable[list[OpenRow]]],
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
            rows = await self._rows(org_id)
            limit = await self._max_chats(org_id)
            overview = build_overview(rows, self._presence(org_id), max_chats=limit,
                                      now=utc_now())
            self._cache[org_id] = (trio.current_time(), overview)
            return overview


def same_figures(a: Overview, b: Overview) -> bool:
    """Whether two overviews differ only in their ``at``."""
    return a.queues == b.queues and a.agents == b.agents

