"""Presence: which agents are connected, online or away, across the cluster.

Each agent session announces itself on the bus when it changes and every
``PRESENCE_REFRESH_SECONDS``; every instance keeps what it hears in a
:class:`PresenceBook`, and an entry not refreshed within ``PRESENCE_TTL_SECONDS`` is
forgotten (its instance died without saying so).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import msgspec
import trio

from lcx.cluster.bus import Bus

PRESENCE_REFRESH_SECONDS = 10.0
PRESENCE_TTL_SECONDS = 3 * PRESENCE_REFRESH_SECONDS
PRESENCE_TOPIC = "presence"


class Presence(msgspec.Struct, kw_only=True):
    """What the cluster knows of a connected agent, for routing, availability and metrics."""

    org_id: str
    agent_id: str
    status: str
    """online, away or offline (offline entries are removed)."""
    groups: tuple[str, ...] = ()
    name: str | None = None
    connected_since: str | None = None
    """When the agent's first socket connected (RFC 3339), for the supervisors' overview."""
    seen: float = 0.0
    """Local ``trio.current_time()`` when this instance last heard of it."""


class PresenceBook:
    """This instance's view of every connected agent; see the module docstring."""

    def __init__(self, bus: Bus, clock: Callable[[], float] = trio.current_time) -> None:
        self._bus = bus
        self._clock = clock
        self._entries: dict[tuple[str, str], Presence] = {}
        self._online: Counter[tuple[str, str | None]] = Counter()
        """Online agents by (org, group) and by (org, None): counting costs O(1)."""
        self._swept_at = -math.inf
        bus.subscribe(PRESENCE_TOPIC, self._heard)

    def current(self) -> dict[tuple[str, str], Presence]:
        """Connected agents by (org, agent), stale entries dropped (the sweep for them runs
        at most once a second: it costs O(agents))."""
        now = self._clock()
        if now - self._swept_at >= 1.0:
            self._swept_at = now
            horizon = now - PRESENCE_TTL_SECONDS
            for key in [k for k, p in self._entries.items() if p.seen < horizon]:
                self._drop(key)
        return self._entries

    def get(self, org_id: str, agent_id: str) -> Presence | None:
        """The agent's presence, if it is connected anywhere (O(1))."""
        presence = self._entries.get((org_id, agent_id))
        if presence is None or presence.seen < self._clock() - PRESENCE_TTL_SECONDS:
            return None
        return presence

    def knows(self, org_id: str, agent_id: str) -> bool:
        """Whether the agent was heard of (stale or not: a cheap check for hot paths)."""
        return (org_id, agent_id) in self._entries

    def in_group(self, org_id: str, user_group_id: str) -> list[Presence]:
        """The connected agents of one of an organization's user groups."""
        return [p for (org, _), p in self.current().items()
                if org == org_id and user_group_id in p.groups]

    def online(self, org_id: str, user_group_id: str | None = None) -> int:
        """How many agents of an organization (optionally of one group) are online."""
        self.current()
        return self._online[(org_id, user_group_id)]

    def announce(self, presence: Presence) -> None:
        """Record an agent's presence here and tell every other instance."""
        self._note(presence)
        self._bus.publish(None, PRESENCE_TOPIC, msgspec.msgpack.encode(presence))

    def _heard(self, sender: str, payload: bytes) -> None:
        if sender != self._bus.instance_id:
            self._note(msgspec.msgpack.decode(payload, type=Presence))

    def _note(self, presence: Presence) -> None:
        key = (presence.org_id, presence.agent_id)
        self._drop(key)
        if presence.status != "offline":
            self._entries[key] = msgspec.structs.replace(presence, seen=self._clock())
            self._count(presence, 1)

    def _drop(self, key: tuple[str, str]) -> None:
        gone = self._entries.pop(key, None)
        if gone is not None:
            self._count(gone, -1)

    def _count(self, presence: Presence, change: int) -> None:
        if presence.status != "online":
            return
        for group in (None, *dict.fromkeys(presence.groups)):
            place = (presence.org_id, group)
            self._online[place] += change
            if not self._online[place]:
                del self._online[place]
