"""The conversation actor: single writer of one request/conversation and its ``seq``.

A thin shell around the rules of :mod:`lcx.livechat.conversation`: for each command it
looks up what the rules need from outside (an earlier answer to an idempotent resend, the
organization's settings, the target agent's slot for a hand-over), asks the rules for a
:class:`~lcx.livechat.decision.Decision`, commits it as one store transaction (the new
state, its messages and the events and edge commands it causes: a transactional outbox),
and only after the commit updates its memory, pushes frames and tells queues, agents and
provider links. Then it re-arms its one timer.

Its memory may lag behind the store: while membership changes another instance may own
the conversation for a while and write to it (this one paused, cut off, or suspected dead
when it was not), and this actor is not told. A write decided from a lagging memory fails
the store's guard and is decided again on the stored state; a refusal is never made from
memory alone either: a command the rules refuse is decided again on the stored state when
that differs (one read, on refusals only). ``GetState(fresh=True)`` answers from the
store, for callers about to refuse on the strength of the answer.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.events import build_events, edge_command_row
from actors.messages import (
    Accepted,
    CreateRequest,
    Dequeue,
    Enqueue,
    GetState,
    PostMessage,
    PostResult,
    Recover,
    Release,
    Reserve,
    Timeout,
    Transfer,
)
from actors.ports import ConversationPorts
from lcx.errors import Conflict, IntegrityConflict, LcxError, StaleState
from lcx.livechat import conversation as rules
from lcx.livechat.commands import HandOver, MemberGuard
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
from lcx.livechat.settings import DEFAULT_SETTINGS, LivechatSettings
from lcx.model import AgentRef, Conversation, iso, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store import Tx
from lcx.store.conversations import (
    append_message,
    claim,
    insert_conversation,
    load_conversation,
    messages_after,
    remember,
    remembered,
    save_conversation,
)
from lcx.store.outbox import OutboxEvent, enqueue

log = logging.getLogger("lcx.conversation")

STALE_ATTEMPTS = 3
"""Decisions tried on a freshly read state before a stale write is given up."""
CLOSED_IDLE_SECONDS = 10.0
"""How long a closed conversation's actor stays in memory after its last message (a late
resend or read is answered from the store after that)."""
OPEN_IDLE_SECONDS = 60.0
"""How long an active conversation's actor stays in memory after its last message; its
deadline waits in the instance's timer service meanwhile and wakes it."""
PENDING_IDLE_SECONDS = 5.0
"""How long a pending conversation's actor stays in memory after its last message: it
waits for an agent with nothing to do (its deadline is in the timer service), and every
live actor is ~100 objects that each full garbage collection walks (6,000 requests
waiting a minute in memory made one collection stand the loop still for 260 ms)."""
WOKEN_IDLE_SECONDS = 1.0
"""How long an actor woken only to re-arm its deadline (``Recover``: a sweep after a
restart or a move wakes every open conversation) stays without another message."""

_TimerBasis = tuple[str, str, str, int, int]
"""(status, queued_at, last_activity_at, request and inactivity timeouts): all a
conversation's deadline depends on."""
_DISARMED: _TimerBasis = ("closed", "", "", 0, 0)
"""The basis once the timer was cancelled (the conversation closed)."""

replace = msgspec.structs.replace
_encode = msgspec.json.encode


_ISO_CHARS = len("2026-12-03T06:00:01.000Z")


def _pushed_back(armed: _TimerBasis | None, basis: _TimerBasis) -> bool:
    """Whether ``basis`` differs from the armed one only by a later last activity of an
    active conversation (its inactivity deadline moved later, nothing else changed)."""
    if armed is None or armed[0] != "active" or basis[0] != "active":
        return False
    at, armed_at = basis[2], armed[2]
    # iso() text sorts as time: compared as text, with no parse
    return (armed[1] == basis[1] and armed[3:] == basis[3:]
            and len(at) == len(armed_at) == _ISO_CHARS and at > armed_at)


class ConversationActor(Actor):
    """Owns one conversation; see the module docstring."""

    def __init__(self, ports: ConversationPorts, conversation_id: str) -> None:
        self.ports = ports
        self.id = conversation_id
        self.state: Conversation | None = None
        self._fresh = False
        """Whether :attr:`state` was read from the store while handling this message."""
        self._armed: _TimerBasis | None = None
        """What the timer armed last was computed from (None: not known to be armed)."""

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        await self._reload()
        await self._arm_timer()

    async def receive(self, message: Any) -> Any:
        try:
            return await self._receive(message)
        finally:
            self._fresh = False
            if isinstance(message, Recover):
                self.ctx.idle_seconds = WOKEN_IDLE_SECONDS

    async def _reload(self) -> bool:
        """Adopt the stored state; whether it differs from what memory held (another
        activation of this conversation wrote meanwhile: an owner elsewhere for a while)."""
        stored = await self.ports.store.read(lambda tx: load_conversation(tx, self.id))
        changed = stored != self.state
        self.state = stored
        self._fresh = True
        return changed

    async def _receive(self, message: Any) -> Any:
        if isinstance(message, (Timeout, Recover)):
            # the timer fired (so nothing is armed any more), or the actor is woken to
            # arm it again: either way it is armed afresh below
            self._armed = None
        if isinstance(message, GetState) and message.fresh and not self._fresh:
            await self._reload()
        if isinstance(message, PostMessage) and message.guard is not None:
            await self._check_guard(message.guard)
        if isinstance(message, Timeout) and await self._is_stale(message):
            await self._arm_timer()
            return None
        key = rules.idempotency_key(self.state, message)
        # A bot message's earlier answer is looked up inside the transaction that would
        # store it (one store round trip, not two); other resends are looked up first.
        in_commit = key if isinstance(message, PostMessage) else None
        if key is not None and in_commit is None and await self._remembered(key) is not None:
            return None
        if isinstance(message, Transfer) and message.to_agent_id is not None:
            hand_over = await self._hand_over(message)
            try:
                return await self._obey(hand_over, None, None)
            except BaseException:
                if self.state is None or self.state.agent_id != hand_over.target.id:
                    # the slot was reserved for a hand-over that did not happen
                    self._release_target(hand_over)
                raise
        return await self._obey(message, key, in_commit)

    async def _obey(self, message: Any, key: tuple[str, str] | None,
                    in_commit: tuple[str, str] | None, attempt: int = 1) -> Any:
        """Decide, commit, carry out, re-arm the timer; the answer to the sender."""
        org = self.state.org_id if self.state is not None else None
        if isinstance(message, CreateRequest):
            org = message.conversation.org_id
        settings = await self.ports.settings(org) if org else DEFAULT_SETTINGS
        try:
            decision = rules.decide(self.state, message, settings, utc_now())
        except LcxError:
            if in_commit is not None and (earlier := await self._remembered(in_commit)):
                return earlier  # a resend after the conversation ended
            if not self._fresh and await self._reload():
                # never refuse from memory alone: it lagged behind the store, so the
                # command is decided again on the stored state (one read per refusal)
                log.warning("conversation state was stale: reloaded before refusing",
                            extra={"conversation": self.id})
                return await self._obey(message, key, in_commit, attempt)
            raise
        try:
            earlier = await self._commit(decision, unless_remembered=in_commit)
            if earlier is not None:
                return earlier
        except (StaleState, IntegrityConflict) as exc:
            if isinstance(message, CreateRequest) and isinstance(exc, IntegrityConflict):
                raise Conflict("the subscriber already has an open request or "
                               "conversation") from None
            if key is not None:
                earlier = await self._remembered(key)  # a concurrent duplicate won the race
                if earlier is not None:
                    return earlier if isinstance(message, PostMessage) else None
            if attempt >= STALE_ATTEMPTS:
                raise
            # another activation of this conversation wrote since this one read its state
            # (an owner elsewhere while this instance was paused or cut off): nothing of
            # this decision was stored, so decide again from the stored state
            log.warning("conversation state was stale: reloaded", extra={
                "conversation": self.id, "reason": type(exc).__name__})
            await self._reload()
            return await self._obey(message, key, in_commit, attempt + 1)
        await self._carry_out(decision)
        await self._arm_timer(settings if org is not None and self.state is not None
                              and self.state.org_id == org else None)
        if decision.with_history and decision.state is not None:
            return Accepted(conversation=decision.state,
                            messages=tuple(await self._history()))
        return decision.reply

    # --- the shell's steps ---------------------------------------------------------------

    async def _check_guard(self, guard: MemberGuard) -> None:
        """Refuse a caller that is not in the conversation, as the store says (memory
        first; a refusal is checked again on the stored state)."""
        refusal = rules.guard_refusal(self.state, guard)
        if refusal is not None and not self._fresh:
            await self._reload()
            refusal = rules.guard_refusal(self.state, guard)
        if refusal is not None:
            raise refusal

    async def _remembered(self, key: tuple[str, str]) -> PostResult | None:
        scope, client_id = key
        earlier = await self.ports.store.read(lambda tx: remembered(tx, scope, client_id))
        return None if earlier is None else msgspec.json.decode(earlier, type=PostResult)

    async def _hand_over(self, transfer: Transfer) -> HandOver:
        """Resolve a transfer to an agent: the target must be connected and get a slot."""
        state = self.state
        target_id = transfer.to_agent_id or ""
        if state is None or state.status != "active":
            return HandOver(agent=transfer.agent, target=AgentRef(id=target_id))
        presence = self.ports.presence(state.org_id, target_id)
        if presence is None:
            raise Conflict("the target agent is not connected")
        settings = await self.ports.settings(state.org_id)
        if not await self.ports.reserve_slot(state.org_id, target_id, Reserve(
                conversation_id=state.id, limit=settings.max_concurrent_chats,
                assigned=False)):
            raise Conflict("the target agent has no free chat slot")
        return HandOver(agent=transfer.agent, target=AgentRef(id=target_id,
                                                              name=presence.name))

    def _release_target(self, hand_over: HandOver) -> None:
        if self.state is not None and hand_over.target.id:
            self.ports.tell_agent(self.state.org_id, hand_over.target.id,
                                  Release(conversation_id=self.state.id))

    async def _commit(self, decision: Decision, *,
                      unless_remembered: tuple[str, str] | None = None) -> PostResult | None:
        """Store the decision in one transaction; adopt its state once it is durable.

        With ``unless_remembered``, the transaction first looks up that idempotency key:
        when an earlier answer is there, nothing is written, the state stays as it was and
        that answer is returned.
        """
        new = decision.state
        if new is None or not decision.stores:
            if unless_remembered is not None and \
                    (earlier := await self._remembered(unless_remembered)):
                return earlier
            self.state = new
            return None
        base = self.state  # what the decision was made from: the row must still say so
        outbox: list[OutboxEvent] = []
        tenant = self.ports.tenant(new.tenant_id)
        event_no = new.last_event_no
        for event_type, data in decision.events:
            event_no += 1
            outbox += build_events(new, tenant, event_no, event_type, data)
        for side, command in decision.commands:
            event_no += 1
            outbox.append(edge_command_row(new, side, event_no, command))
        new = replace(new, last_event_no=event_no)
        remembered_answer = None
        if decision.remember is not None:
            scope, client_id, answer = decision.remember
            remembered_answer = (scope, client_id, _encode(answer))

        claimed = remembered_answer is not None and \
            remembered_answer[:2] == unless_remembered
        at = iso(utc_now())

        def write(tx: Tx) -> bytes | None:
            if claimed and remembered_answer is not None:
                # the key is stored first, in one statement: a resend finds it there
                earlier = claim(tx, *remembered_answer, at=at)
                if earlier is not None:
                    return earlier
            elif unless_remembered is not None:
                earlier = remembered(tx, *unless_remembered)
                if earlier is not None:
                    return earlier
            if decision.insert:
                insert_conversation(tx, new)
            else:
                save_conversation(tx, new, expected=base)
            for message, client_id in decision.messages:
                append_message(tx, message, org_id=new.org_id, client_id=client_id)
            for event in outbox:
                enqueue(tx, event)
            if remembered_answer is not None and not claimed:
                remember(tx, *remembered_answer, at=at)
            return None

        stored = await self.ports.store.transaction(write)
        if stored is not None:
            return msgspec.json.decode(stored, type=PostResult)
        self.state = decision.state = new
        if isinstance(decision.reply, Conversation):
            decision.reply = new
        if outbox:
            self.ports.wake_delivery(new.id)
        return None

    async def _carry_out(self, decision: Decision) -> None:
        """Everything a committed decision tells others: frames, notes, counters."""
        state = decision.state
        if state is None:
            return
        encoded: dict[int, bytes] = {}  # one encoding per frame, whoever receives it
        for item in decision.frames:
            if isinstance(item, HistoryFrame):
                history = await self._history()
                frame = {**item.frame, "data": {**item.frame["data"],
                                                "messages": msgspec.to_builtins(history)}}
                self.ports.push_to_agent(state.org_id, item.agent_id, _encode(frame))
            elif isinstance(item, AgentFrame):
                body = encoded.get(id(item.frame))
                if body is None:
                    body = encoded[id(item.frame)] = _encode(item.frame)
                self.ports.push_to_agent(state.org_id, item.agent_id, body)
        for note in decision.notes:
            self._tell(state, note)
        for counter in decision.counted:
            self.ports.count(counter)

    def _tell(self, state: Conversation, note: Note) -> None:
        match note:
            case QueueRequest():
                self.ports.tell_queue(state.org_id, note.user_group_id,
                                      Enqueue(conversation=note.conversation))
            case UnqueueRequest():
                self.ports.tell_queue(state.org_id, note.user_group_id, Dequeue(
                    conversation_id=note.conversation_id, why=note.why))
            case ReleaseSlot():
                self.ports.tell_agent(state.org_id, note.agent_id,
                                      Release(conversation_id=state.id))
            case OpenProviderLink():
                self.ports.open_link(state.id)

    async def _history(self) -> list[Any]:
        return await self.ports.store.read(lambda tx: messages_after(tx, self.id, 0))

    async def _arm_timer(self, settings: LivechatSettings | None = None) -> None:
        """Run the one timer the rules ask for (or none, once the conversation closed).

        Nothing is armed again when what the deadline depends on did not change since the
        last arm (a read, a typing signal, an idempotent resend): that timer still runs.
        Nor when activity alone pushed an active conversation's inactivity deadline back
        (every message does): the timer armed earlier fires first, its ``Timeout`` is found
        stale and the deadline of that moment is armed (one wake per inactivity period of a
        busy conversation instead of one arm per message).
        ``settings``: the organization's, when the caller has just read them.
        """
        state = self.state
        if state is None or not state.is_open:
            self.ctx.idle_seconds = CLOSED_IDLE_SECONDS
            if self._armed != _DISARMED:
                self.ports.cancel_timeout(self.id)
                self._armed = _DISARMED
            return
        self.ctx.idle_seconds = (PENDING_IDLE_SECONDS if state.status == "pending"
                                 else OPEN_IDLE_SECONDS)
        if settings is None:
            settings = await self.ports.settings(state.org_id)
        basis = (state.status, state.queued_at, state.last_activity_at,
                 settings.request_timeout_seconds, settings.inactivity_timeout_seconds)
        if basis == self._armed or _pushed_back(self._armed, basis):
            return
        due = rules.next_deadline(state, settings)
        assert due is not None
        kind, deadline = due
        delay = max(0.0, (deadline - utc_now()).total_seconds())
        self.ports.arm_timeout(self.id, delay, Timeout(kind=kind, deadline=iso(deadline)))
        self._armed = basis

    async def _is_stale(self, timeout: Timeout) -> bool:
        """Whether ``timeout`` is not the deadline the conversation waits for now (one
        armed before a change, e.g. by the instance that owned the conversation before)."""
        state = self.state
        if state is None or not state.is_open:
            return True
        current = rules.next_timeout(state, await self.ports.settings(state.org_id))
        return current is None or (current.kind, current.deadline) != \
            (timeout.kind, timeout.deadline)

