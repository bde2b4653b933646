"""The queue actor: one per organization and user group; routes its pending requests.

``broadcast``: every online agent of the group is offered a request; the first accept wins
(accepts are serialized here), the others are told it was taken. ``auto``: the request is
given to the online, non-away agent with the fewest active chats under
``maxConcurrentChats``, oldest request first. Either way an agent's chat slot is reserved
in its own session actor before the conversation is accepted, so a limit holds across
queues; the queue drains whenever capacity may have freed (an agent comes online, a chat
ends or moves). The pending list is rebuilt from the store at activation and resynced
periodically, so a lost notification is repaired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from actors import frames
from actors.hub import Livechat, agent_key
from actors.messages import (
    Accept,
    Accepted,
    AcceptRequest,
    AgentPresence,
    Dequeue,
    Enqueue,
    Msg,
    Position,
    QueueStats,
    Release,
    Reserve,
)
from lcx.errors import Conflict, LcxError
from lcx.model import AgentRef, Conversation, parse_iso, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store.conversations import pending_in_queue

log = logging.getLogger("lcx.queue")

RESYNC_SECONDS = 10.0
DEFAULT_WAIT_SECONDS = 30.0


class NoFreeSlot(Conflict):
    """The agent is at its ``maxConcurrentChats`` (or not available)."""


class Resync(Msg, frozen=True, kw_only=True):
    """Reload the pending list from the store."""


@dataclass
class _Agent:
    ref: AgentRef
    status: str
    active: int


class QueueActor(Actor):
    """Routes one queue's requests; see the module docstring."""

    def __init__(self, hub: Livechat, org_id: str, user_group_id: str) -> None:
        self.hub = hub
        self.org_id = org_id
        self.group = user_group_id
        self.pending: dict[str, Conversation] = {}
        self.agents: dict[str, _Agent] = {}
        self.average_wait = DEFAULT_WAIT_SECONDS

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        await self._resync()
        self._seed_agents()

    def _seed_agents(self) -> None:
        for (org, agent_id), presence in self.hub.presence.items():
            if org == self.org_id and self.group in presence.groups:
                self.agents[agent_id] = _Agent(AgentRef(id=agent_id, name=presence.name),
                                               presence.status, 0)

    async def receive(self, message: Any) -> Any:
        match message:
            case Enqueue():
                return await self._enqueue(message.conversation)
            case Dequeue():
                return self._dequeue(message)
            case AcceptRequest():
                return await self._accept(message)
            case AgentPresence():
                return await self._presence(message)
            case Position():
                return self._position(message.conversation_id)
            case QueueStats():
                return len(self.pending), self._online_count()
            case Resync():
                await self._resync()
                return await self._drain()
        raise TypeError(f"queue actor got {type(message).__name__}")

    async def _resync(self) -> None:
        rows = await self.hub.store.read(
            lambda tx: pending_in_queue(tx, self.org_id, self.group))
        self.pending = {row.id: row for row in rows}
        self.ctx.send_after(RESYNC_SECONDS, Resync(), key="resync")

    def _online(self) -> list[_Agent]:
        return [a for a in self.agents.values() if a.status == "online"]

    def _online_count(self) -> int:
        return len(self._online())

    def _notify(self, kind: str, data: dict[str, Any], *, skip: str | None = None) -> None:
        frame = frames.notification(kind, data)
        for agent in self.agents.values():
            if agent.ref.id != skip:
                self.hub.push_to_agent(self.org_id, agent.ref.id, frame)

    async def _enqueue(self, conversation: Conversation) -> None:
        known = conversation.id in self.pending
        self.pending[conversation.id] = conversation
        self.pending = dict(sorted(self.pending.items(),
                                   key=lambda kv: (kv[1].queued_at, kv[0])))
        settings = await self.hub.org_settings.get(self.org_id)
        if settings.routing == "broadcast":
            if not known:
                for agent in self._online():
                    self.hub.push_to_agent(self.org_id, agent.ref.id, frames.notification(
                        "request_created", frames.request_data(conversation)))
            return
        await self._drain()

    def _dequeue(self, dequeue: Dequeue) -> None:
        gone = self.pending.pop(dequeue.conversation_id, None)
        if gone is None or dequeue.why not in ("cancelled", "missed"):
            return
        self._notify(f"request_{dequeue.why}", {"requestId": gone.request_id,
                                                "conversationId": None})

    async def _accept(self, request: AcceptRequest) -> Accepted:
        conversation = self.pending.get(request.conversation_id)
        if conversation is None:
            raise Conflict("the request is no longer pending",
                           details={"requestId": request.conversation_id})
        accepted = await self._take(conversation, request.agent, assigned=False)
        self._notify("request_accepted", {"requestId": conversation.request_id,
                                          "conversationId": conversation.id,
                                          "agentId": request.agent.id}, skip=request.agent.id)
        return accepted

    async def _take(self, conversation: Conversation, agent: AgentRef, *,
                    assigned: bool) -> Accepted:
        """Reserve the agent's slot, then accept; undo the reservation if that fails."""
        settings = await self.hub.org_settings.get(self.org_id)
        key = agent_key(self.org_id, agent.id)
        reserved = await self.hub.agents.ask(key, Reserve(
            conversation_id=conversation.id, limit=settings.max_concurrent_chats,
            assigned=assigned))
        if not reserved:
            raise NoFreeSlot("the agent has no free chat slot",
                           details={"maxConcurrentChats": settings.max_concurrent_chats})
        try:
            accepted: Accepted = await self.hub.conversations.ask(
                conversation.id, Accept(agent=agent, assigned=assigned))
        except BaseException:
            self.hub.tell_agent(self.org_id, agent.id, Release(conversation_id=conversation.id))
            raise
        self.pending.pop(conversation.id, None)
        self._note_wait(conversation)
        slot = self.agents.get(agent.id)
        if slot is not None:
            slot.active += 1
        return accepted

    def _note_wait(self, conversation: Conversation) -> None:
        waited = (utc_now() - parse_iso(conversation.queued_at)).total_seconds()
        self.average_wait = 0.8 * self.average_wait + 0.2 * max(0.0, waited)

    async def _presence(self, presence: AgentPresence) -> None:
        if presence.status == "offline":
            self.agents.pop(presence.agent.id, None)
            return
        was = self.agents.get(presence.agent.id)
        self.agents[presence.agent.id] = _Agent(presence.agent, presence.status, presence.active)
        settings = await self.hub.org_settings.get(self.org_id)
        if settings.routing == "auto":
            await self._drain()
        elif presence.status == "online" and (was is None or was.status != "online"):
            for conversation in self.pending.values():
                self.hub.push_to_agent(self.org_id, presence.agent.id, frames.notification(
                    "request_created", frames.request_data(conversation)))

    async def _drain(self) -> None:
        settings = await self.hub.org_settings.get(self.org_id)
        if settings.routing != "auto":
            return
        for conversation in list(self.pending.values()):
            if not await self._assign(conversation, settings.max_concurrent_chats):
                return

    async def _assign(self, conversation: Conversation, limit: int) -> bool:
        """Give one request to the least-loaded agent; False when nobody can take it."""
        candidates = sorted((a for a in self._online() if a.active < limit),
                            key=lambda a: (a.active, a.ref.id))
        for agent in candidates:
            try:
                accepted = await self._take(conversation, agent.ref, assigned=True)
            except NoFreeSlot:
                agent.active = limit
                continue
            except Conflict:
                self.pending.pop(conversation.id, None)  # cancelled or taken meanwhile
                return True
            except LcxError:
                log.warning("assignment failed", extra={"conversationId": conversation.id})
                return True
            self.hub.push_to_agent(self.org_id, agent.ref.id, frames.notification(
                "request_assigned", {**frames.request_data(accepted.conversation),
                                     "conversationId": accepted.conversation.id,
                                     "messages": frames.plain(list(accepted.messages))}))
            return True
        return False

    def _position(self, conversation_id: str) -> tuple[int | None, int | None]:
        order = list(self.pending)
        if conversation_id not in order:
            return None, None
        position = order.index(conversation_id) + 1
        agents = max(1, self._online_count())
        return position, round(self.average_wait * position / agents)
