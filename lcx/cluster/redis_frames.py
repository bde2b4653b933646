"""What the Redis bus puts on the wire: tagged msgspec Structs, encoded as msgpack.

Pub/sub frames (one tagged union, decoded at the reader)::

    Request   "req"   caller -> target's request channel
    Reply     "rep"   target -> caller's reply channel
    Failure   "err"   target -> caller's reply channel (the handler raised)
    Message   "msg"   anyone -> one instance's message channel, or the broadcast channel
    Hint      "hint"  anyone -> broadcast: refresh membership / leadership now

and the stored shape of a member record (:class:`MemberRecord`). Deadlines travel as the
caller's remaining milliseconds, never as wall-clock times: hosts do not share a clock.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from lcx.cluster.bus import BusError, MemberInfo
from lcx.cluster.errors import ErrorBox


class BadFrame(BusError):
    """A payload on a bus channel that is not a frame this version understands."""


class Request(msgspec.Struct, frozen=True, tag="req", array_like=True):
    """Call ``method`` on the receiving instance; answer on ``sender``'s reply channel."""

    id: str
    sender: str
    method: str
    timeout_ms: int
    """What was left of the caller's deadline when it sent the request."""
    payload: bytes


class Reply(msgspec.Struct, frozen=True, tag="rep", array_like=True):
    """The handler's answer to request ``id``."""

    id: str
    sender: str
    payload: bytes


class Failure(msgspec.Struct, frozen=True, tag="err", array_like=True):
    """The handler of request ``id`` raised ``error``."""

    id: str
    sender: str
    error: ErrorBox


class Message(msgspec.Struct, frozen=True, tag="msg", array_like=True):
    """A fire-and-forget message on ``topic``."""

    sender: str
    topic: str
    payload: bytes


HintEvent = Literal["joined", "left", "draining", "leader-released"]


class Hint(msgspec.Struct, frozen=True, tag="hint", array_like=True):
    """``sender`` changed something the others should read now, not at their next beat."""

    sender: str
    event: HintEvent


Frame = Request | Reply | Failure | Message | Hint


class MemberRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One member's heartbeat as stored under its member key."""

    instance_id: str
    last_heartbeat_at: str
    draining: bool = False
    actors: dict[str, int] = msgspec.field(default_factory=dict)
    url: str = ""

    def info(self) -> MemberInfo:
        """The record as the bus port shows it."""
        return MemberInfo(self.instance_id, self.last_heartbeat_at, self.draining,
                          dict(self.actors), self.url)


_frame_decoder = msgspec.msgpack.Decoder(Frame)
_record_decoder = msgspec.msgpack.Decoder(MemberRecord)
_encoder = msgspec.msgpack.Encoder()


def encode(value: Frame | MemberRecord) -> bytes:
    """msgpack bytes of a frame or record."""
    return _encoder.encode(value)


def decode_frame(data: bytes) -> Frame:
    """The frame in ``data``.

    Raises:
        BadFrame: ``data`` is not a frame (unknown tag, wrong shape, not msgpack).
    """
    try:
        frame: Frame = _frame_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BadFrame(f"undecodable bus frame: {exc}") from exc
    return frame


def decode_record(data: bytes) -> MemberRecord:
    """The member record in ``data``.

    Raises:
        BadFrame: ``data`` is not a member record.
    """
    try:
        return _record_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BadFrame(f"undecodable member record: {exc}") from exc
