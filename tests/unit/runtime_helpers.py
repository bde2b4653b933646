"""Small actors and children used by the runtime tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from lcx.errors import Conflict
from lcx.runtime import Actor, ActorContext, ChildSpec, Restart, actor_child


@dataclass
class Journal:
    """A shared record of what test actors did, with the (mock) time of each entry."""

    entries: list[tuple[float, str]] = field(default_factory=list)

    def write(self, what: str) -> None:
        self.entries.append((trio.current_time(), what))

    def names(self) -> list[str]:
        return [what for _, what in self.entries]

    def times(self, what: str) -> list[float]:
        return [at for at, entry in self.entries if entry == what]


class Crash(Exception):
    """A deliberate bug inside a test actor."""


class Echo(Actor):
    """Answers ``("echo", x)`` with x, crashes on ``"crash"``, refuses ``"refuse"``,
    stops itself on ``"stop"``, sleeps on ``("sleep", s)`` and counts what it saw."""

    def __init__(self, name: str, journal: Journal) -> None:
        self.name = name
        self.journal = journal
        self.seen = 0

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.journal.write(f"start {self.name}")

    async def receive(self, message: Any) -> Any:
        self.seen += 1
        match message:
            case ("echo", value):
                return value
            case "crash":
                raise Crash(f"{self.name} crashed")
            case "refuse":
                raise Conflict("refused on purpose")
            case "stop":
                self.ctx.stop()
                return None
            case ("sleep", seconds):
                await trio.sleep(seconds)
                return "slept"
            case "seen":
                return self.seen
            case ("timer", delay, payload, key):
                self.ctx.send_after(delay, payload, key=key)
                return None
            case ("aligned timer", delay, payload, align):
                self.ctx.send_after(delay, payload, align=align)
                return None
            case _:
                self.journal.write(f"{self.name} got {message}")
                return None

    async def on_stop(self) -> None:
        self.journal.write(f"stop {self.name}")


def echo_child(name: str, journal: Journal, *, restart: Restart = Restart.PERMANENT,
               mailbox_size: int = 10, shutdown_timeout: float = 5.0) -> ChildSpec:
    """A supervised Echo actor."""
    return actor_child(name, lambda: Echo(name, journal), kind="echo", restart=restart,
                       mailbox_size=mailbox_size, shutdown_timeout=shutdown_timeout)


class FailingAtStart(Actor):
    """Crashes in ``on_start`` every time (a crash loop)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def on_start(self, ctx: ActorContext) -> None:
        self.journal.write("attempt")
        raise Crash("cannot start")


class Stubborn(Actor):
    """On a graceful stop, keeps working for ``linger`` seconds even if cancelled."""

    def __init__(self, name: str, journal: Journal, linger: float) -> None:
        self.name = name
        self.journal = journal
        self.linger = linger

    async def on_start(self, ctx: ActorContext) -> None:
        self.journal.write(f"start {self.name}")

    async def on_stop(self) -> None:
        self.journal.write(f"stopping {self.name}")
        try:
            await trio.sleep(1000)
        except trio.Cancelled:
            self.journal.write(f"cancelled {self.name}")
            with trio.CancelScope(shield=True):
                await trio.sleep(self.linger)
            self.journal.write(f"stopped {self.name}")
            raise


def stubborn_child(name: str, journal: Journal, *, linger: float,
                   shutdown_timeout: float) -> ChildSpec:
    """A supervised Stubborn actor."""
    return actor_child(name, lambda: Stubborn(name, journal, linger), kind="stubborn",
                       shutdown_timeout=shutdown_timeout)


def factory_of(cls: Callable[..., Actor], *args: Any) -> Callable[[], Actor]:
    """A zero-argument factory for ``cls(*args)``."""
    return lambda: cls(*args)
