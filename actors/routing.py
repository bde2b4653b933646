"""Routing actor messages to the instance that owns the actor (DESIGN.md "placement").

An :class:`ActorRouter` stands in front of a local :class:`KeyedSupervisor`: for a key this
instance owns it delivers locally; for a key owned elsewhere it forwards over the bus
(``ask`` and ``send`` as RPC, ``post`` as a fire-and-forget message) and the owner
delivers to its own supervisor. Answers are decoded as the message's ``reply`` type, and
an :class:`~lcx.errors.LcxError` raised by the remote actor is raised again here with the
same class (or its nearest known base; :mod:`lcx.cluster.errors` is the one codec), so
callers never see the difference.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, Literal

import msgspec
import trio

from actors.messages import WIRE_MESSAGES, Msg
from actors.resend import safe_to_resend
from lcx.cluster.bus import (
    Bus,
    BusError,
    BusUnavailable,
    MemberGone,
    MemberLost,
    NotSent,
    RemoteError,
    RpcTimeout,
)
from lcx.cluster.errors import ErrorBox, box, rebuild
from lcx.cluster.placement import Placement
from lcx.errors import ActorError, AskTimeout, LcxError, MailboxClosed, Unavailable
from lcx.runtime import DEFAULT_ASK_TIMEOUT, ActorRef, KeyedSupervisor

log = logging.getLogger("lcx.routing")

FORWARD = "actor.forward"
"""The RPC method (and topic, for posts) that carries forwarded actor messages."""
_MARGIN = 0.5
"""Extra seconds the caller waits for a remote answer beyond the actor's own timeout."""


_NIL = msgspec.Raw(msgspec.msgpack.encode(None))


class Answer(msgspec.Struct, kw_only=True):
    """The reply to a forwarded message: a value (msgpack of the reply) or an error."""

    value: msgspec.Raw = _NIL
    error: ErrorBox | None = None


@cache
def _codec() -> tuple[msgspec.msgpack.Encoder, msgspec.msgpack.Decoder[Any]]:
    union = WIRE_MESSAGES
    forward = msgspec.defstruct("Forward", [
        ("kind", str), ("key", str), ("mode", Literal["ask", "send", "post"]),
        ("timeout", float), ("message", union[0] if len(union) == 1 else
                             _union(union))], kw_only=True)
    return msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(forward)


def _union(types: tuple[type[Msg], ...]) -> Any:
    result: Any = types[0]
    for item in types[1:]:
        result = result | item
    return result


class _OwnerGone(Exception):
    """The owner did not take the message (it never read it), or died holding a message
    that is safe to resend: placing it again is safe."""


OWNER_MOVING = {"reason": "owner_moving"}
"""The documented ``details`` of a call refused because its actor's owner moves."""
RETRY_AFTER = {"Retry-After": "1"}
"""The header of such a refusal: the new owner is known by then."""


class _BusDown(Exception):
    """Our bus is down but the call is safe to send again (it never left, or it is safe
    to repeat): wait and retry; past the bound, raise ``final``."""

    def __init__(self, final: Unavailable) -> None:
        super().__init__(final.message)
        self.final = final


def bus_down() -> Unavailable:
    """The refusal of a call when the cluster bus stays unreachable: 503, dependency bus."""
    return Unavailable("the cluster bus cannot be reached; retry shortly",
                       details={"dependency": "bus"}, headers=dict(RETRY_AFTER))


def owner_died(kind: str, key: str) -> Unavailable:
    """The refusal of a call whose owner died holding it when it is not safe to resend:
    503 ``owner_moving`` (the key has a new owner by then: a retry is served there)."""
    return Unavailable(f"the owner of {kind} {key} stopped while handling the call; retry",
                       details=dict(OWNER_MOVING), headers=dict(RETRY_AFTER))


class ActorRouter:
    """Delivers messages for ``kind`` actors to their owners; see the module docstring.

    When an owner dies or leaves, an ``ask`` or ``send`` does not fail: a call that reached
    nobody (the owner is gone, or its mailbox closed before reading the message) marks a
    dead owner suspect, so that its keys are placed again, and is retried on the new owner
    for up to ``settle_seconds``; only then does the caller get ``MailboxClosed`` (503
    ``owner_moving``). A call held by an owner that died (``MemberLost``: it may have been
    read) marks it suspect too, and is resent only if it is safe to repeat
    (:func:`actors.resend.safe_to_resend`); otherwise the caller gets 503 ``owner_moving``
    (with ``Retry-After``) once the key has a new owner, so that its retry is served there.
    A call that timed out (the owner may be alive and have read it) is never retried.
    While our own link to the bus reconnects, a call that never left (``NotSent``), or
    one that is safe to repeat, is sent again within the same bound; past it the caller
    gets 503 with ``details.dependency = "bus"``.
    """

    def __init__(self, local: KeyedSupervisor, bus: Bus, placement: Placement, *,
                 settle_seconds: float = 0.0) -> None:
        self.local = local
        self.kind = local.kind
        self.bus = bus
        self.placement = placement
        self.settle_seconds = settle_seconds

    def owner(self, key: str) -> str:
        """The instance that owns ``key``."""
        return self.placement.owner(self.kind, key)

    def get(self, key: str) -> ActorRef | None:
        """The live local actor for ``key``, if this instance has one."""
        return self.local.get(key)

    def live_keys(self) -> list[str]:
        """Keys of actors alive on this instance."""
        return self.local.live_keys()

    async def ask(self, key: str, message: Msg, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Ask the actor for ``key`` wherever it lives; see :meth:`ActorRef.ask`."""
        if self.placement.owner(self.kind, key) == self.placement.instance_id:
            try:  # the common case on one instance, without the retry loop's machinery
                return await self.local.ask(key, message, timeout)
            except MailboxClosed:
                pass  # our supervisor stops (we drain): as any owner that moves, below
        return await self._deliver(key, message, "ask", timeout)

    async def send(self, key: str, message: Msg) -> None:
        """Enqueue for the actor for ``key`` wherever it lives (waits for mailbox room)."""
        await self._deliver(key, message, "send", DEFAULT_ASK_TIMEOUT)

    def post(self, key: str, message: Msg) -> None:
        """Deliver without waiting; a hint (may be lost if the owner is unreachable).

        Raises:
            MailboxClosed: this instance's supervisor is not running (local owner).
        """
        owner = self.owner(key)
        if owner == self.placement.instance_id:
            return self.local.post(key, message)
        encoder, _ = _codec()
        payload = encoder.encode({"kind": self.kind, "key": key, "mode": "post",
                                  "timeout": 0.0, "message": message})
        if not self.bus.publish(owner, FORWARD, payload):
            log.warning("post dropped: bus queue full", extra={"kind": self.kind, "key": key})

    async def _deliver(self, key: str, message: Msg, mode: str, timeout: float) -> Any:
        """Deliver to the current owner, placing the key again while its owner moves."""
        deadline = trio.current_time() + self.settle_seconds
        pause = 0.02
        while True:
            owner = self.owner(key)
            try:
                return await self._deliver_to(owner, key, message, mode, timeout)
            except _OwnerGone as gone:
                if trio.current_time() + pause > deadline:
                    raise MailboxClosed(f"{self.kind}:{key}: its owner is moving "
                                        f"({gone})") from None
                log.info("owner moving; placing again", extra={
                    "kind": self.kind, "key": key, "owner": owner, "why": str(gone)})
            except _BusDown as down:
                if trio.current_time() + pause > deadline:
                    raise down.final from None
                log.info("bus down; sending again", extra={
                    "kind": self.kind, "key": key, "owner": owner, "why": str(down)})
            await trio.sleep(pause)
            pause = min(pause * 2, 0.25)

    async def _deliver_to(self, owner: str, key: str, message: Msg, mode: str,
                          timeout: float) -> Any:
        if owner == self.placement.instance_id:
            try:
                if mode == "send":
                    return await self.local.send(key, message)
                return await self.local.ask(key, message, timeout)
            except MailboxClosed as exc:  # our supervisor is stopping (we drain)
                raise _OwnerGone(str(exc)) from None
        try:
            return await self._forward(owner, key, message, mode, timeout)
        except MemberGone as exc:
            self.placement.suspect(owner)
            raise _OwnerGone(f"{owner} is gone: {exc}") from None
        except MemberLost as exc:
            self.placement.suspect(owner)
            if safe_to_resend(message):
                raise _OwnerGone(f"{owner} died holding it: {exc}") from None
            log.warning("owner died holding a call that is not safe to resend", extra={
                "kind": self.kind, "key": key, "owner": owner,
                "command": type(message).__name__})
            raise owner_died(self.kind, key) from None
        except MailboxClosed as exc:  # the owner is stopping its actors (it drains)
            raise _OwnerGone(f"{owner}: {exc}") from None
        except NotSent as exc:  # our own link reconnects; nothing left
            raise _BusDown(bus_down()) from exc
        except BusUnavailable as exc:  # sent, or maybe: the reply channel was lost
            log.warning("bus call failed: %s", exc, extra={"kind": self.kind, "key": key,
                                                           "owner": owner})
            if safe_to_resend(message):
                raise _BusDown(bus_down()) from exc
            raise bus_down() from exc

    async def _forward(self, owner: str, key: str, message: Msg, mode: str,
                       timeout: float) -> Any:
        encoder, _ = _codec()
        payload = encoder.encode({"kind": self.kind, "key": key, "mode": mode,
                                  "timeout": timeout, "message": message})
        try:
            raw = await self.bus.request(owner, FORWARD, payload, timeout=timeout + _MARGIN)
        except RpcTimeout:
            raise AskTimeout(f"{self.kind}:{key} on {owner} did not answer") from None
        except RemoteError as exc:  # a bug on the owner (LcxErrors come back boxed)
            raise ActorError(f"{self.kind}:{key} failed on {owner}") from exc
        except (MemberGone, MemberLost, BusUnavailable):
            raise
        except BusError as exc:
            log.warning("bus call failed: %s", exc, extra={"kind": self.kind, "key": key,
                                                           "owner": owner})
            raise bus_down() from exc
        answer = msgspec.msgpack.decode(raw, type=Answer)
        if answer.error is not None:
            rebuilt = rebuild(answer.error)
            if isinstance(rebuilt, RemoteError):  # an error class unknown here
                raise ActorError(f"the actor on {owner} failed: {answer.error.message}")
            raise rebuilt
        if message.reply is None:
            return None
        return msgspec.msgpack.decode(answer.value, type=message.reply)


class ForwardServer:
    """Serves forwarded messages for the routers of this instance."""

    def __init__(self, routers: dict[str, ActorRouter], instance_id: str) -> None:
        self.routers = routers
        self.instance_id = instance_id

    def install(self, bus: Bus) -> None:
        """Register the RPC method and the post topic on ``bus``."""
        bus.handle(FORWARD, self.serve)
        bus.subscribe(FORWARD, self.deliver_post)

    def _decode(self, payload: bytes) -> Any:
        _, decoder = _codec()
        return decoder.decode(payload)

    async def serve(self, sender: str, payload: bytes) -> bytes:
        """Deliver an ask or send locally and encode the answer (errors boxed)."""
        forward = self._decode(payload)
        local = self.routers[forward.kind].local
        try:
            if forward.mode == "send":
                await local.send(forward.key, forward.message)
                value = None
            else:
                value = await local.ask(forward.key, forward.message, forward.timeout)
        except LcxError as exc:
            return msgspec.msgpack.encode(Answer(error=box(exc, origin=self.instance_id)))
        return msgspec.msgpack.encode(Answer(value=msgspec.Raw(msgspec.msgpack.encode(value))))

    def deliver_post(self, sender: str, payload: bytes) -> None:
        """Deliver a posted message locally (never blocks)."""
        forward = self._decode(payload)
        try:
            self.routers[forward.kind].local.post(forward.key, forward.message)
        except LcxError:
            log.warning("forwarded post dropped", extra={"kind": forward.kind,
                                                         "key": forward.key})
