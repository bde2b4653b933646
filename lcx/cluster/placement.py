"""Placement: which live instance owns each keyed actor (rendezvous hashing).

Every instance computes the same owner for a key from the same member view, with no
coordination: the owner is the member with the highest hash of (member, key). When a
member leaves only its keys move; when one joins it takes about 1/N of the keys. Draining
members own nothing (unless every member is draining). Views differ for a moment while
membership changes; the store's uniqueness rules make a brief double ownership harmless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

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

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.instance_id = bus.instance_id

    def owner(self, kind: str, key: str) -> str:
        """The owner of ``kind:key`` (this instance when the view is empty)."""
        return owner_of(f"{kind}:{key}", candidates(self.bus.members())) or self.instance_id

    def is_local(self, kind: str, key: str) -> bool:
        """Whether this instance owns ``kind:key``."""
        return self.owner(kind, key) == self.instance_id
