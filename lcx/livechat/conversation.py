"""The rules of one conversation: ``decide(state, command, settings, now) -> Decision``.

A request is *pending* in its user group's queue until an agent accepts it (*active*);
it ends as *cancelled* (the bot or subscriber withdrew it while pending), *missed*
(nobody accepted it within ``requestTimeoutSeconds``) or *ended* (by the bot, an agent,
the provider, the subscriber's channel or inactivity). A transfer to a user group puts an
active conversation back to pending; a transfer to an agent hands it over in place.

Every function here is pure: it reads the state, the command, the organization's
settings and the time, and returns a :class:`~lcx.livechat.decision.Decision`; the
conversation actor stores and carries it out.

An internal note (``PostMessage.private``, agents only) takes the next ``seq`` and reaches
the conversation's agents like any message, but causes no event to the bot and no
command to the channel or provider: it never leaves lcx's agents. Rules refuse with
:class:`~lcx.errors.Conflict` or :class:`~lcx.errors.NotFound` and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from lcx.errors import Conflict, Forbidden, LcxError, NotFound
from lcx.ids import new_id
from lcx.livechat import frames
from lcx.livechat.commands import (
    Accept,
    CreateRequest,
    EdgeInbound,
    End,
    Flag,
    GetState,
    HandOver,
    Join,
    Leave,
    MemberGuard,
    PostMessage,
    PostResult,
    Read,
    Recover,
    Timeout,
    Transfer,
    Typing,
    UpdateRequest,
)
from lcx.livechat.decision import (
    AgentFrame,
    Decision,
    HistoryFrame,
    Note,
    OpenProviderLink,
    QueueRequest,
    ReleaseSlot,
    UnqueueRequest,
)
from lcx.livechat.edges import (
    SIDE_CHANNEL,
    SIDE_PROVIDER,
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeCommand,
    EdgeEnded,
    EdgeMessage,
    EdgeRead,
    EdgeTransferred,
    EdgeTyping,
    EdgeUndelivered,
    EndSession,
    SendMessage,
    SendTyping,
    Side,
)
from lcx.livechat.settings import LivechatSettings
from lcx.model import (
    AgentRef,
    Author,
    Context,
    Conversation,
    Message,
    Participant,
    Subscriber,
    iso,
    parse_iso,
)

NATIVE_PROVIDER = "helvia"
"""lcx's own agents."""
BOT_CHANNEL = "bot"
"""Customers who come through the bot API."""

replace = msgspec.structs.replace
IdSource = Callable[[], str]
TimeoutKind = Literal["request", "inactivity"]


def new_request(*, org_id: str, tenant_id: str, sub_handle: str, user_group_id: str,
                provider: str, channel: str, now: datetime,
                subscriber: Subscriber | None = None, context: Context | None = None,
                flags: dict[str, Any] | None = None, ids: IdSource = new_id) -> Conversation:
    """A pending request; its conversation id is reserved now and shown once accepted."""
    at = iso(now)
    return Conversation(
        id=ids(), request_id=ids(), org_id=org_id, tenant_id=tenant_id,
        sub_handle=sub_handle, user_group_id=user_group_id, provider=provider,
        channel=channel, status="pending", subscriber=subscriber or Subscriber(),
        context=context or Context(), participants=[], flags=dict(flags or {}),
        created_at=at, queued_at=at, last_activity_at=at)


def next_timeout(state: Conversation | None, settings: LivechatSettings) -> Timeout | None:
    """The timer an open conversation runs: the request timeout while pending, the
    inactivity timeout while active; None once it is closed."""
    if state is None:
        return None
    return timeout_of(state.status, state.queued_at, state.last_activity_at, settings)


def timeout_of(status: str, queued_at: str, last_activity_at: str,
               settings: LivechatSettings) -> Timeout | None:
    """:func:`next_timeout` from the three fields it depends on (for a sweep that arms
    deadlines from stored keys without loading whole conversations)."""
    due = deadline_of(status, queued_at, last_activity_at, settings)
    return None if due is None else Timeout(kind=due[0], deadline=iso(due[1]))


def next_deadline(state: Conversation | None, settings: LivechatSettings
                  ) -> tuple[TimeoutKind, datetime] | None:
    """:func:`next_timeout` as (kind, deadline), the deadline not formatted (for the
    shell, which waits until it)."""
    if state is None:
        return None
    return deadline_of(state.status, state.queued_at, state.last_activity_at, settings)


def deadline_of(status: str, queued_at: str, last_activity_at: str,
                settings: LivechatSettings) -> tuple[TimeoutKind, datetime] | None:
    """The kind and moment of the deadline a conversation in ``status`` waits for."""
    if status == "pending":
        return "request", parse_iso(queued_at) + timedelta(
            seconds=settings.request_timeout_seconds)
    if status == "active":
        return "inactivity", parse_iso(last_activity_at) + timedelta(
            seconds=settings.inactivity_timeout_seconds)
    return None


def held_by(state: Conversation, agent_id: str) -> bool:
    """Whether ``agent_id`` accepted this conversation and is still in it (an accept it
    retries is answered again rather than refused)."""
    return state.status == "active" and state.accepted_by == agent_id and any(
        p.id == agent_id and p.left_at is None for p in state.participants)


def idempotency_key(state: Conversation | None, command: Any) -> tuple[str, str] | None:
    """The (scope, client id) under which an earlier answer to ``command`` may be stored:
    the shell looks it up before deciding, so that a resend is answered as the first."""
    if isinstance(command, PostMessage) and command.client_id and command.idempotency_scope:
        return command.idempotency_scope, command.client_id
    if (isinstance(command, EdgeInbound) and isinstance(command.event, EdgeMessage)
            and command.event.external_id and state is not None):
        return _edge_scope(state), command.event.external_id
    return None


def guard_refusal(state: Conversation | None, guard: MemberGuard) -> LcxError | None:
    """Why the caller of ``guard`` may not act on the conversation ``state``, if it may
    not: NotFound when there is none in its organization, Forbidden when it is not one of
    the active agents (supervisors may act on any conversation of their organization)."""
    if state is None or state.org_id != guard.org_id:
        return NotFound("no such conversation")
    if guard.supervisor or any(p.id == guard.agent_id and p.left_at is None
                               for p in state.participants):
        return None
    return Forbidden("you are not in this conversation")


def decide(state: Conversation | None, command: Any, settings: LivechatSettings,
           now: datetime, *, ids: IdSource = new_id) -> Decision:
    """What ``command`` does to the conversation ``state``; see the module docstring.

    Raises:
        NotFound: there is no such conversation, or it is not open (where it must be).
        Conflict: the conversation's status does not allow the command.
    """
    rules = _Rules(settings, now, ids)
    match command:
        case CreateRequest():
            return rules.create(state, command)
        case GetState():
            return Decision(state, reply=_existing(state))
        case Recover():
            return rules.recover(state)
        case Timeout():
            return rules.timeout(state, command)
        case EdgeInbound():
            return rules.edge(state, command)
    current = _existing(state)
    match command:
        case PostMessage():
            return rules.post(current, command)
        case Accept():
            return rules.accept(current, command.agent)
        case End():
            return rules.end(current, command)
        case Typing() | Read() | Flag():
            return rules.signal(current, command)
        case Join():
            return rules.join(current, command)
        case Leave():
            return rules.leave(current, command.agent)
        case Transfer():
            return rules.transfer(current, command)
        case HandOver():
            return rules.hand_over(current, command)
        case UpdateRequest():
            return rules.update(current, command)
    raise TypeError(f"a conversation does not obey {type(command).__name__}")


def _existing(state: Conversation | None) -> Conversation:
    if state is None:
        raise NotFound("no such conversation")
    return state


def _edge_scope(state: Conversation) -> str:
    return f"edge:{state.id}"


class _Rules:
    """The transitions, sharing the settings, the time and the id source of one decide."""

    def __init__(self, settings: LivechatSettings, now: datetime, ids: IdSource) -> None:
        self.settings = settings
        self.now = now
        self.at = iso(now)
        self.ids = ids

    # --- a request's life -------------------------------------------------------------

    def create(self, state: Conversation | None, create: CreateRequest) -> Decision:
        if state is not None:
            raise Conflict("request exists", details={"requestId": state.request_id})
        new = create.conversation
        decision = Decision(new, reply=new, write=True, insert=True,
                            counted=["requests_created"])
        if new.provider != NATIVE_PROVIDER:
            decision.notes.append(OpenProviderLink())
        elif create.enqueue:
            decision.notes.append(QueueRequest(new.user_group_id, new))
        return decision

    def update(self, state: Conversation, update: UpdateRequest) -> Decision:
        if state.status != "pending":
            raise NotFound("no pending request")
        new = state
        if update.subscriber is not None:
            new = replace(new, subscriber=update.subscriber)
        if update.context is not None:
            new = replace(new, context=replace(
                state.context, transcript=[*state.context.transcript,
                                           *update.context.transcript],
                metadata={**state.context.metadata, **update.context.metadata}))
        decision = Decision(new, reply=new, write=True)
        if update.user_group_id is not None and update.user_group_id != state.user_group_id:
            new = replace(new, user_group_id=update.user_group_id)
            decision = Decision(new, reply=new, write=True, notes=[
                UnqueueRequest(state.user_group_id, state.id, "moved")])
        if new.provider == NATIVE_PROVIDER:  # a provider's request waits in the provider
            decision.notes.append(QueueRequest(new.user_group_id, new))
        return decision

    def accept(self, state: Conversation, agent: AgentRef) -> Decision:
        if held_by(state, agent.id):  # the winner's retry, its ack lost: the same answer
            return Decision(state, with_history=True)
        if state.status != "pending":
            raise Conflict("the request is no longer pending",
                           details={"requestId": state.request_id, "status": state.status})
        participant = Participant(id=agent.id, name=agent.name, joined_at=self.at)
        new = replace(state, status="active", agent_id=agent.id, agent_name=agent.name,
                      accepted_at=state.accepted_at or self.at, accepted_by=agent.id,
                      participants=[*state.participants, participant],
                      last_activity_at=self.at)
        decision = Decision(new, write=True, with_history=True,
                            events=[("CONVERSATION_BEGIN", {"agent": frames.plain(agent)})])
        if self.settings.greeting:
            greeting = self._message(new, Author(type="system"), type="text",
                                     text=self.settings.greeting)
            decision.messages.append((greeting, None))
            decision.events.append(("MESSAGE", message_event_data(greeting)))
            decision.commands += message_commands(new, greeting)
            decision.state = replace(new, last_seq=greeting.seq)
        return decision

    def timeout(self, state: Conversation | None, timeout: Timeout) -> Decision:
        due = next_timeout(state, self.settings)
        if state is None or due is None or due.kind != timeout.kind or \
                parse_iso(due.deadline) > self.now:
            # closed, early, or stale (activity since it was armed): the shell re-arms
            return Decision(state)
        if timeout.kind == "request" and state.status == "pending":
            return self.miss(state)
        if timeout.kind == "inactivity" and state.status == "active":
            return self.end(state, End(by="system", reason="inactivity"))
        return Decision(state)

    def miss(self, state: Conversation) -> Decision:
        waited = round((self.now - parse_iso(state.queued_at)).total_seconds())
        new = replace(state, status="missed", ended_at=self.at, ended_by="system",
                      end_reason="request_timeout")
        return Decision(new, write=True,
                        events=[("REQUEST_MISSED", {"waitedSeconds": waited})],
                        commands=end_commands(state, "system", "request_timeout"),
                        notes=[UnqueueRequest(new.user_group_id, new.id, "missed")],
                        counted=["requests_missed"])

    def end(self, state: Conversation, end: End) -> Decision:
        if not state.is_open:
            raise NotFound("the conversation is not open")
        commands = end_commands(state, end.by, end.reason)
        if state.status == "pending":
            new = replace(state, status="cancelled", ended_at=self.at, ended_by=end.by,
                          end_reason=end.reason)
            return Decision(new, reply=new, write=True, commands=commands,
                            notes=[UnqueueRequest(new.user_group_id, new.id, "cancelled")])
        new = replace(state, status="ended", ended_at=self.at, ended_by=end.by,
                      end_reason=end.reason)
        data = {"endedBy": end.by, "reason": end.reason}
        ended = frames.event("CONVERSATION_END", {"conversationId": new.id, **data})
        return Decision(new, reply=new, write=True, events=[("CONVERSATION_END", data)],
                        commands=commands, frames=_to_agents(new, ended),
                        notes=_release_all(new), counted=["conversations_ended"])

    def recover(self, state: Conversation | None) -> Decision:
        decision = Decision(state)
        if state is not None and state.is_open and state.provider != NATIVE_PROVIDER:
            decision.notes.append(OpenProviderLink())
        return decision

    # --- messages and signals ---------------------------------------------------------

    def post(self, state: Conversation, post: PostMessage) -> Decision:
        if not state.is_open:
            raise NotFound("the conversation is not open")
        if post.author.type == "agent" and state.status != "active":
            raise Conflict("the conversation is not active")
        if post.private and (post.author.type != "agent" or state.status != "active"):
            raise Conflict("internal notes are written by agents in active conversations")
        author = post.author
        if post.as_subscriber:  # signed as the conversation's subscriber is now
            author = Author(type="subscriber", id=state.sub_handle, name=state.subscriber.name)
        message = self._message(state, author, type=post.type, text=post.text,
                                payload=post.payload, attachments=list(post.attachments),
                                private=post.private)
        result = PostResult(id=message.message_id, conversation_id=state.id,
                            request_id=state.request_id, seq=message.seq)
        activity = self.at if state.status == "active" else state.last_activity_at
        new = replace(state, last_seq=message.seq, last_activity_at=activity)
        decision = Decision(new, reply=result, write=True,
                            messages=[(message, post.client_id)],
                            commands=[] if message.private
                            else message_commands(state, message),
                            counted=["messages_stored"])
        if post.client_id and post.idempotency_scope:
            decision.remember = (post.idempotency_scope, post.client_id, result)
        if post.author.type in ("agent", "system") and not message.private:
            decision.events.append(("MESSAGE", message_event_data(message)))
        if new.status == "active":
            decision.frames = _to_agents(new, frames.message(message))
        return decision

    def signal(self, state: Conversation, signal: Typing | Read | Flag) -> Decision:
        if state.status != "active":
            raise Conflict("the conversation is not active")
        agent = frames.plain(signal.agent)
        data: dict[str, Any] = {"conversationId": state.id, "agent": agent}
        decision = Decision(state)
        if isinstance(signal, Typing):
            name = "CONVERSATION_TYPING"
            data["typing"] = signal.typing
            decision.events.append(("CONVERSATION_TYPING",
                                    {"agent": agent, "typing": signal.typing}))
            if state.channel != BOT_CHANNEL:
                decision.commands.append((SIDE_CHANNEL, SendTyping(
                    conversation_id=state.id, typing=signal.typing)))
        elif isinstance(signal, Read):
            name = "CONVERSATION_READ"
            data["seq"] = signal.seq
            markers = {**(state.flags.get("readMarkers") or {}), signal.agent.id: signal.seq}
            decision.state = replace(state, flags={**state.flags, "readMarkers": markers})
            decision.write = True
        else:
            name = "PARTICIPANT_FLAG"
            data.update(flag=signal.flag, value=signal.value)
            decision.state = replace(state, flags={**state.flags, signal.flag: signal.value})
            decision.write = True
        decision.frames = _to_agents(state, frames.event(name, data), skip=signal.agent.id)
        return decision

    # --- agents joining, leaving, handing over -----------------------------------------

    def join(self, state: Conversation, join: Join) -> Decision:
        if state.status != "active":
            raise Conflict("the conversation is not active")
        if any(p.id == join.agent.id for p in state.active_agents()):
            return Decision(state, reply=state)
        participant = Participant(id=join.agent.id, name=join.agent.name, role=join.role,
                                  joined_at=self.at)
        new = replace(state, participants=[*state.participants, participant])
        frame = frames.event("CONVERSATION_JOIN", {
            "conversationId": new.id, "agent": frames.plain(join.agent), "role": join.role})
        return Decision(new, reply=new, write=True, frames=_to_agents(new, frame))

    def leave(self, state: Conversation, agent: AgentRef) -> Decision:
        if state.status != "active" or not any(p.id == agent.id
                                               for p in state.active_agents()):
            raise Conflict("the agent is not in this conversation")
        participants = [replace(p, left_at=self.at) if p.id == agent.id and p.left_at is None
                        else p for p in state.participants]
        remaining = [p for p in participants if p.left_at is None]
        primary = state.agent_id if state.agent_id != agent.id else \
            (remaining[0].id if remaining else None)
        primary_name = None if primary is None else \
            next((p.name for p in remaining if p.id == primary), state.agent_name)
        new = replace(state, participants=participants, agent_id=primary,
                      agent_name=primary_name)
        left = frames.event("CONVERSATION_LEAVE", {"conversationId": new.id,
                                                   "agent": frames.plain(agent)})
        decision = Decision(new, reply=new, write=True,
                            frames=[AgentFrame(agent.id, left), *_to_agents(new, left)],
                            notes=[ReleaseSlot(agent.id)])
        if not remaining and self.settings.end_on_last_leave:
            return decision.then(self.end(new, End(by="agent", reason="last agent left",
                                                   agent=agent)))
        return decision

    def transfer(self, state: Conversation, transfer: Transfer) -> Decision:
        if state.status != "active":
            raise Conflict("the conversation is not active")
        group = transfer.to_user_group_id or state.user_group_id
        participants = [replace(p, left_at=self.at) if p.left_at is None else p
                        for p in state.participants]
        new = replace(state, status="pending", user_group_id=group, queued_at=self.at,
                      participants=participants, agent_id=None, agent_name=None)
        note = frames.notification("conversation_transferred", {
            "conversationId": new.id, "requestId": new.request_id, "toUserGroupId": group})
        data = {"from": frames.plain(transfer.agent), "toUserGroupId": group}
        return Decision(new, reply=new, write=True, events=[("TRANSFER_REQUEST", data)],
                        frames=_to_agents(state, note),
                        notes=[*_release_all(state), QueueRequest(group, new)])

    def hand_over(self, state: Conversation, hand_over: HandOver) -> Decision:
        """A transfer to an agent whose chat slot the shell has already reserved."""
        if state.status != "active":
            raise Conflict("the conversation is not active")
        target = hand_over.target
        participants = [replace(p, left_at=self.at) if p.left_at is None else p
                        for p in state.participants]
        participants.append(Participant(id=target.id, name=target.name, joined_at=self.at))
        new = replace(state, participants=participants, agent_id=target.id,
                      agent_name=target.name)
        data = {"from": frames.plain(hand_over.agent), "toAgentId": target.id}
        told = frames.notification("conversation_transferred", {
            "conversationId": new.id, "toAgentId": target.id})
        welcome = frames.notification("conversation_transferred", {
            **frames.request_data(new), "conversationId": new.id,
            "fromAgentId": hand_over.agent.id})
        released = [note for note in _release_all(state)
                    if not (isinstance(note, ReleaseSlot) and note.agent_id == target.id)]
        return Decision(new, reply=new, write=True, events=[("TRANSFER_REQUEST", data)],
                        frames=[*_to_agents(state, told), HistoryFrame(target.id, welcome)],
                        notes=released)

    # --- the edges ---------------------------------------------------------------------

    def edge(self, state: Conversation | None, inbound: EdgeInbound) -> Decision:
        """Apply one normalized edge event; late events of a closed conversation change
        nothing."""
        if state is None or not state.is_open:
            return Decision(state)
        if inbound.side == SIDE_CHANNEL:
            decision = self._from_customer(state, inbound.event)
        else:
            decision = self._from_provider(state, inbound.event)
        decision.reply = None
        decision.with_history = False
        return decision

    def _from_customer(self, state: Conversation, event: AnyEdgeEvent) -> Decision:
        match event:
            case EdgeMessage():
                author = Author(type="subscriber", id=state.sub_handle,
                                name=state.subscriber.name)
                return self.post(state, _edge_post(state, event, author))
            case EdgeEnded():
                return self.end(state, End(by="subscriber", reason=event.reason))
            case EdgeTransferred():
                return Decision(replace(state, flags={**state.flags,
                                                      "channelTransfer": event.to}),
                                write=True)
            case EdgeUndelivered():
                told = frames.notification("message_undeliverable", {
                    "conversationId": state.id, "messageId": event.message_id,
                    "reason": event.notice})
                return Decision(state, frames=_to_agents(state, told))
            case EdgeTyping() if state.status == "active":
                typing = frames.event("CONVERSATION_TYPING", {
                    "conversationId": state.id, "subscriber": True, "typing": event.typing})
                return Decision(state, frames=_to_agents(state, typing))
            case EdgeRead() if state.status == "active":
                read = frames.event("CONVERSATION_READ", {
                    "conversationId": state.id, "subscriber": True, "at": event.at})
                return Decision(state, frames=_to_agents(state, read))
        return Decision(state)

    def _from_provider(self, state: Conversation, event: AnyEdgeEvent) -> Decision:
        match event:
            case AgentJoined():
                if state.status == "pending":
                    return self.accept(state, event.agent)
                if not any(p.id == event.agent.id for p in state.active_agents()):
                    return self.join(state, Join(agent=event.agent))
            case EdgeMessage():
                agent = event.author or AgentRef(id=state.provider, name=None)
                author = Author(type="agent", id=agent.id, name=agent.name)
                if state.status == "pending":
                    accepted = self.accept(state, agent)
                    assert accepted.state is not None
                    return accepted.then(self.post(accepted.state,
                                                   _edge_post(accepted.state, event, author)))
                return self.post(state, _edge_post(state, event, author))
            case EdgeTyping() if state.status == "active":
                return self.signal(state, Typing(
                    agent=event.agent or AgentRef(id=state.provider), typing=event.typing))
            case AgentLeft() if state.status == "active":
                participants = [replace(p, left_at=self.at)
                                if p.id == event.agent.id and p.left_at is None else p
                                for p in state.participants]
                new = replace(state, participants=participants)
                decision = Decision(new, write=True)
                if self.settings.end_on_last_leave and \
                        not any(p.left_at is None for p in participants):
                    # as for native agents: the last one out ends it (the provider's doing)
                    return decision.then(self.end(new, End(by="provider",
                                                           reason="last agent left")))
                return decision
            case EdgeEnded():
                return self.end(state, End(by="provider", reason=event.reason))
        return Decision(state)

    def _message(self, state: Conversation, author: Author, **fields: Any) -> Message:
        return Message(conversation_id=state.id, seq=state.last_seq + 1,
                       message_id=self.ids(), author=author, at=self.at, **fields)


def _to_agents(state: Conversation, frame: dict[str, Any], *,
               skip: str | None = None) -> list[AgentFrame | HistoryFrame]:
    """``frame`` for every agent still in the conversation (but ``skip``)."""
    return [AgentFrame(p.id, frame) for p in state.active_agents() if p.id != skip]


def _release_all(state: Conversation) -> list[Note]:
    return [ReleaseSlot(p.id) for p in state.participants]


def _edge_post(state: Conversation, event: EdgeMessage, author: Author) -> PostMessage:
    """The message an edge event becomes, idempotent on the edge's own message id."""
    return PostMessage(author=author, type=event.type, text=event.text, payload=event.payload,
                       attachments=event.attachments, client_id=event.external_id,
                       idempotency_scope=_edge_scope(state) if event.external_id else None)


def message_commands(state: Conversation, message: Message) -> list[tuple[Side, EdgeCommand]]:
    """Where a stored message must also go: the customer's message to an external
    provider; an agent's (or system) message to an external channel."""
    if message.author.type == "subscriber":
        if state.provider == NATIVE_PROVIDER:
            return []
        side: Side = SIDE_PROVIDER
    elif state.channel == BOT_CHANNEL:
        return []
    else:
        side = SIDE_CHANNEL
    return [(side, SendMessage(conversation_id=state.id, message_id=message.message_id,
                               text=message.text, type=message.type,
                               payload=message.payload,
                               attachments=tuple(message.attachments),
                               author_name=message.author.name))]


def end_commands(state: Conversation, by: str, reason: str | None
                 ) -> list[tuple[Side, EdgeCommand]]:
    """End the external sides that did not end it themselves."""
    commands: list[tuple[Side, EdgeCommand]] = []
    if state.provider != NATIVE_PROVIDER and by != "provider":
        commands.append((SIDE_PROVIDER, EndSession(conversation_id=state.id, reason=reason)))
    if state.channel != BOT_CHANNEL and by != "subscriber":
        commands.append((SIDE_CHANNEL, EndSession(conversation_id=state.id, reason=reason)))
    return commands


def message_event_data(message: Message) -> dict[str, Any]:
    """The ``data`` of the bot's ``MESSAGE`` event for a stored message."""
    data: dict[str, Any] = {"messageId": message.message_id,
                            "author": frames.plain(message.author), "type": message.type,
                            "text": message.text,
                            "attachments": frames.plain(message.attachments)}
    if message.payload is not None:
        data["payload"] = message.payload
    return data
