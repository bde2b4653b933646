"""Placement: which live instance owns each keyed actor (rendezvous hashing).

Every instance computes the same owner for a key from the same member view, with no
coordination: the owner is the member with the highest hash of (member, key). When a
member leaves only its keys move; when one joins it takes about 1/N of the keys. Draining
members own nothing (unless every member is draining). Views differ for a moment while
membership changes; the store's uniqueness rules make a brief double ownership harmless.

A member found dead before its lease runs out (a call to it reached nobody) is marked
*suspect*: it owns nothing here until ``suspect_seconds`` pass (by then its lease has run
out and the membership agrees), so its keys are placed again at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

import trio

from lcx.cluster.bus import Bus, MemberInfo


def _weight(member: str, key: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: str, members: Iterable[str]) -> str | None:
    """The member that owns ``key`` (None when there are no members)."""
    return max(members, key=lambda member: (_weight(member, key), member), default=None)


def candidates(members: Mapping[str, MemberInfo]) -> list[str]:
    """The members that may own actors: the non-draining ones (all, if every one drains)."""
    serving = [m for m, info in members.items() if not info.draining]
    return serving or list(members)


class Placement:
    """Answers "who owns this key?" from the bus's current member view."""

    def __init__(self, bus: Bus, *, suspect_seconds: float = 10.0,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.bus = bus
        self.instance_id = bus.instance_id
        self.suspect_seconds = suspect_seconds
        self._clock = clock
        self._suspects: dict[str, float] = {}
        """Members found dead, with the time until which they own nothing here."""

    def owner(self, kind: str, key: str) -> str:
        """The owner of ``kind:key`` (this instance when the view is empty)."""
        return owner_of(f"{kind}:{key}", self._candidates()) or self.instance_id

    def is_local(self, kind: str, key: str) -> bool:
        """Whether this instance owns ``kind:key``."""
        return self.owner(kind, key) == self.instance_id

    def suspect(self, instance_id: str) -> None:
        """``instance_id`` did not take a call: place its keys elsewhere for a while."""
        if instance_id != self.instance_id:
            self._suspects[instance_id] = self._clock() + self.suspect_seconds

    def suspected(self) -> set[str]:
        """The members owning nothing here because they were found dead."""
        if self._suspects:
            now = self._clock()
            for member in [m for m, until in self._suspects.items() if until <= now]:
                del self._suspects[member]
        return set(self._suspects)

    def _candidates(self) -> list[str]:
        serving = candidates(self.bus.members())
        suspects = self.suspected()
        if not suspects:
            return serving
        return [m for m in serving if m not in suspects] or serving
