"""``ActorRef``: the only handle other code holds on an actor."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from lcx.errors import AskTimeout
from lcx.runtime.ask_deadlines import ask_deadlines
from lcx.runtime.mailbox import Envelope, Mailbox, Reply

DEFAULT_ASK_TIMEOUT = 5.0


class ActorRef:
    """Sends messages to one actor through its mailbox.

    A ref stays valid across restarts of its actor (the mailbox survives them); once the
    actor is stopped for good every call raises :class:`lcx.errors.ActorStopped`.
    """

    __slots__ = ("kind", "mailbox", "name")

    def __init__(self, kind: str, name: str, mailbox: Mailbox) -> None:
        self.kind = kind
        self.name = name
        self.mailbox = mailbox

    def __repr__(self) -> str:
        return f"<ActorRef {self.kind}:{self.name}>"

    @property
    def alive(self) -> bool:
        """Whether the actor still takes messages."""
        return not self.mailbox.closed

    async def send(self, message: object) -> None:
        """Enqueue a message, waiting while the mailbox is full.

        Raises:
            MailboxClosed: the actor is stopped; nothing was enqueued.
        """
        await self.mailbox.put(Envelope(message))

    def tell(self, message: object) -> None:
        """Enqueue a message without ever waiting.

        Raises:
            MailboxFull: the mailbox is at capacity; nothing was enqueued.
            MailboxClosed: the actor is stopped; nothing was enqueued.
        """
        self.mailbox.put_nowait(Envelope(message))

    async def ask(self, message: object, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send a message and wait for the actor's answer.

        The timeout covers both waiting for mailbox room and waiting for the answer.

        Raises:
            AskTimeout: no answer within ``timeout`` seconds (the message may still be
                handled later; its answer is then dropped).
            MailboxClosed: the actor is stopped; nothing was enqueued.
            ActorStopped: the actor stopped before answering.
            Exception: whatever the actor raised while handling the message.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled asker enqueues nothing
        reply = Reply()
        deadline = trio.current_time() + timeout
        envelope = Envelope(message, reply)
        mailbox = self.mailbox
        if not mailbox.offer(envelope):  # full: wait for room, in turn, within the timeout
            enqueued = False
            with trio.move_on_at(deadline):
                await mailbox.put(envelope)
                enqueued = True
            if not enqueued:
                raise AskTimeout(self._late(timeout))
        ask_deadlines().watch_ask(deadline, reply, partial(self._late, timeout))
        return await reply.wait()

    def _late(self, timeout: float) -> str:
        return f"{self.kind}:{self.name} did not answer within {timeout:g}s"
