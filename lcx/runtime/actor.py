"""Actors: a behaviour (``Actor``) run over a mailbox by one incarnation (``ActorProcess``).

An actor owns its state and reads its mailbox one message at a time. ``receive`` returns
the answer to an ``ask``. An :class:`lcx.errors.LcxError` raised by ``receive`` is an
expected outcome: the asker gets it and the actor carries on. Any other exception is a bug:
the asker gets it, the actor crashes and its supervisor decides what happens next.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from lcx.errors import ActorStopped, LcxError, MailboxFull
from lcx.runtime.deadline_keeper import DeadlineKeeper, aligned, keeper_of_run
from lcx.runtime.mailbox import Envelope, Mailbox
from lcx.runtime.ref import ActorRef

log = logging.getLogger("lcx.runtime")

_YIELD_EVERY = 32
"""Messages an actor takes in a row from a full mailbox before it yields to other tasks."""

IdleHook = Callable[[], bool]
"""Called when an actor has been idle for its ``idle_seconds``; True means "stop now"."""


class Actor:
    """The behaviour of an actor; subclass it and override ``receive``.

    Lifecycle of one incarnation: ``on_start`` (load state; no message is read before it
    returns), then ``receive`` for each message, then ``on_stop`` on a graceful stop
    (not after a crash). Override ``run`` only for actors that need their own loop.
    """

    async def on_start(self, ctx: ActorContext) -> None:
        """Prepare the actor's state before its first message."""

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle {message!r}")

    async def on_stop(self) -> None:
        """Release or persist what the actor holds when it stops gracefully."""

    async def run(self, ctx: ActorContext) -> None:
        """Read the mailbox until the actor is asked to stop, goes idle, or is closed."""
        while (envelope := await ctx.next_envelope()) is not None:
            await ctx.dispatch(self, envelope)


class ActorContext:
    """What an incarnation knows about itself: its ref, its task nursery, its timers."""

    def __init__(self, ref: ActorRef, nursery: trio.Nursery, *,
                 idle_seconds: float | None, on_idle: IdleHook | None) -> None:
        self.ref = ref
        self.nursery = nursery
        self.idle_seconds = idle_seconds
        self._on_idle = on_idle
        self._stop_requested = False
        self._waiting = False
        """Waiting in the mailbox for a message (:meth:`stop` wakes it)."""
        self._timers: dict[str, _Timer] = {}
        self.closed = False
        """The incarnation ended (its timers are dead)."""
        self._taken = 0
        """Messages taken in a row without waiting (see :meth:`next_envelope`)."""

    @property
    def name(self) -> str:
        """The actor's name (its key, for keyed actors)."""
        return self.ref.name

    @property
    def stop_requested(self) -> bool:
        """Whether the actor was asked to stop after its current message."""
        return self._stop_requested

    def stop(self) -> None:
        """Stop after the current message (a normal exit). Idempotent."""
        self._stop_requested = True
        if self._waiting:
            self.ref.mailbox.interrupt()

    async def next_envelope(self) -> Envelope | None:
        """The next message, or None when the actor should stop (asked, idle or closed).

        A message already waiting is taken at once (the idle deadline only matters while
        the mailbox is empty); a run of such messages still yields to other tasks every
        :data:`_YIELD_EVERY` of them. An empty mailbox is waited on with its idle deadline
        (:meth:`Mailbox.wait`: no cancel scope per wait).
        """
        mailbox = self.ref.mailbox
        while not self._stop_requested:
            try:
                envelope = mailbox.take()
            except trio.EndOfChannel:
                return None
            if envelope is not None:
                self._taken += 1
                if self._taken >= _YIELD_EVERY:
                    self._taken = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return envelope
            self._taken = 0
            deadline = trio.current_time() + (self.idle_seconds or math.inf)
            self._waiting = True
            try:
                handed = await mailbox.wait(deadline)
            except trio.EndOfChannel:
                return None
            finally:
                self._waiting = False
            if handed is not None:
                return handed
            if self._stop_requested or mailbox.depth:
                continue
            if self._idle_should_stop():
                return None
        return None

    def _idle_should_stop(self) -> bool:
        return self._on_idle is not None and self._on_idle()

    async def dispatch(self, actor: Actor, envelope: Envelope) -> None:
        """Run ``actor.receive`` on one envelope and answer its ask, if any.

        Raises whatever ``receive`` raised unless it is an :class:`LcxError`.
        """
        reply = envelope.reply
        try:
            result = await actor.receive(envelope.message)
        except LcxError as exc:
            if reply is None:
                log.warning("message refused", extra=_fields(self.ref, exc))
            else:
                reply.fail(exc)
            return
        except Exception as exc:
            if reply is not None:
                reply.fail(exc)
            raise
        except BaseException:
            if reply is not None:
                reply.fail(ActorStopped("the actor stopped while handling the message"))
            raise
        if reply is not None:
            reply.resolve(result)

    def send_after(self, delay: float, message: object, *, key: str | None = None,
                   align: float | None = None) -> None:
        """Send ``message`` to this actor after ``delay`` seconds.

        A timer with the same ``key`` replaces the previous one. Timers die with the
        incarnation that set them. They wait in the run's one timer keeper (no task per
        timer: a connected agent's session re-arms one every few seconds). With ``align``
        the deadline is rounded up to a multiple of ``align`` seconds of the Trio clock:
        the periodic timers of many actors then fall due together and are handled in one
        wake-up instead of one each (for timers that may come up to ``align`` late).
        """
        timer = _Timer(self, message, key)
        if key is not None:
            self.cancel_timer(key)
            self._timers[key] = timer
        deadline = trio.current_time() + delay
        actor_timers().watch(aligned(deadline, align) if align else deadline, timer)

    def cancel_timer(self, key: str) -> None:
        """Cancel the timer set under ``key``, if any."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.live = False

    def close(self) -> None:
        """The incarnation ended: its timers never fire."""
        self.closed = True  # the keeper drops every timer of a closed context
        self._timers.clear()

    def _fire(self, timer: _Timer) -> None:
        key = timer.key
        if key is not None and self._timers.get(key) is timer:
            del self._timers[key]
        try:
            self.ref.tell(timer.message)
        except MailboxFull:  # wait for room, as a sender would
            with contextlib.suppress(RuntimeError):  # the incarnation's nursery closed
                self.nursery.start_soon(self._send_later, timer.message)
        except ActorStopped:
            pass

    async def _send_later(self, message: object) -> None:
        with contextlib.suppress(ActorStopped):
            await self.ref.send(message)


class _Timer:
    """One :meth:`ActorContext.send_after` waiting in the run's keeper."""

    __slots__ = ("ctx", "key", "live", "message")

    def __init__(self, ctx: ActorContext, message: object, key: str | None) -> None:
        self.ctx = ctx
        self.message = message
        self.key = key
        self.live = True


def _timer_dropped(timer: _Timer) -> bool:
    return not timer.live or timer.ctx.closed


def _timer_came(timer: _Timer, now: float) -> None:
    if not _timer_dropped(timer):
        timer.ctx._fire(timer)


_ACTOR_TIMERS: trio.lowlevel.RunVar[DeadlineKeeper[_Timer]] = trio.lowlevel.RunVar(
    "lcx_actor_timers")


def actor_timers() -> DeadlineKeeper[_Timer]:
    """The keeper of every actor's :meth:`ActorContext.send_after` timers in this run."""
    return keeper_of_run(_ACTOR_TIMERS, lambda: DeadlineKeeper(
        "lcx.actor_timers", _timer_came, settled=_timer_dropped))


class ActorProcess:
    """One incarnation of an actor: runs a behaviour over a (longer-lived) mailbox.

    This is the child a supervisor starts; a restart builds a new ``ActorProcess`` with a
    new behaviour over the same mailbox.
    """

    def __init__(self, ref: ActorRef, activate: Callable[[], Awaitable[Actor]], *,
                 idle_seconds: float | None = None, on_idle: IdleHook | None = None) -> None:
        self.ref = ref
        self._activate = activate
        self._idle_seconds = idle_seconds
        self._on_idle = on_idle
        self._ctx: ActorContext | None = None
        self._stop_early = False

    @property
    def mailbox(self) -> Mailbox:
        """The mailbox this incarnation reads."""
        return self.ref.mailbox

    def request_stop(self) -> None:
        """Finish the current message, run ``on_stop`` and return."""
        self._stop_early = True
        if self._ctx is not None:
            self._ctx.stop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Activate the behaviour, report started, then serve the mailbox.

        Raises the actor's own exception (not wrapped in an exception group) on a crash.
        """
        try:
            await self._run(task_status)
        except BaseExceptionGroup as group:
            sole = _sole_error(group)
            if sole is None:
                raise
            raise sole from None

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            ctx = ActorContext(self.ref, nursery, idle_seconds=self._idle_seconds,
                               on_idle=self._on_idle)
            try:
                actor = await self._activate()
                await actor.on_start(ctx)
                self._ctx = ctx
                if self._stop_early:
                    ctx.stop()
                task_status.started()
                await actor.run(ctx)
                await actor.on_stop()
            finally:
                ctx.close()
            nursery.cancel_scope.cancel()


def _sole_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The one plain exception inside nested single-member groups, if that is all there is."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner if isinstance(inner, Exception) else None
        group = inner
    return None


def _fields(ref: ActorRef, exc: BaseException) -> dict[str, object]:
    return {"actor": ref.name, "kind": ref.kind, "error": f"{type(exc).__name__}: {exc}"}
