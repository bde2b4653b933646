"""The deadlines of pending asks, kept by one task per Trio run instead of a scope per ask.

A cancel scope with a deadline costs several microseconds to enter and leave, and every
``ask`` needs a deadline. Here an ask only pushes (deadline, reply) on a heap; one system
task sleeps until the earliest deadline and fails the replies still empty by then with
:class:`~lcx.errors.AskTimeout`. Answered asks leave their entries behind; each time the
keeper wakes it drops every answered entry at the top of the heap along with the due
ones, so it sleeps until the deadline of the oldest ask still waiting: with asks answered
in time it wakes about once per ``timeout``, not once per ask, and the heap holds at most
the asks of the last ``timeout`` seconds or so. Asks with the usual timeout arrive in
deadline order, so the sleeper is woken early only when the heap was empty.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from lcx.errors import AskTimeout
from lcx.runtime.deadline_keeper import DeadlineKeeper, keeper_of_run
from lcx.runtime.mailbox import Reply

Describe = Callable[[], str]
"""Builds the timeout's message (only when the ask does time out)."""


def _fail_if_waiting(item: tuple[Reply, Describe], now: float) -> None:
    reply, describe = item
    if not reply.done:
        reply.fail(AskTimeout(describe()))


def _answered(item: tuple[Reply, Describe]) -> bool:
    return item[0].done


class AskDeadlines(DeadlineKeeper[tuple[Reply, Describe]]):
    """Fails asks whose answer did not come in time; see the module docstring."""

    def __init__(self) -> None:
        super().__init__("lcx.ask_deadlines", _fail_if_waiting, settled=_answered)

    def watch_ask(self, deadline: float, reply: Reply, describe: Describe) -> None:
        """Fail ``reply`` with ``AskTimeout(describe())`` at ``deadline`` if still empty."""
        self.watch(deadline, (reply, describe))


_DEADLINES: trio.lowlevel.RunVar[AskDeadlines] = trio.lowlevel.RunVar("lcx_ask_deadlines")


def ask_deadlines() -> AskDeadlines:
    """The deadline keeper of the current Trio run (created on first use)."""
    return keeper_of_run(_DEADLINES, AskDeadlines)
