"""Decoding and dispatching the frames an agent sends (API.md section 5, agent to server).

Every frame is validated against its typed shape; a bad frame gets an ``ERROR`` event
(with the client's ``ref``) and the socket stays up. Conversations are checked against
the caller: same organization, and a participant (supervisors may act on any
conversation of their organization); a refusal is checked against the store first
(the conversation actor's memory may lag behind another owner's writes).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any, Literal

import msgspec

from actors.keys import agent_key, queue_key
from actors.livechat import Livechat
from actors.messages import (
    Accept,
    Accepted,
    AcceptRequest,
    CreateRequest,
    End,
    Flag,
    GetState,
    Join,
    Leave,
    MemberGuard,
    PostMessage,
    PostResult,
    Read,
    Release,
    Reserve,
    SetStatus,
    Transfer,
    Typing,
)
from lcx.api.bodies import refuse_deep_nesting, refuse_huge_integers, refuse_nul
from lcx.api.common import (
    MAX_FLAG_VALUE_BYTES,
    MAX_RESUME_CONVERSATIONS,
    MAX_TEXT_CHARS,
    Attachments,
    Count,
    Id,
    Reason,
    Text,
)
from lcx.api.errors import busy_reason
from lcx.auth import Principal
from lcx.cluster.bus import BusError
from lcx.errors import (
    ActorError,
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    LcxError,
    NotFound,
    StaleState,
    StoreUnavailable,
)
from lcx.livechat import frames
from lcx.livechat.conversation import new_request
from lcx.model import (
    AgentRef,
    Author,
    Conversation,
    Message,
    utc_now,
)
from lcx.store import Tx
from lcx.store.conversations import find_by_request, messages_after

log = logging.getLogger("lcx.ws")

MAX_FRAME_CHARS = 4 * MAX_TEXT_CHARS
"""The longest frame the handler decodes; longer ones get ``ERROR invalid_request``."""
MAX_TOKEN_CHARS = 16_384
RESUME_PAGE = 100
"""Messages read from the store at a time while a ``RESUME`` replays a conversation."""
Send = Callable[[dict[str, Any]], None]
Room = Callable[[], Awaitable[None]]


async def _always_room() -> None:
    return None


EventName = Annotated[str, msgspec.Meta(max_length=64)]
Token = Annotated[str, msgspec.Meta(max_length=MAX_TOKEN_CHARS)]


class Frame(msgspec.Struct, kw_only=True):
    """The envelope every client frame shares."""

    type: Literal["event", "message", "ping", "auth"]
    event: EventName | None = None
    ref: Id | None = None
    data: Any = None
    token: Token | None = None


class _Data(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=False):
    pass


class RequestRef(_Data):
    request_id: Id


class CreateData(_Data):
    tenant_id: Id
    sub_handle: Id
    user_group_id: Id | None = None


class ConversationRef(_Data):
    conversation_id: Id


class EndData(ConversationRef):
    reason: Reason | None = None


class TypingData(ConversationRef):
    typing: bool


class ReadData(ConversationRef):
    seq: Count


class FlagData(ConversationRef):
    flag: Id
    value: Any = None


class TransferData(ConversationRef):
    to_user_group_id: Id | None = None
    to_agent_id: Id | None = None


class StatusData(_Data):
    status: Literal["online", "away"]


class ResumeData(_Data):
    conversations: Annotated[dict[Id, Count], msgspec.Meta(max_length=MAX_RESUME_CONVERSATIONS)]


class MessageData(ConversationRef):
    text: Text | None = None
    id: Id | None = None
    attachments: Attachments = []
    private: bool = False


def _after(conversation_id: str, seq: int, tx: Tx) -> list[Message]:
    return messages_after(tx, conversation_id, seq, limit=RESUME_PAGE)


class _RefOnly(msgspec.Struct):
    ref: str | None = None


def _ref_of(raw: str | bytes) -> str | None:
    """The client's ``ref`` of a frame that is JSON but not a valid frame, if it has one."""
    try:
        refuse_deep_nesting(raw)
        return msgspec.json.decode(raw, type=_RefOnly).ref
    except (msgspec.DecodeError, UnicodeDecodeError, InvalidRequest):
        return None


_NOT_DIGITS = bytes(range(256)).translate(None, b"0123456789")
_DIGITS_TO_BLANK = bytes.maketrans(_NOT_DIGITS, b" " * len(_NOT_DIGITS))


def _refuse_unsafe_json(raw: str | bytes) -> None:
    """``refuse_nul``, ``refuse_deep_nesting`` and ``refuse_huge_integers``, each run only
    when the frame holds what it refuses: their regular expressions cost ~5 us a frame
    each, while a NUL (raw or ``\u0000``) and a run of 17 ASCII digits are found by a
    substring test and one ``translate``."""
    data = raw.encode() if isinstance(raw, str) else raw
    if b"\x00" in data or b"\\u0000" in data:
        refuse_nul(data)
    refuse_deep_nesting(data)
    if len(data) >= 17 and max(map(len, data.translate(_DIGITS_TO_BLANK).split()),
                               default=0) >= 17:
        refuse_huge_integers(data)


def error_frame(ref: str | None, exc: BaseException) -> dict[str, Any]:
    """The ``ERROR`` event for an exception (codes as in API.md section 1).

    A refusal by the actor runtime, or by a conversation whose owner moves, is
    ``unavailable`` with a documented ``details.reason`` (``owner_moving``, ``overloaded``);
    an unreachable dependency names it in ``details.dependency``. Internal class names and
    messages never reach the client.
    """
    details: dict[str, Any] | None = None
    if isinstance(exc, ApiError):
        code, message, details = exc.code, exc.message, exc.details
    elif isinstance(exc, ActorError):
        code, message = "unavailable", "temporarily unavailable; retry"
        details = {"reason": busy_reason(exc)}
    elif isinstance(exc, StaleState):
        code, message = "unavailable", "the conversation is moving; retry"
        details = {"reason": "owner_moving"}
    elif isinstance(exc, StoreUnavailable):
        code, message = "unavailable", "the store is unavailable; retry"
        details = {"dependency": "store"}
    elif isinstance(exc, BusError):
        code, message = "unavailable", "temporarily unavailable; retry"
        details = {"dependency": "bus"}
    elif isinstance(exc, LcxError):
        code, message = "unavailable", "temporarily unavailable; retry"
    else:
        code, message = "internal", "internal error"
    data: dict[str, Any] = {"code": code, "message": message}
    if details:
        data["details"] = details
    return {"type": "event", "event": "ERROR", "ref": ref, "data": data}


def _decode(data: Any, shape: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(data if data is not None else {}, shape)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"bad frame data: {exc}") from None


class FrameHandler:
    """Handles the frames of one agent connection."""

    def __init__(self, livechat: Livechat, principal: Principal, send: Send, *,
                 room: Room = _always_room) -> None:
        """``send`` queues a frame to the client; ``room`` waits until the client's queue
        has room again (``RESUME`` replays in pages and waits between them)."""
        assert principal.org is not None
        self.livechat = livechat
        self.principal = principal
        self.org = principal.org
        self.agent = AgentRef(id=principal.sub, name=principal.name)
        self.send = send
        self.room = room
        self.supervisor = principal.has_any("supervisor")
        self._guard = MemberGuard(org_id=self.org, agent_id=self.agent.id,
                                  supervisor=self.supervisor)
        self._events: dict[str, Callable[[Any], Awaitable[dict[str, Any] | None]]] = {
            "REQUEST_ACCEPT": self._accept, "REQUEST_CREATE": self._create,
            "CONVERSATION_JOIN": self._join, "CONVERSATION_LEAVE": self._leave,
            "CONVERSATION_END": self._end, "CONVERSATION_TYPING": self._typing,
            "CONVERSATION_READ": self._read, "PARTICIPANT_FLAG": self._flag,
            "TRANSFER": self._transfer, "AGENT_STATUS": self._status, "RESUME": self._resume,
        }

    async def handle(self, raw: str | bytes) -> None:
        """Decode one frame, run it, answer with ack or ERROR; never raises LcxError."""
        ref: str | None = None
        try:
            if len(raw) > MAX_FRAME_CHARS:
                raise InvalidRequest("frame too large")
            _refuse_unsafe_json(raw)
            frame = msgspec.json.decode(raw, type=Frame)
            ref = frame.ref
            reply = await self._dispatch(frame)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # msgspec raises UnicodeDecodeError, not DecodeError, for bytes that are not UTF-8
            self.send(error_frame(_ref_of(raw), InvalidRequest(f"malformed frame: {exc}")))
        except LcxError as exc:
            self.send(error_frame(ref if ref is not None else _ref_of(raw), exc))
        except Exception as exc:
            log.exception("agent frame failed", extra={"agent": self.agent.id})
            self.send(error_frame(ref, exc))
        else:
            if reply is not None and ref is not None:
                self.send({"type": "ack", "ref": ref, "data": reply})

    async def _dispatch(self, frame: Frame) -> dict[str, Any] | None:
        if frame.type == "ping":
            self.send({"type": "pong", "ref": frame.ref})
            return None
        if frame.type == "message":
            return await self._message(frame.data)
        if frame.type == "auth":
            return {}
        handler = self._events.get(frame.event or "")
        if handler is None:
            raise InvalidRequest(f"unknown event {frame.event!r}")
        result = await handler(frame.data)
        if frame.event == "REQUEST_CREATE" and result is not None:
            self.send(frames.event("REQUEST_CREATE_ACK", result, frame.ref))
        return result

    async def _conversation(self, conversation_id: str, *, member: bool = True,
                            took_part: bool = False) -> Conversation:
        """The conversation, if the caller may act on it: of its organization, and (with
        ``member``) one of its active agents or (with ``took_part``) one of its
        participants ever; supervisors may act on any.

        The actor answers from memory; before refusing, it is asked again to answer from
        the store (its memory may lag behind another owner's writes), so an agent whose
        accept was acked is never refused because a stale copy does not know it yet.

        Raises:
            NotFound: no such conversation in the caller's organization.
            Forbidden: the caller is not in it (as the store says).
        """
        state = await self._state(conversation_id, fresh=False)
        if self._refuses(state, member=member, took_part=took_part):
            state = await self._state(conversation_id, fresh=True)
            if self._refuses(state, member=member, took_part=took_part):
                raise Forbidden("you are not in this conversation")
        return state

    async def _state(self, conversation_id: str, *, fresh: bool) -> Conversation:
        try:
            state: Conversation = await self.livechat.conversations.ask(
                conversation_id, GetState(fresh=fresh))
        except NotFound:
            raise NotFound("no such conversation") from None
        if state.org_id != self.org:
            raise NotFound("no such conversation")
        return state

    def _refuses(self, state: Conversation, *, member: bool, took_part: bool) -> bool:
        if self.supervisor:
            return False
        if member:
            return not any(p.id == self.agent.id for p in state.active_agents())
        if took_part:
            return not any(p.id == self.agent.id for p in state.participants)
        return False

    async def _ask(self, conversation_id: str, message: Any) -> Any:
        return await self.livechat.conversations.ask(conversation_id, message)

    async def _accept(self, data: Any) -> dict[str, Any]:
        ref = _decode(data, RequestRef)
        conversation = await self.livechat.store.read(
            lambda tx: find_by_request(tx, ref.request_id))
        if conversation is None or conversation.org_id != self.org:
            raise NotFound("no such request")
        if not self.supervisor and conversation.user_group_id not in self.principal.groups:
            raise Forbidden("the request is for a user group you do not serve")
        accepted: Accepted = await self.livechat.queues.ask(
            queue_key(self.org, conversation.user_group_id),
            AcceptRequest(conversation_id=conversation.id, agent=self.agent))
        return {"conversationId": accepted.conversation.id, "requestId": ref.request_id,
                "messages": frames.plain(list(accepted.messages))}

    async def _create(self, data: Any) -> dict[str, Any]:
        create = _decode(data, CreateData)
        tenant = self.livechat.tenant(create.tenant_id)
        if tenant is None or tenant.organization_id != self.org:
            raise NotFound("no such tenant")
        group = create.user_group_id or tenant.default_user_group
        if not group:
            raise InvalidRequest("userGroupId is required for this tenant")
        conversation = new_request(
            org_id=self.org, tenant_id=tenant.id, sub_handle=create.sub_handle,
            user_group_id=group, provider=tenant.provider, channel=tenant.channel,
            now=utc_now(), flags={"agentInitiated": True})
        settings = await self.livechat.org_settings.get(self.org)
        if not await self.livechat.agents.ask(agent_key(self.org, self.agent.id), Reserve(
                conversation_id=conversation.id, limit=settings.max_concurrent_chats,
                assigned=False)):
            raise Conflict("you have no free chat slot")
        try:
            await self._ask(conversation.id, CreateRequest(conversation=conversation,
                                                           enqueue=False))
            accepted: Accepted = await self._ask(conversation.id, Accept(agent=self.agent))
        except BaseException:
            # the slot was reserved for a conversation that did not begin: give it back
            self.livechat.tell_agent(self.org, self.agent.id,
                                     Release(conversation_id=conversation.id))
            raise
        return {"requestId": conversation.request_id,
                "conversationId": accepted.conversation.id}

    async def _join(self, data: Any) -> dict[str, Any]:
        ref = _decode(data, ConversationRef)
        await self._conversation(ref.conversation_id, member=False)
        role = "supervisor" if self.supervisor else "agent"
        await self._ask(ref.conversation_id, Join(agent=self.agent, role=role))
        return {"conversationId": ref.conversation_id}

    async def _leave(self, data: Any) -> dict[str, Any]:
        ref = _decode(data, ConversationRef)
        await self._conversation(ref.conversation_id)
        await self._ask(ref.conversation_id, Leave(agent=self.agent))
        return {"conversationId": ref.conversation_id}

    async def _end(self, data: Any) -> dict[str, Any]:
        end = _decode(data, EndData)
        await self._conversation(end.conversation_id)
        await self._ask(end.conversation_id, End(by="agent", reason=end.reason,
                                                 agent=self.agent))
        return {"conversationId": end.conversation_id}

    async def _typing(self, data: Any) -> dict[str, Any]:
        typing = _decode(data, TypingData)
        await self._conversation(typing.conversation_id)
        await self._ask(typing.conversation_id, Typing(agent=self.agent, typing=typing.typing))
        return {"conversationId": typing.conversation_id}

    async def _read(self, data: Any) -> dict[str, Any]:
        read = _decode(data, ReadData)
        await self._conversation(read.conversation_id)
        await self._ask(read.conversation_id, Read(agent=self.agent, seq=read.seq))
        return {"conversationId": read.conversation_id, "seq": read.seq}

    async def _flag(self, data: Any) -> dict[str, Any]:
        flag = _decode(data, FlagData)
        if len(msgspec.json.encode(flag.value)) > MAX_FLAG_VALUE_BYTES:
            raise InvalidRequest(f"a flag value may take {MAX_FLAG_VALUE_BYTES} bytes of JSON")
        await self._conversation(flag.conversation_id)
        await self._ask(flag.conversation_id, Flag(agent=self.agent, flag=flag.flag,
                                                   value=flag.value))
        return {"conversationId": flag.conversation_id}

    async def _transfer(self, data: Any) -> dict[str, Any]:
        transfer = _decode(data, TransferData)
        if (transfer.to_user_group_id is None) == (transfer.to_agent_id is None):
            raise InvalidRequest("give exactly one of toUserGroupId and toAgentId")
        await self._conversation(transfer.conversation_id)
        await self._ask(transfer.conversation_id, Transfer(
            agent=self.agent, to_user_group_id=transfer.to_user_group_id,
            to_agent_id=transfer.to_agent_id))
        return {"conversationId": transfer.conversation_id}

    async def _status(self, data: Any) -> dict[str, Any]:
        status = _decode(data, StatusData)
        result = await self.livechat.agents.ask(agent_key(self.org, self.agent.id),
                                           SetStatus(status=status.status))
        return {"status": result}

    async def _resume(self, data: Any) -> dict[str, Any]:
        resume = _decode(data, ResumeData)
        replayed: dict[str, int] = {}
        for conversation_id, last_seen in resume.conversations.items():
            await self._conversation(conversation_id, member=False, took_part=True)
            replayed[conversation_id] = await self._replay(conversation_id, last_seen)
        return {"conversations": replayed}

    async def _replay(self, conversation_id: str, last_seen: int) -> int:
        """Send every message after ``last_seen``, a page at a time, each message only
        when the client's queue has room: a small RESUME never queues megabytes."""
        count = 0
        while True:
            page = await self.livechat.store.read(
                partial(_after, conversation_id, last_seen))
            for message in page:
                await self.room()
                self.send(frames.message(message))
            count += len(page)
            if len(page) < RESUME_PAGE:
                return count
            last_seen = page[-1].seq

    async def _message(self, data: Any) -> dict[str, Any]:
        message = _decode(data, MessageData)
        if not message.text and not message.attachments:
            raise InvalidRequest("a message needs text or attachments")
        # the membership check travels with the message: one hop to the actor, not two
        result: PostResult = await self._ask(message.conversation_id, PostMessage(
            author=Author(type="agent", id=self.agent.id, name=self.agent.name),
            type="file" if message.attachments and not message.text else "text",
            text=message.text, attachments=tuple(message.attachments), client_id=message.id,
            idempotency_scope=f"agent:{self.org}:{self.agent.id}" if message.id else None,
            private=message.private, guard=self._guard))
        return {"messageId": result.id, "seq": result.seq,
                "conversationId": result.conversation_id}
