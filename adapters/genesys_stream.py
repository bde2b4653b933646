"""The Genesys guest chat event stream (PROVIDERS.md 1.5, 1.7): frames to normalized
events without I/O, and the reconnecting reader around them.

Three layers, the first two pure:

- :func:`parse_frame` (:func:`decode_frame` + :func:`frame_events`): one websocket frame
  to *candidate* events, statelessly. Message frames (``bodyType`` ``standard``) become
  :class:`EdgeMessage`, typing frames :class:`EdgeTyping`; another member's
  ``member-join`` or ``CONNECTED`` becomes :class:`AgentJoined` and its ``member-leave``
  or ``DISCONNECTED`` :class:`AgentLeft`; our own member leaving or disconnecting is
  :class:`EdgeEnded`. Our own echoes, heartbeats and unknown topics give nothing.
- :class:`ChatLedger`: what one stream knows (member roles and names, agents present,
  messages seen) and which candidates become real events: a join only for a member whose
  role is ``AGENT`` and only once; a leave only for a present agent; the last agent
  leaving ends the chat (``"agent disconnected"``).
- :class:`GuestStream`: connects, catches up (``GET .../messages?after=``, then the member
  list), reads frames until the chat ends, and reconnects with backoff when the socket
  drops or stays silent past the heartbeat timeout.

Stable external ids let a caller drop repeats across reconnects and takeovers: a message
keeps its Genesys id, a join is ``<memberId>:joined``, a leave ``<memberId>:left`` and
the end ``<conversationId>:ended``.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from adapters.edges import (
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTyping,
    Emit,
)
from lcx.model import AgentRef
from lcx.runtime.policy import Backoff

__all__ = ["ChatLedger", "ChatMessage", "Frame", "GuestReads", "GuestStream", "MemberInfo",
           "decode_frame", "frame_events", "is_state_error", "message_events", "parse_frame",
           "with_socket"]

log = logging.getLogger("lcx.provider.genesys")

AGENT = "AGENT"
HEARTBEAT_TOPIC = "channel.metadata"
AGENT_DISCONNECTED = "agent disconnected"
GUEST_LEFT = "guest left"
GUEST_DISCONNECTED = "guest disconnected"
NOT_ACTIVE = "conversation no longer active"
_STATE_ERROR = re.compile(r"chat\.error\.(conversation|member)\.state")


def is_state_error(exc: EdgeCallFailed) -> bool:
    """Whether a failed call was a 400 ``chat.error.conversation|member.state`` (the chat
    is not active: not yet routed, or over). Read from the error text, which carries the
    start of the ``ErrorBody``."""
    return exc.status == 400 and _STATE_ERROR.search(str(exc)) is not None


class Ref(msgspec.Struct, kw_only=True):
    """``{"id": ...}`` as Genesys nests it."""

    id: str


class ChatMessage(msgspec.Struct, kw_only=True, rename="camel"):
    """A ``WebChatMessage`` (history) or the ``eventBody`` of a message/typing frame."""

    id: str
    sender: Ref
    body: str | None = None
    body_type: str | None = None
    timestamp: str | None = None


class MemberState(msgspec.Struct, kw_only=True):
    """The ``member`` of a ``member-change`` frame."""

    id: str
    state: str | None = None


class MemberChange(msgspec.Struct, kw_only=True):
    """The ``eventBody`` of a ``member-change`` frame."""

    member: MemberState


class MemberInfo(msgspec.Struct, kw_only=True, rename="camel"):
    """A ``WebChatMemberInfo`` (the fields the stream uses)."""

    id: str
    display_name: str | None = None
    role: str | None = None
    state: str | None = None


class Envelope(msgspec.Struct, kw_only=True, rename="camel"):
    """Every frame: ``topicName``, ``eventBody``, ``metadata`` (``type``, correlation id)."""

    topic_name: str = ""
    event_body: Any = None
    metadata: dict[str, Any] = {}


FrameKind = Literal["message", "typing", "member-change", "heartbeat", "other"]


@dataclass(frozen=True)
class Frame:
    """One decoded frame; ``other`` for unknown topics and anything malformed."""

    kind: FrameKind
    correlation_id: str | None = None
    message: ChatMessage | None = None
    member: MemberState | None = None


def decode_frame(raw: str | bytes) -> Frame:
    """Decode one frame (never raises: what cannot be read is ``other``). The correlation
    id is read from ``metadata.CorrelationId`` or ``metadata.correlationId``."""
    try:
        envelope = msgspec.json.decode(raw, type=Envelope)
        metadata = envelope.metadata
        correlation = metadata.get("CorrelationId", metadata.get("correlationId"))
        correlation = correlation if isinstance(correlation, str) else None
        topic, kind = envelope.topic_name, metadata.get("type")
        if topic == HEARTBEAT_TOPIC:
            return Frame("heartbeat", correlation)
        if topic.endswith(".messages"):
            message = msgspec.convert(envelope.event_body, ChatMessage)
            typing = kind == "typing-indicator" or (kind is None and message.body_type is None)
            return Frame("typing" if typing else "message", correlation, message=message)
        if topic.endswith(".members") and kind in ("member-change", None):
            change = msgspec.convert(envelope.event_body, MemberChange)
            return Frame("member-change", correlation, member=change.member)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.debug("unreadable genesys frame ignored", extra={"frame": str(raw)[:200]})
    return Frame("other")


def message_events(message: ChatMessage, own_member_id: str) -> list[AnyEdgeEvent]:
    """The candidate events of one chat message (a frame's or a history entry)."""
    sender = message.sender.id
    own = sender == own_member_id
    match message.body_type:
        case "standard" if not own:
            return [EdgeMessage(external_id=message.id, author=AgentRef(id=sender),
                                text=message.body or "")]
        case "member-join" if not own:
            return [AgentJoined(agent=AgentRef(id=sender))]
        case "member-leave":
            if own:
                return [EdgeEnded(reason=GUEST_LEFT)]
            return [AgentLeft(agent=AgentRef(id=sender))]
    return []


def frame_events(frame: Frame, own_member_id: str) -> list[AnyEdgeEvent]:
    """The candidate events of one decoded frame (see the module docstring)."""
    if frame.kind == "message" and frame.message is not None:
        return message_events(frame.message, own_member_id)
    if frame.kind == "typing" and frame.message is not None:
        sender = frame.message.sender.id
        return [] if sender == own_member_id else [EdgeTyping(agent=AgentRef(id=sender))]
    if frame.kind == "member-change" and frame.member is not None:
        member, state = frame.member.id, frame.member.state
        if member == own_member_id:
            return [EdgeEnded(reason=GUEST_DISCONNECTED)] if state == "DISCONNECTED" else []
        if state == "CONNECTED":
            return [AgentJoined(agent=AgentRef(id=member))]
        if state == "DISCONNECTED":
            return [AgentLeft(agent=AgentRef(id=member))]
    return []


def parse_frame(raw: str | bytes, own_member_id: str) -> list[AnyEdgeEvent]:
    """The candidate events of one raw websocket frame (pure; never raises)."""
    return frame_events(decode_frame(raw), own_member_id)


class ChatLedger:
    """What one stream knows of its chat, and the rules turning candidates into events.

    Pure state: the caller looks up the members :meth:`unknown` names (``learn``) before
    :meth:`admit`, and marks message ids once their events are applied.
    """

    def __init__(self, conversation_id: str, own_member_id: str, *,
                 memory: int = 4096) -> None:
        self.conversation_id = conversation_id
        self.own_member_id = own_member_id
        self.members: dict[str, MemberInfo] = {}
        self.agents: dict[str, AgentRef] = {}
        self.last_message_id: str | None = None
        self.ended = False
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._memory = memory

    def learn(self, info: MemberInfo) -> None:
        """Remember a member's role and display name."""
        self.members[info.id] = info

    def unknown(self, events: Iterable[AnyEdgeEvent]) -> list[str]:
        """Members the events need looked up: joining ones and message authors."""
        wanted: list[str] = []
        for event in events:
            ref = event.agent if isinstance(event, AgentJoined) else \
                event.author if isinstance(event, EdgeMessage) else None
            if ref is not None and ref.id not in self.members and ref.id not in wanted:
                wanted.append(ref.id)
        return wanted

    def seen(self, message_id: str) -> bool:
        """Whether this message's events were already applied in this stream."""
        return message_id in self._seen

    def mark(self, message_id: str) -> None:
        """Record that a message (any kind, echoes too) was handled: the resume point."""
        if message_id not in self._seen:
            self.last_message_id = message_id
            self._seen.add(message_id)
            self._order.append(message_id)
            if len(self._order) > self._memory:
                self._seen.discard(self._order.popleft())

    def admit(self, event: AnyEdgeEvent) -> list[AnyEdgeEvent]:
        """The events a candidate really means now (none after the end)."""
        if self.ended:
            return []
        match event:
            case AgentJoined(agent=agent):
                return self._join(agent.id)
            case AgentLeft(agent=agent):
                return self._leave(agent.id)
            case EdgeMessage(author=AgentRef(id=author)):
                return [msgspec.structs.replace(event, author=self._ref(author))]
            case EdgeTyping(agent=AgentRef(id=typist)):
                return [msgspec.structs.replace(event, agent=self._ref(typist))]
            case EdgeEnded(reason=reason):
                return self._end(reason)
        return [event]

    def reconcile(self, members: Iterable[MemberInfo]) -> list[AnyEdgeEvent]:
        """The events that bring the ledger in line with the member list (after a
        reconnect): agents connected meanwhile join, agents gone leave, our own member
        disconnected ends the chat."""
        listed = list(members)
        for info in listed:
            self.learn(info)
        out: list[AnyEdgeEvent] = []
        connected = {info.id for info in listed if info.state == "CONNECTED"}
        for info in listed:
            if info.role == AGENT and info.id in connected:
                out += self.admit(AgentJoined(agent=AgentRef(id=info.id)))
        for agent_id in [a for a in self.agents if a not in connected]:
            out += self.admit(AgentLeft(agent=AgentRef(id=agent_id)))
        own = self.members.get(self.own_member_id)
        if own is not None and own.state == "DISCONNECTED":
            out += self.admit(EdgeEnded(reason=GUEST_DISCONNECTED))
        return out

    def _ref(self, member_id: str) -> AgentRef:
        info = self.members.get(member_id)
        return AgentRef(id=member_id, name=info.display_name if info else None)

    def _join(self, member_id: str) -> list[AnyEdgeEvent]:
        info = self.members.get(member_id)
        if member_id in self.agents or info is None or info.role != AGENT:
            return []
        self.agents[member_id] = self._ref(member_id)
        return [AgentJoined(agent=self.agents[member_id], external_id=f"{member_id}:joined")]

    def _leave(self, member_id: str) -> list[AnyEdgeEvent]:
        agent = self.agents.pop(member_id, None)
        if agent is None:
            return []
        out: list[AnyEdgeEvent] = [AgentLeft(agent=agent, external_id=f"{member_id}:left")]
        return out + (self._end(AGENT_DISCONNECTED) if not self.agents else [])

    def _end(self, reason: str | None) -> list[AnyEdgeEvent]:
        self.ended = True
        return [EdgeEnded(reason=reason, external_id=f"{self.conversation_id}:ended")]


class GuestReads(Protocol):
    """The guest REST reads a stream needs (guest JWT; errors as :class:`EdgeCallFailed`)."""

    async def member(self, member_id: str) -> MemberInfo:
        """One member (``GET .../members/{memberId}``)."""

    async def members(self) -> list[MemberInfo]:
        """Every member, connected or not (``GET .../members``)."""

    async def messages_after(self, message_id: str | None) -> list[ChatMessage]:
        """Up to one page of messages after ``message_id`` (all from the start when None),
        oldest first (``GET .../messages?after=&sortOrder=asc``)."""


class _Reconnect(Exception):
    """The socket is unusable (dropped, silent, unreachable): connect again."""


async def with_socket(url: str, body: Callable[[WebSocketConnection], Awaitable[None]], *,
                      connect_timeout: float, close_timeout: float = 2.0) -> None:
    """Connect a websocket client to ``url`` (``ws://`` or ``wss://``), run ``body`` with
    it, then close it (politely when ``body`` returned). Owns the TCP stream and always
    closes it: trio-websocket's ``open_websocket_url`` leaks it when the handshake is refused
    or the server closes first. Errors come out bare, not in exception groups.

    Raises:
        ConnectionRejected: the server refused the handshake (its HTTP status).
        HandshakeError, ConnectionClosed, _Reconnect: the connection failed or dropped.
        Whatever ``body`` raises.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with trio.fail_after(connect_timeout):
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = (
                await trio.open_ssl_over_tcp_stream(host, port, https_compatible=True,
                                                    ssl_context=ssl.create_default_context())
                if secure else await trio.open_tcp_stream(host, port))
    except (OSError, trio.TooSlowError) as exc:
        raise _Reconnect(f"cannot connect to {host}:{port}: {exc!r}") from exc
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await wrap_client_stream(nursery, stream, host if port in (80, 443)
                                              else f"{host}:{port}", resource)
            await body(ws)
            with trio.move_on_after(close_timeout):
                await ws.aclose()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _sole(group) from None
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def _sole(group: BaseExceptionGroup) -> BaseException:
    """The one real error of a nursery's group (Cancelled set aside), else the group."""
    real = [leaf for leaf in _leaves(group) if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else group


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@dataclass(frozen=True)
class StreamTarget:
    """Which chat a stream follows, as its session names it."""

    conversation_id: str
    member_id: str
    event_stream_uri: str


class GuestStream:
    """Follows one guest chat until it ends; see the module docstring.

    ``page_size`` is the history page size of ``reads`` (a shorter page is the last one).
    The socket it opens is its own and always closed; ``emit`` is awaited for every event.
    """

    def __init__(self, target: StreamTarget, reads: GuestReads, emit: Emit, *,
                 backoff: Backoff, heartbeat_timeout: float, connect_timeout: float = 10.0,
                 page_size: int = 100) -> None:
        self.target = target
        self.reads = reads
        self.emit = emit
        self.backoff = backoff
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout
        self.page_size = page_size
        self.ledger = ChatLedger(target.conversation_id, target.member_id)
        self.connections = 0

    async def run(self) -> None:
        """Connect, catch up and read until the chat ends; reconnect on drops.

        Raises:
            EdgeCallFailed: not retryable: the socket was refused (4xx) or a REST read was
                refused (401/403/404...): the session is gone for good.
        """
        failures = 0
        while True:
            started = trio.current_time()
            try:
                await self._connect_once()
                return
            except (_Reconnect, HandshakeError, ConnectionClosed, trio.BrokenResourceError,
                    trio.TooSlowError, EdgeCallFailed) as exc:
                self._raise_if_permanent(exc)
                reason = f"{type(exc).__name__}: {exc}"
            if trio.current_time() - started >= self.backoff.reset_after_seconds:
                failures = 0
            failures += 1
            delay = self.backoff.delay(failures)
            log.warning("genesys stream reconnecting", extra={
                "conversationId": self.target.conversation_id, "reason": reason[:300],
                "attempt": failures, "delaySeconds": delay})
            await trio.sleep(delay)

    def _raise_if_permanent(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRejected) and 400 <= exc.status_code < 500 and \
                exc.status_code not in (408, 429):
            raise EdgeCallFailed(f"genesys event stream refused: {exc.status_code}",
                                 retry=False, status=exc.status_code,
                                 auth=exc.status_code in (401, 403)) from exc
        if isinstance(exc, EdgeCallFailed) and not exc.retry:
            raise exc

    async def _connect_once(self) -> None:
        await with_socket(self.target.event_stream_uri, self._follow,
                          connect_timeout=self.connect_timeout)

    async def _follow(self, ws: WebSocketConnection) -> None:
        self.connections += 1
        if not await self._catch_up():
            await self._read(ws)

    async def _catch_up(self) -> bool:
        """Emit what was missed (messages, then member changes); True once ended."""
        cursor = self.ledger.last_message_id
        try:
            while True:
                page = await self.reads.messages_after(cursor)
                for message in page:
                    await self._handle_message(message)
                    if self.ledger.ended:
                        return True
                if len(page) < self.page_size:
                    break
                cursor = page[-1].id
            await self._apply(self.ledger.reconcile(await self.reads.members()))
        except EdgeCallFailed as exc:
            if not is_state_error(exc):
                raise
            await self._apply(self.ledger.admit(EdgeEnded(reason=NOT_ACTIVE)))
        return self.ledger.ended

    async def _read(self, ws: WebSocketConnection) -> None:
        while not self.ledger.ended:
            raw: str | bytes | None = None
            with trio.move_on_after(self.heartbeat_timeout):
                raw = await ws.get_message()
            if raw is None:
                raise _Reconnect(f"no frame for {self.heartbeat_timeout} s")
            frame = decode_frame(raw)
            if frame.message is not None and frame.kind == "message":
                await self._handle_message(frame.message)
            else:
                await self._handle(frame_events(frame, self.target.member_id))

    async def _handle_message(self, message: ChatMessage) -> None:
        if self.ledger.seen(message.id):
            return
        await self._handle(message_events(message, self.target.member_id))
        self.ledger.mark(message.id)

    async def _handle(self, candidates: list[AnyEdgeEvent]) -> None:
        for member_id in self.ledger.unknown(candidates):
            await self._look_up(member_id)
        for candidate in candidates:
            await self._apply(self.ledger.admit(candidate))

    async def _look_up(self, member_id: str) -> None:
        try:
            self.ledger.learn(await self.reads.member(member_id))
        except EdgeCallFailed as exc:
            if exc.retry or exc.auth:
                raise  # retry: reconnect (the message is replayed); auth: gone for good
            self.ledger.learn(MemberInfo(id=member_id))  # unknown member: not an agent

    async def _apply(self, events: list[AnyEdgeEvent]) -> None:
        for event in events:
            await self.emit(event)
