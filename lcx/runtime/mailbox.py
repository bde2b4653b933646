"""Bounded mailboxes, the envelopes they carry, and the one-shot reply slots of ``ask``.

A mailbox belongs to whoever supervises the actor, not to the actor's task: a restarted
actor reads the same mailbox and finds the messages that were waiting for it.

The mailbox's one reader (the actor's task) waits for a message with :meth:`Mailbox.wait`:
it parks on the mailbox itself and whoever enqueues wakes it; its idle deadline is kept by
one system task per Trio run (:func:`reader_deadlines`, a heap holding about one entry
per waiting mailbox) instead of a cancel scope entered and left for every wait.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

import outcome
import trio

from lcx.errors import MailboxClosed, MailboxFull
from lcx.runtime.deadline_keeper import DeadlineKeeper, keeper_of_run

_TAKEN: outcome.Outcome[Any] = outcome.Value(None)
"""What a slot holds once its asker took the answer (it stays ``done``)."""


class Reply:
    """The slot an ``ask`` waits on; the actor fills it exactly once.

    A one-shot slot rather than an event plus a value: the asker parks on it directly
    (``wait_task_rescheduled``) and the fill wakes it, which costs one task switch and no
    Trio ``Event``/``ParkingLot``. Only one task may wait on a slot.
    """

    __slots__ = ("_outcome", "_task")

    def __init__(self) -> None:
        self._outcome: outcome.Outcome[Any] | None = None
        self._task: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        """Whether the slot has been filled."""
        return self._outcome is not None

    def resolve(self, value: object) -> None:
        """Fill the slot with a value; later fills are ignored."""
        self._fill(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        """Fill the slot with an error the asker will raise; later fills are ignored."""
        self._fill(outcome.Error(error))

    def _fill(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is None:
            self._outcome = result
            task, self._task = self._task, None
            if task is not None:
                trio.lowlevel.reschedule(task)

    async def wait(self) -> Any:
        """Wait for the slot to be filled and return its value (or raise its error).

        A checkpoint even when the slot is already filled; cancellable while it waits
        (the slot may still be filled later: that answer is dropped).
        """
        if self._outcome is None:
            if self._task is not None:
                raise RuntimeError("another task already waits on this reply")
            self._task = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint()
        result = self._outcome
        assert result is not None
        # the deadline keeper may hold this slot for a while: it keeps no answer alive
        self._outcome = _TAKEN
        return result.unwrap()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message in a mailbox, with the reply slot when it was sent by ``ask``."""

    message: object
    reply: Reply | None = None


class Mailbox:
    """A bounded FIFO of envelopes that outlives the incarnations of its actor.

    ``put`` waits while the mailbox is full (backpressure); ``put_nowait`` raises
    :class:`MailboxFull` instead. Once closed, both raise :class:`MailboxClosed`.

    Its own deque, waiting senders and one waiting reader, with the semantics of the Trio
    memory channel it replaced (a waiting reader is handed the next envelope, which takes
    no room; a sender waiting for room moves in, in turn, as the reader takes one; a full
    mailbox stays full while senders wait), minus the channel's machinery: an empty
    :meth:`take` raises nothing, a send checks three fields.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a mailbox holds at least one message")
        self.capacity = capacity
        self._closed = False
        self._buffer: collections.deque[Envelope] = collections.deque()
        self._senders: collections.OrderedDict[trio.lowlevel.Task, Envelope] = \
            collections.OrderedDict()
        """Senders waiting in :meth:`put` for room, oldest first, with their envelopes."""
        self._reader: trio.lowlevel.Task | None = None
        """The task parked in :meth:`wait`, if one is (the mailbox is empty then)."""
        self._reader_deadline = math.inf
        self._watched: float | None = None
        """The deadline of this mailbox's entry with the deadline keeper (None: none known)."""

    def reopen(self) -> None:
        """Take messages again after ``close`` (for an actor started anew). Idempotent."""
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the mailbox refuses new messages."""
        return self._closed

    @property
    def depth(self) -> int:
        """How many messages wait to be read."""
        return len(self._buffer)

    async def put(self, envelope: Envelope) -> None:
        """Enqueue, waiting while the mailbox is full.

        Raises:
            MailboxClosed: the mailbox is (or gets) closed before the message is enqueued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise MailboxClosed("the actor is stopped")
        if self._reader is not None:  # handed to the waiting reader
            self._wake_reader(outcome.Value(envelope))
        elif len(self._buffer) < self.capacity:
            self._buffer.append(envelope)
        else:
            task = trio.lowlevel.current_task()
            self._senders[task] = envelope

            def abort(_: object) -> trio.lowlevel.Abort:
                self._senders.pop(task, None)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)  # moved in, or closed
            return
        await trio.lowlevel.cancel_shielded_checkpoint()

    def put_nowait(self, envelope: Envelope) -> None:
        """Enqueue without waiting.

        Raises:
            MailboxFull: the mailbox is at capacity; nothing was enqueued.
            MailboxClosed: the mailbox is closed.
        """
        if not self.offer(envelope):
            raise MailboxFull(f"mailbox full ({self.capacity} messages)")

    def offer(self, envelope: Envelope) -> bool:
        """Enqueue without waiting if there is room; False (nothing enqueued) when full.

        Never jumps the queue: while senders wait in ``put`` the mailbox stays full.

        Raises:
            MailboxClosed: the mailbox is closed.
        """
        if self._closed:
            raise MailboxClosed("the actor is stopped")
        if self._reader is not None:  # handed to the waiting reader
            self._wake_reader(outcome.Value(envelope))
            return True
        if len(self._buffer) >= self.capacity:
            return False
        self._buffer.append(envelope)
        return True

    def take(self) -> Envelope | None:
        """The oldest envelope if one waits, else None (never waits).

        Raises:
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        buffer = self._buffer
        if buffer:
            envelope = buffer.popleft()
            if self._senders:  # the oldest waiting sender moves in
                task, waiting = self._senders.popitem(last=False)
                buffer.append(waiting)
                trio.lowlevel.reschedule(task)
            return envelope
        if self._closed:
            raise trio.EndOfChannel
        return None

    async def get(self) -> Envelope:
        """Take the oldest envelope, waiting for one.

        Raises:
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        while True:
            envelope = self.take()
            if envelope is not None:
                await trio.lowlevel.checkpoint()
                return envelope
            handed = await self.wait()
            if handed is not None:
                return handed

    async def wait(self, deadline: float = math.inf) -> Envelope | None:
        """Wait, as the mailbox's one reader, for the next envelope: it is handed over
        directly (it never takes room in the mailbox, as with a memory channel's waiting
        receiver); None once ``deadline`` (Trio time) passed or :meth:`interrupt` was
        called.

        Call it only when :meth:`take` found nothing. Cancellable.

        Raises:
            trio.EndOfChannel: the mailbox was closed meanwhile.
            RuntimeError: another task already waits.
        """
        if self._reader is not None:
            raise RuntimeError("another task already waits on this mailbox")
        if self._closed:
            raise trio.EndOfChannel
        self._reader = trio.lowlevel.current_task()
        self._reader_deadline = deadline
        if deadline != math.inf and (self._watched is None or self._watched > deadline):
            self._watched = deadline
            reader_deadlines().watch(deadline, self)

        def abort(_: object) -> trio.lowlevel.Abort:
            self._reader = None
            return trio.lowlevel.Abort.SUCCEEDED

        handed: Envelope | None = await trio.lowlevel.wait_task_rescheduled(abort)
        return handed

    def interrupt(self) -> None:
        """Wake the reader waiting in :meth:`wait` (it gets None), if one waits."""
        self._wake_reader(outcome.Value(None))

    def _wake_reader(self, result: outcome.Outcome[Envelope | None]) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader, result)

    def _deadline_came(self, now: float) -> None:
        """The deadline keeper: this mailbox's entry is due."""
        self._watched = None
        if self._reader is None:
            return
        if self._reader_deadline <= now:
            self._wake_reader(outcome.Value(None))
        elif self._reader_deadline != math.inf:  # waiting again since, until later
            self._watched = self._reader_deadline
            reader_deadlines().watch(self._reader_deadline, self)

    def close(self) -> None:
        """Refuse new messages and drop those still waiting, failing their asks with
        :class:`MailboxClosed` (they were never read, so resending them is safe).

        Idempotent. Senders blocked in ``put`` get :class:`MailboxClosed`; a reader waiting
        in :meth:`wait` gets ``trio.EndOfChannel``.
        """
        if self._closed:
            return
        self._closed = True
        self._wake_reader(outcome.Error(trio.EndOfChannel()))
        senders, self._senders = self._senders, collections.OrderedDict()
        for task in senders:
            trio.lowlevel.reschedule(task, outcome.Error(
                MailboxClosed("the actor is stopped")))
        buffer = self._buffer
        while buffer:
            envelope = buffer.popleft()
            if envelope.reply is not None:
                envelope.reply.fail(MailboxClosed("the actor stopped before reading this message"))


def _deadline_came(mailbox: Mailbox, now: float) -> None:
    mailbox._deadline_came(now)


def _new_reader_deadlines() -> DeadlineKeeper[Mailbox]:
    """Wakes readers whose :meth:`Mailbox.wait` deadline passed (one task per Trio run).

    A mailbox has at most about one entry here: a reader that waits again before its entry
    is due adds none (its later deadline is looked at when the entry comes up, and added
    then if it still waits), so the keeper wakes about once per idle period of a busy
    actor, and never for a message's wait that ended in time.
    """
    return DeadlineKeeper("lcx.mailbox_deadlines", _deadline_came)


_READER_DEADLINES: trio.lowlevel.RunVar[DeadlineKeeper[Mailbox]] = trio.lowlevel.RunVar(
    "lcx_mailbox_deadlines")


def reader_deadlines() -> DeadlineKeeper[Mailbox]:
    """The mailbox deadline keeper of the current Trio run (created on first use)."""
    return keeper_of_run(_READER_DEADLINES, _new_reader_deadlines)
