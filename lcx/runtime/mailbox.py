"""Bounded mailboxes, the envelopes they carry, and the one-shot reply slots of ``ask``.

A mailbox belongs to whoever supervises the actor, not to the actor's task: a restarted
actor reads the same mailbox and finds the messages that were waiting for it (when the
last receive end of a Trio memory channel closes, its buffer is lost, so the task must
never own it).

The mailbox's one reader (the actor's task) waits for a message with :meth:`Mailbox.wait`:
it parks on the mailbox itself and whoever enqueues wakes it; its idle deadline is kept by
one system task per Trio run (:class:`_ReaderDeadlines`, a heap holding about one entry
per waiting mailbox) instead of a cancel scope entered and left for every wait.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Any

import outcome
import trio

from lcx.errors import MailboxClosed, MailboxFull

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
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a mailbox holds at least one message")
        self.capacity = capacity
        self._closed = True
        self._reader: trio.lowlevel.Task | None = None
        """The task parked in :meth:`wait`, if one is."""
        self._reader_deadline = math.inf
        self._watched: float | None = None
        """The deadline of this mailbox's entry with the deadline keeper (None: none known)."""
        self.reopen()

    def reopen(self) -> None:
        """Take messages again after ``close`` (for an actor started anew). Idempotent."""
        if self._closed:
            self._send, self._receive = trio.open_memory_channel[Envelope](self.capacity)
            self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the mailbox refuses new messages."""
        return self._closed

    @property
    def depth(self) -> int:
        """How many messages wait to be read."""
        return self._send.statistics().current_buffer_used

    async def put(self, envelope: Envelope) -> None:
        """Enqueue, waiting while the mailbox is full.

        Raises:
            MailboxClosed: the mailbox is (or gets) closed before the message is enqueued.
        """
        if self._reader is not None:  # handed to the waiting reader, as a channel would
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._reader is not None:
                self._wake_reader(outcome.Value(envelope))
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
        try:
            await self._send.send(envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise MailboxClosed("the actor is stopped") from None

    def put_nowait(self, envelope: Envelope) -> None:
        """Enqueue without waiting.

        Raises:
            MailboxFull: the mailbox is at capacity; nothing was enqueued.
            MailboxClosed: the mailbox is closed.
        """
        if self._reader is not None:  # handed to the waiting reader, as a channel would
            self._wake_reader(outcome.Value(envelope))
            return
        try:
            self._send.send_nowait(envelope)
        except trio.WouldBlock:
            raise MailboxFull(f"mailbox full ({self.capacity} messages)") from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise MailboxClosed("the actor is stopped") from None

    def offer(self, envelope: Envelope) -> bool:
        """Enqueue without waiting if there is room; False (nothing enqueued) when full.

        Never jumps the queue: while senders wait in ``put`` the mailbox stays full.

        Raises:
            MailboxClosed: the mailbox is closed.
        """
        if self._reader is not None:  # handed to the waiting reader, as a channel would
            self._wake_reader(outcome.Value(envelope))
            return True
        try:
            self._send.send_nowait(envelope)
        except trio.WouldBlock:
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise MailboxClosed("the actor is stopped") from None
        return True

    def take(self) -> Envelope | None:
        """The oldest envelope if one waits, else None (never waits).

        Raises:
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            return None

    async def get(self) -> Envelope:
        """Take the oldest envelope, waiting for one.

        Raises:
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        return await self._receive.receive()

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

    def _deadline_came(self, now: float, keeper: _ReaderDeadlines) -> None:
        """The deadline keeper: this mailbox's entry is due."""
        self._watched = None
        if self._reader is None:
            return
        if self._reader_deadline <= now:
            self._wake_reader(outcome.Value(None))
        elif self._reader_deadline != math.inf:  # waiting again since, until later
            keeper.watch(self._reader_deadline, self)

    def close(self) -> None:
        """Refuse new messages and drop those still waiting, failing their asks with
        :class:`MailboxClosed` (they were never read, so resending them is safe).

        Idempotent. Senders blocked in ``put`` get :class:`MailboxClosed`.
        """
        if self._closed:
            return
        self._closed = True
        self._send.close()
        self._wake_reader(outcome.Error(trio.EndOfChannel()))
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if envelope.reply is not None:
                envelope.reply.fail(MailboxClosed("the actor stopped before reading this message"))
        self._receive.close()


class _ReaderDeadlines:
    """Wakes readers whose :meth:`Mailbox.wait` deadline passed (one task per Trio run).

    A mailbox has at most about one entry here: a reader that waits again before its entry
    is due adds none (its later deadline is looked at when the entry comes up, and added
    then if it still waits), so the keeper wakes about once per idle period of a busy
    actor, and never for a message's wait that ended in time.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Mailbox]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._started = False

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, deadline: float, mailbox: Mailbox) -> None:
        """Look at ``mailbox``'s waiting reader at ``deadline``."""
        heapq.heappush(self._heap, (deadline, next(self._seq), mailbox))
        mailbox._watched = deadline
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name="lcx.mailbox_deadlines")
        elif self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    async def _run(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, mailbox = heapq.heappop(heap)
                mailbox._deadline_came(now, self)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._sleep = scope
                await trio.sleep_forever()
            self._sleep = None


_READER_DEADLINES: trio.lowlevel.RunVar[_ReaderDeadlines] = trio.lowlevel.RunVar(
    "lcx_mailbox_deadlines")


def reader_deadlines() -> _ReaderDeadlines:
    """The mailbox deadline keeper of the current Trio run (created on first use)."""
    try:
        return _READER_DEADLINES.get()
    except LookupError:
        keeper = _ReaderDeadlines()
        _READER_DEADLINES.set(keeper)
        return keeper
