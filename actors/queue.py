"""The queue actor: one per organization and user group; routes its pending requests.

The routing rules (order, offers, who is assigned) are :mod:`lcx.livechat.queue`; this
actor keeps a :class:`~lcx.livechat.queue.QueueBook`, serializes accepts, and talks to the
agents and conversations. Either way an agent's chat slot is reserved in its own session
actor before the conversation is accepted, so a limit holds across queues; the queue
drains whenever capacity may have freed (an agent comes online, a chat ends or moves). The
pending list is rebuilt from the store at activation and resynced periodically, so a lost
notification is repaired. The book holds places only; a whole conversation is loaded from
the store (the source of truth) when an agent is to be shown it, a page at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.messages import (
    Accept,
    Accepted,
    AcceptRequest,
    AgentPresence,
    Dequeue,
    Enqueue,
    Position,
    QueueStats,
    Release,
    Reserve,
    Resync,
)
from actors.ports import QueuePorts
from lcx.errors import Conflict, LcxError
from lcx.livechat import frames
from lcx.livechat.conversation import held_by
from lcx.livechat.queue import NoFreeSlot, QueueBook, Waiting
from lcx.livechat.settings import LivechatSettings
from lcx.model import AgentRef, Conversation, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store.conversations import load_conversation, load_conversations, pending_entries

log = logging.getLogger("lcx.queue")

RESYNC_SECONDS = 10.0
OFFER_PAGE = 200
"""How many waiting requests an agent coming online is offered per step: one store read
loads their conversations, and the queue's mailbox is served between steps."""

__all__ = ["NoFreeSlot", "QueueActor", "Resync"]


@dataclass(frozen=True)
class _OfferMore:
    """The queue's note to itself: offer ``agent_id`` the requests waiting after
    ``after`` (the next page of what an agent coming online is offered)."""

    agent_id: str
    after: tuple[str, str]


class QueueActor(Actor):
    """Routes one queue's requests; see the module docstring."""

    def __init__(self, ports: QueuePorts, org_id: str, user_group_id: str) -> None:
        self.ports = ports
        self.org_id = org_id
        self.group = user_group_id
        self.book = QueueBook()

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        await self._resync()
        for presence in self.ports.group_presence(self.org_id, self.group):
            self.book.heard(AgentRef(id=presence.agent_id, name=presence.name),
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
                return self.book.position(message.conversation_id,
                                          len(self.book.online_ids()))
            case QueueStats():
                return len(self.book.pending), len(self.book.online())
            case Resync():
                await self._resync()
                return await self._drain()
            case _OfferMore():
                return await self._offer_page(message.agent_id, message.after)
        raise TypeError(f"queue actor got {type(message).__name__}")

    async def _resync(self) -> None:
        """Make the book the store's view (a lost notification is repaired here): one
        indexed scan of the places and request ids of what waits, no row decoded."""
        entries = await self.ports.store.read(
            lambda tx: pending_entries(tx, self.org_id, self.group))
        if not self.book.holds(entries):
            self.book.reload(QueueBook.entries(entries))
        self.ctx.send_after(RESYNC_SECONDS, Resync(), key="resync")

    def _push(self, agent_id: str, frame: bytes) -> None:
        self.ports.push_to_agent(self.org_id, agent_id, frame)

    def _notify(self, kind: str, data: dict[str, Any], *, skip: str | None = None) -> None:
        frame = msgspec.json.encode(frames.notification(kind, data))
        self.ports.push_to_agents(self.org_id,
                                  [a for a in self.book.agents if a != skip], frame)

    def _offer(self, conversation: Conversation, agent_ids: Sequence[str]) -> None:
        frame = msgspec.json.encode(frames.notification(
            "request_created", frames.request_data(conversation)))
        self.ports.push_to_agents(self.org_id, agent_ids, frame)

    async def _enqueue(self, conversation: Conversation) -> None:
        new = self.book.enqueue(Waiting.of(conversation))
        settings = await self.ports.settings(self.org_id)
        if settings.routing == "broadcast":
            if new:
                self._offer(conversation, self.book.online_ids())
            return
        await self._drain(settings)

    def _dequeue(self, dequeue: Dequeue) -> None:
        gone = self.book.dequeue(dequeue.conversation_id)
        if gone is None or dequeue.why not in ("cancelled", "missed"):
            return
        self._notify(f"request_{dequeue.why}", {"requestId": gone.request_id,
                                                "conversationId": None})

    async def _accept(self, request: AcceptRequest) -> Accepted:
        conversation = self.book.pending.get(request.conversation_id)
        if conversation is None:
            stored = await self.ports.store.read(
                lambda tx: load_conversation(tx, request.conversation_id))
            if stored is not None and stored.org_id == self.org_id and \
                    held_by(stored, request.agent.id):
                # the winner retries (its ack was lost): answered again; its slot is
                # neither taken twice nor, on a refusal, given back
                return await self.ports.accept(stored.id, Accept(agent=request.agent))
            conversation = self._missed_enqueue(stored)
        if conversation is None:
            raise Conflict("the request is no longer pending",
                           details={"requestId": request.conversation_id})
        accepted = await self._take(conversation, request.agent, assigned=False)
        self._notify("request_accepted", {"requestId": conversation.request_id,
                                          "conversationId": conversation.id,
                                          "agentId": request.agent.id}, skip=request.agent.id)
        return accepted

    def _missed_enqueue(self, stored: Conversation | None) -> Waiting | None:
        """A request this queue was never told of (its notification was lost, e.g. sent to
        an instance that had just died): its stored row says whether it waits here."""
        if stored is None or stored.status != "pending" or stored.org_id != self.org_id \
                or stored.user_group_id != self.group:
            return None
        waiting = Waiting.of(stored)
        self.book.enqueue(waiting)
        return waiting

    async def _take(self, conversation: Waiting, agent: AgentRef, *,
                    assigned: bool) -> Accepted:
        """Reserve the agent's slot, then accept; undo the reservation if that fails."""
        settings = await self.ports.settings(self.org_id)
        reserved = await self.ports.reserve_slot(self.org_id, agent.id, Reserve(
            conversation_id=conversation.id, limit=settings.max_concurrent_chats,
            assigned=assigned))
        if not reserved:
            raise NoFreeSlot("the agent has no free chat slot",
                             details={"maxConcurrentChats": settings.max_concurrent_chats})
        try:
            accepted = await self.ports.accept(conversation.id,
                                               Accept(agent=agent, assigned=assigned))
        except BaseException:
            self.ports.tell_agent(self.org_id, agent.id,
                                  Release(conversation_id=conversation.id))
            raise
        self.book.taken(conversation, agent.id, utc_now())
        return accepted

    async def _presence(self, presence: AgentPresence) -> None:
        came_online = self.book.heard(presence.agent, presence.status, presence.active)
        if presence.status == "offline":
            return
        settings = await self.ports.settings(self.org_id)
        if settings.routing == "auto":
            # only an agent that can take a request changes what can be routed: a full
            # one's report (every agent reports every period) ranks nobody
            if presence.status == "online" and presence.active < settings.max_concurrent_chats:
                await self._drain(settings)
        elif came_online:
            await self._offer_page(presence.agent.id, None)

    async def _offer_page(self, agent_id: str, after: tuple[str, str] | None) -> None:
        """Offer ``agent_id`` one page of what waits after the place ``after``, loaded
        from the store, and leave the next page to a later turn of the mailbox."""
        if agent_id not in self.book.agents or self.book.agents[agent_id].status != "online":
            return  # went away or offline meanwhile: it is offered again when back
        page = self.book.page(after, OFFER_PAGE)
        if not page:
            return
        ids = [waiting.id for waiting in page]
        rows = {row.id: row for row in await self.ports.store.read(
            lambda tx: load_conversations(tx, ids))}
        for waiting in page:
            row = rows.get(waiting.id)
            if row is not None and row.status == "pending" and waiting.id in self.book.pending:
                self._offer(row, [agent_id])
        if len(page) == OFFER_PAGE:
            last = page[-1]
            self.ctx.send_after(0, _OfferMore(agent_id, (last.queued_at, last.id)),
                                key=f"offer:{agent_id}")

    async def _drain(self, settings: LivechatSettings | None = None) -> None:
        settings = settings or await self.ports.settings(self.org_id)
        if settings.routing != "auto":
            return
        if not self.book.pending:  # nothing waits: no look at the agents (O(agents))
            return
        limit = settings.max_concurrent_chats
        after: tuple[str, str] | None = None
        while self.book.least_loaded(limit) is not None:  # nobody free: no walk
            page = self.book.page(after, OFFER_PAGE)
            if not page:
                return
            for waiting in page:
                if not await self._assign(waiting, limit):
                    return
            after = (page[-1].queued_at, page[-1].id)

    async def _assign(self, conversation: Waiting, limit: int) -> bool:
        """Give one request to the least-loaded agent; False when nobody can take it."""
        tried: set[str] = set()  # each agent at most once, whatever reports come meanwhile
        while (agent := self.book.least_loaded(limit, tried)) is not None:
            tried.add(agent.ref.id)
            try:
                accepted = await self._take(conversation, agent.ref, assigned=True)
            except NoFreeSlot:
                self.book.full(agent.ref.id, limit)
                continue
            except Conflict:
                self.book.dequeue(conversation.id)  # cancelled or taken meanwhile
                return True
            except LcxError:
                log.warning("assignment failed", extra={"conversationId": conversation.id})
                return True
            self._push(agent.ref.id, msgspec.json.encode(frames.notification(
                "request_assigned", {**frames.request_data(accepted.conversation),
                                     "conversationId": accepted.conversation.id,
                                     "messages": frames.plain(list(accepted.messages))})))
            return True
        return False
