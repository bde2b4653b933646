"""Placement: which live instance owns each keyed actor (rendezvous hashing).

Every instance computes the same owner for a key from the same member view, with no
coordination: the owner is the member with the highest hash of (member, key). When a
member leaves only its keys move; when one joins it takes about 1/N of the keys. Draining
members own nothing (unless every member is draining). Views differ for a moment while
membership changes; the store's uniqueness rules make a brief double ownership harmless.

A member found dead before its lease runs out (a call to it reached nobody) is marked
*suspect*: it owns nothing here until ``suspect_seconds`` pass (by then its lease has run
out and the membership agrees), so its keys are placed again at once.

Routing asks for an owner on every actor message, so an answer costs O(1): the bus keeps
a versioned :class:`~lcx.cluster.bus.MemberSet` (no actor report is built for it), a
single candidate owns everything without hashing, and with several the owners already
computed are cached until the member set's version (or the set of suspects) changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import trio

from lcx.cluster.bus import Bus

OWNER_CACHE_SIZE = 100_000
"""Owners remembered per member-set version; past this the cache starts afresh."""


def _weight(member: str, key: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: str, members: Iterable[str]) -> str | None:
    """The member that owns ``key`` (None when there are no members)."""
    return max(members, key=lambda member: (_weight(member, key), member), default=None)


class Placement:
    """Answers "who owns this key?" from the bus's current member set, in O(1)."""

    def __init__(self, bus: Bus, *, suspect_seconds: float = 10.0,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.bus = bus
        self.instance_id = bus.instance_id
        self.suspect_seconds = suspect_seconds
        self._clock = clock
        self._suspects: dict[str, float] = {}
        """Members found dead, with the time until which they own nothing here."""
        self._suspicion = 0
        """Bumped whenever the set of suspects changes (the cache's second key)."""
        self._version: tuple[int, int] | None = None
        self._owners: dict[str, str] = {}

    def owner(self, kind: str, key: str) -> str:
        """The owner of ``kind:key`` (this instance when the view is empty)."""
        view = self.bus.member_set()
        members = view.candidates
        if self._suspects:
            members = self._without_suspects(members)
        if len(members) <= 1:
            return members[0] if members else self.instance_id
        version = (view.version, self._suspicion)
        if version != self._version:
            self._owners = {}
            self._version = version
        name = f"{kind}:{key}"
        found = self._owners.get(name)
        if found is None:
            if len(self._owners) >= OWNER_CACHE_SIZE:
                self._owners = {}
            found = self._owners[name] = owner_of(name, members) or self.instance_id
        return found

    def is_local(self, kind: str, key: str) -> bool:
        """Whether this instance owns ``kind:key``."""
        return self.owner(kind, key) == self.instance_id

    def suspect(self, instance_id: str) -> None:
        """``instance_id`` did not take a call: place its keys elsewhere for a while."""
        if instance_id != self.instance_id:
            if instance_id not in self._suspects:
                self._suspicion += 1
            self._suspects[instance_id] = self._clock() + self.suspect_seconds

    def suspected(self) -> set[str]:
        """The members owning nothing here because they were found dead."""
        if self._suspects:
            now = self._clock()
            expired = [m for m, until in self._suspects.items() if until <= now]
            for member in expired:
                del self._suspects[member]
            if expired:
                self._suspicion += 1
        return set(self._suspects)

    def _without_suspects(self, members: tuple[str, ...]) -> tuple[str, ...]:
        suspects = self.suspected()
        kept = tuple(m for m in members if m not in suspects)
        return kept or members
