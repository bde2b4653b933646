"""Bounded mailboxes, the envelopes they carry, and the one-shot reply slots of ``ask``.

A mailbox belongs to whoever supervises the actor, not to the actor's task: a restarted
actor reads the same mailbox and finds the messages that were waiting for it (when the
last receive end of a Trio memory channel closes, its buffer is lost, so the task must
never own it).
"""

from __future__ import annotations

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

    def close(self) -> None:
        """Refuse new messages and drop those still waiting, failing their asks with
        :class:`MailboxClosed` (they were never read, so resending them is safe).

        Idempotent. Senders blocked in ``put`` get :class:`MailboxClosed`.
        """
        if self._closed:
            return
        self._closed = True
        self._send.close()
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if envelope.reply is not None:
                envelope.reply.fail(MailboxClosed("the actor stopped before reading this message"))
        self._receive.close()
