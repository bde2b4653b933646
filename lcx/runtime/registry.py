"""The registry of live actors, for metrics, status pages and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lcx.runtime.ref import ActorRef


@dataclass(frozen=True)
class RuntimeSnapshot:
    """Live actors, waiting messages and restarts, each by actor kind."""

    actors_by_kind: dict[str, int] = field(default_factory=dict)
    """Running children (actors, services, supervisors) by kind."""
    mailbox_depth_by_kind: dict[str, int] = field(default_factory=dict)
    restarts_by_kind: dict[str, int] = field(default_factory=dict)
    crashes_by_kind: dict[str, int] = field(default_factory=dict)


class Registry:
    """Knows what runs in one runtime: running children by kind, and the mailboxes of
    actors (including one waiting to be restarted, whose mailbox still fills).

    Supervisors note each child incarnation that starts and stops, register an actor's
    ref while its mailbox exists, and count crashes and restarts here.
    """

    def __init__(self) -> None:
        self._live: dict[int, ActorRef] = {}
        self._running: Counter[str] = Counter()
        self._restarts: Counter[str] = Counter()
        self._crashes: Counter[str] = Counter()

    def register(self, ref: ActorRef) -> None:
        """Count ``ref`` as a live actor. Idempotent."""
        self._live[id(ref)] = ref

    def unregister(self, ref: ActorRef) -> None:
        """Stop counting ``ref``. Idempotent."""
        self._live.pop(id(ref), None)

    def note_started(self, kind: str) -> None:
        """Count one more running child of ``kind``."""
        self._running[kind] += 1

    def note_stopped(self, kind: str) -> None:
        """Count one fewer running child of ``kind``."""
        self._running[kind] -= 1

    def note_crash(self, kind: str) -> None:
        """Count one crash of an actor of ``kind``."""
        self._crashes[kind] += 1

    def note_restart(self, kind: str) -> None:
        """Count one restart of an actor of ``kind``."""
        self._restarts[kind] += 1

    def live(self, kind: str | None = None) -> list[ActorRef]:
        """The refs of actors whose mailbox is open, optionally of one kind."""
        return [ref for ref in self._live.values() if kind is None or ref.kind == kind]

    def snapshot(self) -> RuntimeSnapshot:
        """A point-in-time copy of the counts."""
        depth: Counter[str] = Counter()
        for ref in self._live.values():
            depth[ref.kind] += ref.mailbox.depth
        running = {kind: n for kind, n in self._running.items() if n > 0}
        return RuntimeSnapshot(running, dict(depth), dict(self._restarts), dict(self._crashes))
