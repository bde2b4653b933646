"""Correlated request/reply over pub/sub: one request channel and one reply channel per
instance, a correlation id per call, the caller's deadline carried along.

Caller: registers a waiter under a fresh correlation id, publishes the request to the
target's request channel (no subscriber there: the target is gone, fail at once), waits
for the reply until its deadline, and always removes the waiter. A reply that arrives
after that finds no waiter: it is dropped and counted (``late_replies``). While calls are
held, the bus checks that their targets still listen (:meth:`Rpc.held_targets`,
:meth:`Rpc.lose`): the calls held by a target that died fail with ``MemberLost`` at once
instead of at their deadline.

Responder: the bus reader hands each request to :meth:`Rpc.serve_soon`, which starts a
task and returns at once; tasks run at most ``max_concurrent`` handlers at a time (a
:class:`trio.CapacityLimiter`), and beyond ``max_queued`` waiting requests it answers
``Unavailable`` instead of queueing. A handler is cancelled at the caller's deadline
(nobody is waiting any more); an exception is boxed (:mod:`lcx.cluster.errors`). Replies
go out unanswered through the bus's outbox when it has room (nobody reads how many
received a reply), else awaited through the publisher.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import trio

from lcx.cluster.bus import (
    BusError,
    BusUnavailable,
    MemberGone,
    MemberLost,
    RpcHandler,
    RpcTimeout,
)
from lcx.cluster.errors import ErrorBox, box, to_remote
from lcx.cluster.redis_frames import Failure, Frame, Reply, Request, encode
from lcx.cluster.redis_keys import Keys
from lcx.cluster.redis_publisher import Publisher
from lcx.errors import Unavailable

log = logging.getLogger("lcx.cluster")


@dataclass
class _Waiter:
    """One caller waiting for its reply."""

    done: trio.Event
    target: str
    reply: bytes | None = None
    error: BusError | None = None


class Rpc:
    """Pending calls of this instance, and the handlers it serves."""

    def __init__(self, instance_id: str, keys: Keys, publisher: Publisher, *,
                 max_concurrent: int = 64, max_queued: int = 1024,
                 send_unanswered: Callable[[str, Frame], bool] = lambda channel, frame: False
                 ) -> None:
        """``send_unanswered(channel, frame)`` queues a reply to be published without
        waiting for Redis's answer, False when it has no room (then the reply is awaited
        through ``publisher``)."""
        self.instance_id = instance_id
        self._keys = keys
        self._publisher = publisher
        self._send_unanswered = send_unanswered
        self._handlers: dict[str, RpcHandler] = {}
        self._pending: dict[str, _Waiter] = {}
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._max_queued = max_queued
        self._ids = itertools.count(1)
        self._nonce = secrets.token_hex(4)
        self.serving = 0
        self.late_replies = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Calls waiting for a reply now."""
        return len(self._pending)

    def handle(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method``."""
        self._handlers[method] = handler

    # --- caller side --------------------------------------------------------------------
    async def call_local(self, method: str, payload: bytes, timeout: float) -> bytes:
        """Run our own handler for ``method`` (no Redis), with the same error boxing.

        Raises:
            RpcTimeout, RemoteError: as :meth:`call`.
        """
        with trio.move_on_after(timeout):
            outcome = await self._run(self.instance_id, method, payload)
            if isinstance(outcome, ErrorBox):
                raise to_remote(outcome)
            return outcome
        raise RpcTimeout(f"{method} on {self.instance_id} did not answer within {timeout:g}s")

    async def call(self, target: str, method: str, payload: bytes, timeout: float) -> bytes:
        """Call ``method`` on ``target`` and wait for its reply until ``timeout``.

        Raises:
            RpcTimeout: no reply in time (the waiter is removed either way).
            MemberGone: nobody listens on ``target``'s request channel (nothing sent).
            MemberLost: ``target`` died while the call was held (see :meth:`lose`).
            RemoteError: the handler raised.
            BusUnavailable: Redis cannot be reached, or our reply channel was lost.
        """
        call_id = f"{self._nonce}:{next(self._ids)}"
        waiter = _Waiter(trio.Event(), target)
        self._pending[call_id] = waiter
        try:
            with trio.move_on_after(timeout):
                frame = Request(call_id, self.instance_id, method, int(timeout * 1000), payload)
                receivers = await self._publisher.publish(self._keys.requests(target),
                                                          encode(frame))
                if not receivers:
                    raise MemberGone(f"{target} does not listen for requests")
                await waiter.done.wait()
        finally:
            self._pending.pop(call_id, None)
        if not waiter.done.is_set():
            raise RpcTimeout(f"{method} on {target} did not answer within {timeout:g}s")
        if waiter.error is not None:
            raise waiter.error
        assert waiter.reply is not None
        return waiter.reply

    def on_reply(self, frame: Reply | Failure) -> None:
        """Hand a reply to its waiter (the bus reader calls this; never blocks)."""
        waiter = self._pending.pop(frame.id, None)
        if waiter is None:
            self.late_replies += 1
            log.debug("late reply dropped", extra={"call": frame.id, "from": frame.sender})
            return
        if isinstance(frame, Reply):
            waiter.reply = frame.payload
        else:
            waiter.error = to_remote(frame.error)
        waiter.done.set()

    def held_targets(self) -> set[str]:
        """The instances that calls of ours wait on now."""
        return {waiter.target for waiter in self._pending.values()}

    def lose(self, target: str, reason: str) -> int:
        """Fail every call held by ``target`` with MemberLost (it died); how many."""
        lost = [call for call, waiter in self._pending.items() if waiter.target == target]
        for call in lost:
            waiter = self._pending.pop(call)
            waiter.error = MemberLost(f"{target} {reason}")
            waiter.done.set()
        return len(lost)

    def fail_all(self, reason: str) -> None:
        """Fail every pending call with BusUnavailable (our reply channel was lost)."""
        for waiter in self._pending.values():
            waiter.error = BusUnavailable(reason)
            waiter.done.set()
        self._pending.clear()

    # --- responder side -----------------------------------------------------------------
    def serve_soon(self, nursery: trio.Nursery, frame: Request) -> None:
        """Start serving ``frame`` in ``nursery`` (never blocks the caller)."""
        deadline = trio.current_time() + frame.timeout_ms / 1000
        if self.serving >= self._max_queued:
            self.refused += 1
            busy = Unavailable(f"{self.instance_id} is busy ({self.serving} requests)")
            failure = Failure(frame.id, self.instance_id, box(busy, origin=self.instance_id))
            nursery.start_soon(self._answer, frame, failure, deadline)
            return
        self.serving += 1
        nursery.start_soon(self._serve, frame, deadline)

    async def _serve(self, frame: Request, deadline: float) -> None:
        try:
            with trio.move_on_at(deadline):
                async with self._limiter:
                    outcome = await self._run(frame.sender, frame.method, frame.payload)
                answer: Reply | Failure = (
                    Failure(frame.id, self.instance_id, outcome)
                    if isinstance(outcome, ErrorBox)
                    else Reply(frame.id, self.instance_id, outcome))
                await self._answer(frame, answer, deadline)
        finally:
            self.serving -= 1

    async def _answer(self, frame: Request, answer: Reply | Failure, deadline: float) -> None:
        channel = self._keys.replies(frame.sender)
        if self._send_unanswered(channel, answer):
            return
        with trio.move_on_at(deadline):
            try:
                await self._publisher.publish(channel, encode(answer))
            except BusError as exc:
                log.info("reply not sent: %s", exc, extra={"call": frame.id})

    async def _run(self, sender: str, method: str, payload: bytes) -> bytes | ErrorBox:
        """The handler's reply, or its boxed exception."""
        handler = self._handlers.get(method)
        if handler is None:
            return ErrorBox(origin=self.instance_id, kind="NotFound",
                            message=f"no handler for {method}")
        try:
            return await handler(sender, payload)
        except Exception as exc:
            return box(exc, origin=self.instance_id)
