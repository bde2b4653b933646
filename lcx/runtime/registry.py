"""The registry of live actors, for metrics, status pages and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lcx.runtime.ref import ActorRef


@dataclass(frozen=True)
class RuntimeSnapshot:
    """Live actors, waiting messages and restarts, each by actor kind."""

    actors_by_kind: dict[str, int] = field(default_factory=dict)
    mailbox_depth_by_kind: dict[str, int] = field(default_factory=dict)
    restarts_by_kind: dict[str, int] = field(default_factory=dict)
    crashes_by_kind: dict[str, int] = field(default_factory=dict)


class Registry:
    """Knows every actor that is alive (including one waiting to be restarted).

    Supervisors register an actor's ref when its mailbox is created and unregister it when
    the actor is gone for good; they also count crashes and restarts here.
    """

    def __init__(self) -> None:
        self._live: dict[int, ActorRef] = {}
        self._restarts: Counter[str] = Counter()
        self._crashes: Counter[str] = Counter()

    def register(self, ref: ActorRef) -> None:
        """Count ``ref`` as a live actor. Idempotent."""
        self._live[id(ref)] = ref

    def unregister(self, ref: ActorRef) -> None:
        """Stop counting ``ref``. Idempotent."""
        self._live.pop(id(ref), None)

    def note_crash(self, kind: str) -> None:
        """Count one crash of an actor of ``kind``."""
        self._crashes[kind] += 1

    def note_restart(self, kind: str) -> None:
        """Count one restart of an actor of ``kind``."""
        self._restarts[kind] += 1

    def live(self, kind: str | None = None) -> list[ActorRef]:
        """The live actors, optionally of one kind."""
        return [ref for ref in self._live.values() if kind is None or ref.kind == kind]

    def snapshot(self) -> RuntimeSnapshot:
        """A point-in-time copy of the counts."""
        actors: Counter[str] = Counter()
        depth: Counter[str] = Counter()
        for ref in self._live.values():
            actors[ref.kind] += 1
            depth[ref.kind] += ref.mailbox.depth
        return RuntimeSnapshot(dict(actors), dict(depth), dict(self._restarts),
                               dict(self._crashes))
