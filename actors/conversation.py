"""The conversation actor: single writer of one request/conversation and its ``seq``.

State machine: pending -> active -> ended, plus pending -> cancelled | missed, and
active -> pending again on a transfer to a user group. Every change is one store
transaction holding the new state, its messages and the events it causes (transactional
outbox); only after the commit does the actor update its memory and tell agents, queues
and the delivery service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import msgspec

from actors import frames
from actors.events import build_events, edge_command_row
from actors.hub import Livechat
from actors.messages import (
    Accept,
    Accepted,
    CreateRequest,
    Dequeue,
    EdgeInbound,
    End,
    Enqueue,
    Flag,
    GetState,
    Join,
    Leave,
    OpenLink,
    PostMessage,
    PostResult,
    Read,
    Recover,
    Release,
    Reserve,
    Timeout,
    Transfer,
    Typing,
    UpdateRequest,
)
from adapters.edges import (
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeCommand,
    EdgeEnded,
    EdgeMessage,
    EdgeTransferred,
    EdgeTyping,
    EndSession,
    SendMessage,
    SendTyping,
)
from lcx.errors import Conflict, IntegrityConflict, NotFound
from lcx.ids import new_id
from lcx.model import AgentRef, Author, Conversation, Message, Participant, iso, parse_iso, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store import Tx
from lcx.store.conversations import (
    append_message,
    insert_conversation,
    load_conversation,
    messages_after,
    remember,
    remembered,
    save_conversation,
)
from lcx.store.edges import SIDE_CHANNEL, SIDE_PROVIDER
from lcx.store.outbox import OutboxEvent, enqueue

log = logging.getLogger("lcx.conversation")

NATIVE_PROVIDER = "helvia"
"""lcx's own agents."""
BOT_CHANNEL = "bot"
"""Customers who come through the bot API."""
replace = msgspec.structs.replace


@dataclass
class _Change:
    """One transaction's worth of effects."""

    messages: list[tuple[Message, str | None]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    remember: tuple[str, str, bytes] | None = None
    insert: bool = False
    commands: list[tuple[str, EdgeCommand]] = field(default_factory=list)
    """(side, command) for the conversation's channel or provider, via the outbox."""


class ConversationActor(Actor):
    """Owns one conversation; see the module docstring."""

    def __init__(self, hub: Livechat, conversation_id: str) -> None:
        self.hub = hub
        self.id = conversation_id
        self.state: Conversation | None = None

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.state = await self.hub.store.read(lambda tx: load_conversation(tx, self.id))
        await self._arm_timers()

    async def receive(self, message: Any) -> Any:
        match message:
            case CreateRequest():
                return await self._create(message.conversation, message.enqueue)
            case PostMessage():
                return await self._post(message)
            case GetState():
                return self._current()
            case Accept():
                return await self._accept(message.agent)
            case End():
                return await self._end(message)
            case Timeout():
                return await self._timeout(message)
            case Typing() | Read() | Flag():
                return await self._signal(message)
            case Join():
                return await self._join(message)
            case Leave():
                return await self._leave(message.agent)
            case Transfer():
                return await self._transfer(message)
            case UpdateRequest():
                return await self._update(message)
            case Recover():
                return await self._recover()
            case EdgeInbound():
                return await self._edge(message)
        raise TypeError(f"conversation actor got {type(message).__name__}")

    # --- helpers -------------------------------------------------------------------------

    def _current(self) -> Conversation:
        if self.state is None:
            raise NotFound(f"no conversation {self.id}")
        return self.state

    async def _commit(self, new: Conversation, change: _Change) -> Conversation:
        """Write ``new`` with its messages and events in one transaction, then adopt it."""
        tenant = self.hub.tenant(new.tenant_id)
        outbox: list[OutboxEvent] = []
        event_no = new.last_event_no
        for event_type, data in change.events:
            event_no += 1
            outbox += build_events(new, tenant, event_no, event_type, data)
        for side, command in change.commands:
            event_no += 1
            outbox.append(edge_command_row(new, side, event_no, command))
        new = replace(new, last_event_no=event_no)

        def write(tx: Tx) -> None:
            if change.insert:
                insert_conversation(tx, new)
            else:
                save_conversation(tx, new)
            for msg, client_id in change.messages:
                append_message(tx, msg, org_id=new.org_id, client_id=client_id)
            for event in outbox:
                enqueue(tx, event)
            if change.remember is not None:
                remember(tx, *change.remember, at=iso(utc_now()))

        await self.hub.store.transaction(write)
        self.state = new
        if outbox:
            self.hub.wake_delivery(new.id)
        await self._arm_timers()
        return new

    async def _arm_timers(self) -> None:
        state = self.state
        if state is None or not state.is_open:
            self.ctx.idle_seconds = 120.0
            self.ctx.cancel_timer("timeout")
            return
        self.ctx.idle_seconds = None  # an open conversation keeps its timers alive
        settings = await self.hub.org_settings.get(state.org_id)
        kind: Literal["request", "inactivity"]
        if state.status == "pending":
            start, seconds, kind = state.queued_at, settings.request_timeout_seconds, "request"
        else:
            start, seconds = state.last_activity_at, settings.inactivity_timeout_seconds
            kind = "inactivity"
        deadline = parse_iso(start) + timedelta(seconds=seconds)
        delay = max(0.0, (deadline - utc_now()).total_seconds())
        self.ctx.send_after(delay, Timeout(kind=kind, deadline=iso(deadline)), key="timeout")

    def _push(self, state: Conversation, frame: dict[str, Any], *,
              skip: str | None = None) -> None:
        for participant in state.active_agents():
            if participant.id != skip:
                self.hub.push_to_agent(state.org_id, participant.id, frame)

    # --- behaviours ----------------------------------------------------------------------

    async def _create(self, conversation: Conversation, enqueue: bool) -> Conversation:
        if self.state is not None:
            raise Conflict("request exists", details={"requestId": self.state.request_id})
        try:
            created = await self._commit(conversation, _Change(insert=True))
        except IntegrityConflict:
            raise Conflict("the subscriber already has an open request or conversation") \
                from None
        self.hub.counters.requests_created += 1
        if created.provider != NATIVE_PROVIDER:
            self.hub.links.post(created.id, OpenLink())
        elif enqueue:
            self.hub.tell_queue(created.org_id, created.user_group_id,
                                Enqueue(conversation=created))
        return created

    async def _post(self, post: PostMessage) -> PostResult:
        state = self._current()
        if post.client_id and post.idempotency_scope:
            earlier = await self.hub.store.read(
                lambda tx: remembered(tx, post.idempotency_scope or "", post.client_id or ""))
            if earlier is not None:
                return msgspec.json.decode(earlier, type=PostResult)
        if not state.is_open:
            raise NotFound("the conversation is not open")
        if post.author.type == "agent" and state.status != "active":
            raise Conflict("the conversation is not active")
        now = iso(utc_now())
        message = Message(conversation_id=state.id, seq=state.last_seq + 1,
                          message_id=new_id(), author=post.author, type=post.type, at=now,
                          text=post.text, payload=post.payload,
                          attachments=list(post.attachments))
        result = PostResult(id=message.message_id, conversation_id=state.id,
                            request_id=state.request_id, seq=message.seq)
        change = _Change(messages=[(message, post.client_id)])
        if post.client_id and post.idempotency_scope:
            change.remember = (post.idempotency_scope, post.client_id,
                               msgspec.json.encode(result))
        if post.author.type in ("agent", "system"):
            change.events.append(("MESSAGE", _message_event_data(message)))
        change.commands += _message_commands(state, message)
        activity = now if state.status == "active" else state.last_activity_at
        new = replace(state, last_seq=message.seq, last_activity_at=activity)
        try:
            await self._commit(new, change)
        except IntegrityConflict:
            # a concurrent duplicate won the race for this idempotency key
            earlier = await self.hub.store.read(
                lambda tx: remembered(tx, post.idempotency_scope or "", post.client_id or ""))
            if earlier is None:
                raise
            return msgspec.json.decode(earlier, type=PostResult)
        self.hub.counters.messages_stored += 1
        if new.status == "active":
            self._push(new, frames.message(message))
        return result

    async def _accept(self, agent: AgentRef) -> Accepted:
        state = self._current()
        if state.status != "pending":
            raise Conflict("the request is no longer pending",
                           details={"requestId": state.request_id, "status": state.status})
        now = iso(utc_now())
        participant = Participant(id=agent.id, name=agent.name, joined_at=now)
        new = replace(state, status="active", agent_id=agent.id, agent_name=agent.name,
                      accepted_at=state.accepted_at or now, accepted_by=agent.id,
                      participants=[*state.participants, participant], last_activity_at=now)
        change = _Change(events=[("CONVERSATION_BEGIN", {"agent": frames.plain(agent)})])
        settings = await self.hub.org_settings.get(state.org_id)
        greeting: Message | None = None
        if settings.greeting:
            greeting = Message(conversation_id=state.id, seq=new.last_seq + 1,
                               message_id=new_id(), author=Author(type="system"), type="text",
                               at=now, text=settings.greeting)
            change.messages.append((greeting, None))
            change.events.append(("MESSAGE", _message_event_data(greeting)))
            new = replace(new, last_seq=greeting.seq)
        new = await self._commit(new, change)
        queued = await self.hub.store.read(lambda tx: messages_after(tx, state.id, 0))
        return Accepted(conversation=new, messages=tuple(queued))

    async def _end(self, end: End) -> Conversation:
        state = self._current()
        if not state.is_open:
            raise NotFound("the conversation is not open")
        now = iso(utc_now())
        commands = _end_commands(state, end.by, end.reason)
        if state.status == "pending":
            new = replace(state, status="cancelled", ended_at=now, ended_by=end.by,
                          end_reason=end.reason)
            new = await self._commit(new, _Change(commands=commands))
            self.hub.tell_queue(new.org_id, new.user_group_id,
                                Dequeue(conversation_id=new.id, why="cancelled"))
            return new
        new = replace(state, status="ended", ended_at=now, ended_by=end.by,
                      end_reason=end.reason)
        data = {"endedBy": end.by, "reason": end.reason}
        new = await self._commit(new, _Change(events=[("CONVERSATION_END", data)],
                                              commands=commands))
        self.hub.counters.conversations_ended += 1
        ended = frames.event("CONVERSATION_END", {"conversationId": new.id, **data})
        self._push(new, ended)
        self._release_all(new)
        return new

    def _release_all(self, state: Conversation) -> None:
        for participant in state.participants:
            self.hub.tell_agent(state.org_id, participant.id, Release(conversation_id=state.id))

    async def _timeout(self, timeout: Timeout) -> None:
        state = self.state
        if state is None or not state.is_open:
            return
        if parse_iso(timeout.deadline) > utc_now():
            return await self._arm_timers()
        if timeout.kind == "request" and state.status == "pending":
            await self._miss(state)
        elif timeout.kind == "inactivity" and state.status == "active":
            await self._end(End(by="system", reason="inactivity"))
        else:
            await self._arm_timers()

    async def _miss(self, state: Conversation) -> None:
        now = utc_now()
        waited = round((now - parse_iso(state.queued_at)).total_seconds())
        new = replace(state, status="missed", ended_at=iso(now), ended_by="system",
                      end_reason="request_timeout")
        await self._commit(new, _Change(
            events=[("REQUEST_MISSED", {"waitedSeconds": waited})],
            commands=_end_commands(state, "system", "request_timeout")))
        self.hub.counters.requests_missed += 1
        self.hub.tell_queue(new.org_id, new.user_group_id,
                            Dequeue(conversation_id=new.id, why="missed"))

    async def _signal(self, signal: Typing | Read | Flag) -> None:
        state = self._current()
        if state.status != "active":
            raise Conflict("the conversation is not active")
        data: dict[str, Any] = {"conversationId": state.id,
                                "agent": frames.plain(signal.agent)}
        change = _Change()
        new = state
        if isinstance(signal, Typing):
            name = "CONVERSATION_TYPING"
            data["typing"] = signal.typing
            change.events.append(("CONVERSATION_TYPING", {"agent": frames.plain(signal.agent),
                                                          "typing": signal.typing}))
            if state.channel != BOT_CHANNEL:
                change.commands.append((SIDE_CHANNEL, SendTyping(
                    conversation_id=state.id, typing=signal.typing)))
        elif isinstance(signal, Read):
            name = "CONVERSATION_READ"
            data["seq"] = signal.seq
            markers = dict(state.flags.get("readMarkers") or {})
            markers[signal.agent.id] = signal.seq
            new = replace(state, flags={**state.flags, "readMarkers": markers})
        else:
            name = "PARTICIPANT_FLAG"
            data.update(flag=signal.flag, value=signal.value)
            new = replace(state, flags={**state.flags, signal.flag: signal.value})
        if change.events or new is not state:
            await self._commit(new, change)
        self._push(state, frames.event(name, data), skip=signal.agent.id)

    async def _join(self, join: Join) -> Conversation:
        state = self._current()
        if state.status != "active":
            raise Conflict("the conversation is not active")
        if any(p.id == join.agent.id for p in state.active_agents()):
            return state
        participant = Participant(id=join.agent.id, name=join.agent.name, role=join.role,
                                  joined_at=iso(utc_now()))
        new = await self._commit(replace(state, participants=[*state.participants,
                                                              participant]), _Change())
        self._push(new, frames.event("CONVERSATION_JOIN", {
            "conversationId": new.id, "agent": frames.plain(join.agent), "role": join.role}))
        return new

    async def _leave(self, agent: AgentRef) -> Conversation:
        state = self._current()
        if state.status != "active" or not any(p.id == agent.id for p in state.active_agents()):
            raise Conflict("the agent is not in this conversation")
        now = iso(utc_now())
        participants = [replace(p, left_at=now) if p.id == agent.id and p.left_at is None else p
                        for p in state.participants]
        remaining = [p for p in participants if p.left_at is None]
        primary = state.agent_id if state.agent_id != agent.id else \
            (remaining[0].id if remaining else None)
        primary_name = next((p.name for p in remaining if p.id == primary), state.agent_name)
        new = await self._commit(replace(state, participants=participants, agent_id=primary,
                                         agent_name=primary_name), _Change())
        self.hub.push_to_agent(state.org_id, agent.id, frames.event(
            "CONVERSATION_LEAVE", {"conversationId": new.id, "agent": frames.plain(agent)}))
        self._push(new, frames.event("CONVERSATION_LEAVE", {
            "conversationId": new.id, "agent": frames.plain(agent)}))
        self.hub.tell_agent(state.org_id, agent.id, Release(conversation_id=state.id))
        settings = await self.hub.org_settings.get(state.org_id)
        if not remaining and settings.end_on_last_leave:
            return await self._end(End(by="agent", reason="last agent left", agent=agent))
        return new

    async def _transfer(self, transfer: Transfer) -> Conversation:
        state = self._current()
        if state.status != "active":
            raise Conflict("the conversation is not active")
        if transfer.to_agent_id is not None:
            return await self._hand_over(state, transfer)
        group = transfer.to_user_group_id or state.user_group_id
        now = iso(utc_now())
        participants = [replace(p, left_at=now) if p.left_at is None else p
                        for p in state.participants]
        new = replace(state, status="pending", user_group_id=group, queued_at=now,
                      participants=participants, agent_id=None, agent_name=None)
        data = {"from": frames.plain(transfer.agent), "toUserGroupId": group}
        new = await self._commit(new, _Change(events=[("TRANSFER_REQUEST", data)]))
        note = frames.notification("conversation_transferred", {
            "conversationId": new.id, "requestId": new.request_id, "toUserGroupId": group})
        self._push(state, note)
        self._release_all(state)
        self.hub.tell_queue(new.org_id, group, Enqueue(conversation=new))
        return new

    async def _hand_over(self, state: Conversation, transfer: Transfer) -> Conversation:
        target = AgentRef(id=transfer.to_agent_id or "", name=None)
        presence = self.hub.presence.get((state.org_id, target.id))
        if presence is None:
            raise Conflict("the target agent is not connected")
        target = AgentRef(id=target.id, name=presence.name)
        settings = await self.hub.org_settings.get(state.org_id)
        from actors.hub import agent_key
        ok = await self.hub.agents.ask(agent_key(state.org_id, target.id), Reserve(
            conversation_id=state.id, limit=settings.max_concurrent_chats, assigned=False))
        if not ok:
            raise Conflict("the target agent has no free chat slot")
        now = iso(utc_now())
        participants = [replace(p, left_at=now) if p.left_at is None else p
                        for p in state.participants]
        participants.append(Participant(id=target.id, name=target.name, joined_at=now))
        new = replace(state, participants=participants, agent_id=target.id,
                      agent_name=target.name)
        data = {"from": frames.plain(transfer.agent), "toAgentId": target.id}
        new = await self._commit(new, _Change(events=[("TRANSFER_REQUEST", data)]))
        self._push(state, frames.notification("conversation_transferred", {
            "conversationId": new.id, "toAgentId": target.id}))
        self._release_all(state)
        history = await self.hub.store.read(lambda tx: messages_after(tx, state.id, 0))
        self.hub.push_to_agent(state.org_id, target.id, frames.notification(
            "conversation_transferred", {**frames.request_data(new),
                                         "conversationId": new.id, "fromAgentId":
                                         transfer.agent.id, "messages": frames.plain(history)}))
        return new

    async def _recover(self) -> None:
        await self._arm_timers()
        state = self.state
        if state is not None and state.is_open and state.provider != NATIVE_PROVIDER:
            self.hub.links.post(state.id, OpenLink())

    async def _edge(self, inbound: EdgeInbound) -> None:
        """Apply one normalized edge event (once: messages dedupe on their external id)."""
        state = self.state
        if state is None or not state.is_open:
            return  # late events of an ended conversation change nothing
        event = inbound.event
        if inbound.side == "channel":
            await self._from_customer(state, event)
        else:
            await self._from_provider(state, event)

    async def _from_customer(self, state: Conversation, event: AnyEdgeEvent) -> None:
        match event:
            case EdgeMessage():
                author = Author(type="subscriber", id=state.sub_handle,
                                name=state.subscriber.name)
                await self._post(_edge_post(state, event, author))
            case EdgeEnded():
                await self._end(End(by="subscriber", reason=event.reason))
            case EdgeTransferred():
                await self._commit(replace(state, flags={**state.flags,
                                                         "channelTransfer": event.to}),
                                   _Change())

    async def _from_provider(self, state: Conversation, event: AnyEdgeEvent) -> None:
        match event:
            case AgentJoined():
                if state.status == "pending":
                    await self._accept(event.agent)
                elif not any(p.id == event.agent.id for p in state.active_agents()):
                    await self._join(Join(agent=event.agent))
            case EdgeMessage():
                agent = event.author or AgentRef(id=state.provider, name=None)
                if state.status == "pending":
                    await self._accept(agent)
                await self._post(_edge_post(self._current(), event, Author(
                    type="agent", id=agent.id, name=agent.name)))
            case EdgeTyping() if state.status == "active":
                await self._signal(Typing(agent=event.agent or AgentRef(id=state.provider),
                                          typing=event.typing))
            case AgentLeft() if state.status == "active":
                await self._provider_agent_left(state, event.agent)
            case EdgeEnded():
                await self._end(End(by="provider", reason=event.reason))

    async def _provider_agent_left(self, state: Conversation, agent: AgentRef) -> None:
        now = iso(utc_now())
        participants = [replace(p, left_at=now) if p.id == agent.id and p.left_at is None
                        else p for p in state.participants]
        await self._commit(replace(state, participants=participants), _Change())

    async def _update(self, update: UpdateRequest) -> Conversation:
        state = self._current()
        if state.status != "pending":
            raise NotFound("no pending request")
        new = state
        if update.subscriber is not None:
            new = replace(new, subscriber=update.subscriber)
        if update.context is not None:
            new = replace(new, context=_merged_context(state, update))
        moved = update.user_group_id is not None and update.user_group_id != state.user_group_id
        if moved:
            new = replace(new, user_group_id=update.user_group_id or state.user_group_id)
        new = await self._commit(new, _Change())
        if moved:
            self.hub.tell_queue(state.org_id, state.user_group_id,
                                Dequeue(conversation_id=state.id, why="moved"))
        self.hub.tell_queue(new.org_id, new.user_group_id, Enqueue(conversation=new))
        return new


def _edge_post(state: Conversation, event: EdgeMessage, author: Author) -> PostMessage:
    """The message an edge event becomes, idempotent on the edge's own message id."""
    return PostMessage(author=author, type=event.type, text=event.text, payload=event.payload,
                       attachments=event.attachments, client_id=event.external_id,
                       idempotency_scope=f"edge:{state.id}" if event.external_id else None)


def _message_commands(state: Conversation, message: Message) -> list[tuple[str, EdgeCommand]]:
    """Where a stored message must also go: the customer's message to an external
    provider; an agent's (or system) message to an external channel."""
    command = SendMessage(conversation_id=state.id, message_id=message.message_id,
                          text=message.text, type=message.type, payload=message.payload,
                          attachments=tuple(message.attachments),
                          author_name=message.author.name)
    if message.author.type == "subscriber":
        return [(SIDE_PROVIDER, command)] if state.provider != NATIVE_PROVIDER else []
    return [(SIDE_CHANNEL, command)] if state.channel != BOT_CHANNEL else []


def _end_commands(state: Conversation, by: str, reason: str | None
                  ) -> list[tuple[str, EdgeCommand]]:
    """End the external sides that did not end it themselves."""
    commands: list[tuple[str, EdgeCommand]] = []
    if state.provider != NATIVE_PROVIDER and by != "provider":
        commands.append((SIDE_PROVIDER, EndSession(conversation_id=state.id, reason=reason)))
    if state.channel != BOT_CHANNEL and by != "subscriber":
        commands.append((SIDE_CHANNEL, EndSession(conversation_id=state.id, reason=reason)))
    return commands


def _merged_context(state: Conversation, update: UpdateRequest) -> Any:
    assert update.context is not None
    transcript = [*state.context.transcript, *update.context.transcript]
    metadata = {**state.context.metadata, **update.context.metadata}
    return replace(state.context, transcript=transcript, metadata=metadata)


def _message_event_data(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {"messageId": message.message_id,
                            "author": frames.plain(message.author), "type": message.type,
                            "text": message.text,
                            "attachments": frames.plain(message.attachments)}
    if message.payload is not None:
        data["payload"] = message.payload
    return data
