"""The shapes of lcx's domain: wire bodies, stored records and events, as msgspec Structs.

Wire shapes use camelCase names (``rename="camel"``); Python attributes stay snake_case.
Timestamps are RFC 3339 UTC strings with milliseconds (:func:`iso`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

ConversationStatus = Literal["pending", "active", "ended", "cancelled", "missed"]
OPEN_STATUSES: tuple[ConversationStatus, ...] = ("pending", "active")
AuthorType = Literal["subscriber", "agent", "system", "bot"]
MessageType = Literal["text", "file", "rich", "postback"]
EndedBy = Literal["agent", "subscriber", "system", "provider"]
EventType = Literal["CONVERSATION_BEGIN", "MESSAGE", "CONVERSATION_TYPING", "TRANSFER_REQUEST",
                    "CONVERSATION_END", "REQUEST_MISSED"]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))
_ONE_SECOND = timedelta(seconds=1)
_Second = tuple[datetime, datetime, str]
_NONE: _Second = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), "")
_recent: tuple[_Second, _Second] = (_NONE, _NONE)
"""The last two seconds :func:`iso` formatted (each: its start, the next second's start,
its text): the current second and a deadline's, which a message formats in turn."""


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-21T10:00:00.000Z``."""
    global _recent
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # called several times per stored message, mostly within one second: the second's
    # text is formatted once (by hand: strftime costs several times more)
    last, other = _recent
    if last[0] <= moment < last[1]:
        text = last[2]
    elif other[0] <= moment < other[1]:
        text = other[2]
        _recent = (other, last)
    else:
        text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
                f"{moment.minute:02d}:{moment.second:02d}")
        start = moment.replace(microsecond=0)
        try:
            end = start + _ONE_SECOND
        except OverflowError:  # the last second of year 9999: not kept
            end = start
        _recent = ((start, end, text), last)
    return text + _MILLIS[moment.microsecond // 1000]


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware datetime.

    Raises:
        ValueError: not a timestamp, or one that falls outside years 1-9999 in UTC.
    """
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is UTC:  # already UTC: nothing to range-check
        return parsed
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    try:
        parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"timestamp out of range: {text!r}") from None
    return parsed


class Wire(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=False):
    """Base of camelCase wire shapes."""


class Subscriber(Wire, kw_only=True):
    """Who the end user is, as the bot knows them."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    custom: dict[str, Any] = {}


class TranscriptLine(Wire, kw_only=True):
    """One line of the bot conversation that came before the hand-over."""

    author: str
    text: str | None = None
    at: str | None = None


class Context(Wire, kw_only=True):
    """What the bot hands over with the request."""

    transcript: list[TranscriptLine] = []
    metadata: dict[str, Any] = {}


class Attachment(Wire, kw_only=True):
    """A file attached to a message."""

    url: str
    name: str | None = None
    content_type: str | None = None
    size: int | None = None


class Author(msgspec.Struct, kw_only=True):
    """Who wrote a message (``type`` is subscriber, agent, system or bot)."""

    type: AuthorType
    id: str | None = None
    name: str | None = None


class AgentRef(msgspec.Struct, kw_only=True):
    """An agent as events and frames name them."""

    id: str
    name: str | None = None


class Participant(Wire, kw_only=True):
    """An agent or supervisor in a conversation."""

    id: str
    name: str | None = None
    role: str = "agent"
    joined_at: str
    left_at: str | None = None


class Message(Wire, kw_only=True):
    """One message of a conversation's log (also the agent ``message`` frame's data)."""

    conversation_id: str
    seq: int
    message_id: str
    author: Author
    type: MessageType
    at: str
    text: str | None = None
    payload: Any = None
    attachments: list[Attachment] = []
    private: bool = False
    """An internal note: shown to the conversation's agents and supervisors only (wire:
    ``"private": true``, absent otherwise), never sent to the subscriber's side."""


class Conversation(msgspec.Struct, kw_only=True):
    """A request and the conversation it becomes: the state a conversation actor owns."""

    id: str
    request_id: str
    org_id: str
    tenant_id: str
    sub_handle: str
    user_group_id: str
    provider: str
    channel: str
    status: ConversationStatus
    subscriber: Subscriber
    context: Context
    participants: list[Participant]
    flags: dict[str, Any]
    created_at: str
    queued_at: str
    last_activity_at: str
    last_seq: int = 0
    last_event_no: int = 0
    agent_id: str | None = None
    agent_name: str | None = None
    accepted_at: str | None = None
    accepted_by: str | None = None
    ended_at: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """Pending or active."""
        return self.status in OPEN_STATUSES

    @property
    def agent(self) -> AgentRef | None:
        """The agent currently handling the conversation, if any."""
        return None if self.agent_id is None else AgentRef(id=self.agent_id,
                                                             name=self.agent_name)

    def active_agents(self) -> list[Participant]:
        """Participants that have not left."""
        return [p for p in self.participants if p.left_at is None]


class BotEvent(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    """An event POSTed to a tenant's ``bot_events_url`` (API.md section 4)."""

    id: str
    type: EventType
    tenant_id: str
    organization_id: str
    sub_handle: str
    request_id: str
    conversation_id: str | None
    seq: int
    at: str
    data: dict[str, Any]


def request_status(status: ConversationStatus) -> str:
    """The status of the *request* behind a conversation in ``status``."""
    if status in ("active", "ended"):
        return "accepted"
    return status
