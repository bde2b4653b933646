"""The edge inbox processor: applies stored webhook events once, in order.

Events of one external conversation (e.g. one LiveChat chat) are applied in arrival order
by the instance that owns that external conversation's key, so two instances never race
on one chat. ``started`` creates the lcx request (queued and routed like any other);
``event`` hands a normalized event to the conversation actor, which deduplicates
messages by their external id. An event that cannot be applied yet (its chat has no
conversation yet) or fails, for any reason, is tried again after a backoff (later events of
its chat wait, to keep their order); after ``MAX_ATTEMPTS`` it is marked failed (a dead
letter, listed by ``lcx dlq list`` and replayable) and its chat moves on. A bug on one
event never stops the processor.
Typing and read receipts of a chat that has no conversation yet are dropped at once (they
are passing signals, and waiting for them would hold back the chat's first message).
"""

from __future__ import annotations

import logging

import msgspec
import trio

from actors.livechat import Livechat
from actors.messages import CreateRequest, EdgeInbound
from adapters.edges import EdgeTyping, WebhookItem
from lcx.errors import Conflict, LcxError
from lcx.livechat.conversation import new_request
from lcx.livechat.edges import SIDE_CHANNEL, EdgeRead
from lcx.model import Conversation, Subscriber, iso, utc_now
from lcx.runtime import Backoff, ItemGuard, Outcome
from lcx.store import Tx
from lcx.store.conversations import load_conversation
from lcx.store.edges import (
    InboxRow,
    conversation_for,
    finish_inbox,
    pending_inbox,
    retry_inbox,
    save_session,
)

log = logging.getLogger("lcx.edges")

MAX_ATTEMPTS = 20
POLL_SECONDS = 1.0
KIND = "edge_inbox"


class NotYet(LcxError):
    """The event belongs to a chat whose conversation does not exist yet."""


class EdgeInboxService:
    """A supervised service running the processor described in the module docstring."""

    def __init__(self, livechat: Livechat, *, poll_seconds: float = POLL_SECONDS,
                 max_attempts: int = MAX_ATTEMPTS, first_retry_seconds: float = 0.5) -> None:
        self.livechat = livechat
        self.poll_seconds = poll_seconds
        self.guard = ItemGuard("edge inbox", max_attempts=max_attempts, backoff=Backoff(
            initial_seconds=first_retry_seconds, maximum_seconds=60.0, jitter=0.2))
        """Any failure of one stored event is that event's (see :mod:`lcx.runtime`)."""
        self._not_before: dict[str, float] = {}
        """Events waiting out their backoff, by event id (trio clock)."""
        self._kick = trio.Event()
        self._stop = trio.Event()
        self.applied = 0

    def wake(self) -> None:
        """Process now (a webhook was stored)."""
        self._kick.set()

    def request_stop(self) -> None:
        """Stop after the event in progress."""
        self._stop.set()
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Process pending events whenever woken, and every ``poll_seconds``."""
        self._stop = trio.Event()
        task_status.started()
        while not self._stop.is_set():
            try:
                await self.process_pending()
            except LcxError:  # the store, not an item: the whole pass is tried again
                log.warning("edge inbox pass failed; retrying", exc_info=True)
            with trio.move_on_after(self.poll_seconds):
                await self._kick.wait()
            self._kick = trio.Event()

    def _mine(self, row: InboxRow) -> bool:
        return self.livechat.placement.owner(KIND, f"{row.alias}:{row.external_id}") == \
            self.livechat.bus.instance_id

    async def process_pending(self) -> None:
        """One pass over the pending events this instance owns."""
        rows = await self.livechat.store.read(pending_inbox)
        blocked: set[str] = set()
        now = trio.current_time()
        for row in rows:
            if self._stop.is_set():
                return
            if row.external_id in blocked or not self._mine(row):
                continue
            if self._not_before.get(row.event_id, 0.0) > now or \
                    not await self._apply_one(row):
                blocked.add(row.external_id)  # keep this chat's order: later events wait

    async def _apply_one(self, row: InboxRow) -> bool:
        """Apply one stored event under the guard; record a failure (or dead letter)."""
        attempt = await self.guard.attempt(f"{row.alias}/{row.event_id}", row.attempts,
                                           lambda: self._decode_and_apply(row))
        now = iso(utc_now())
        if attempt.outcome is Outcome.DONE:
            self._not_before.pop(row.event_id, None)
            await self.livechat.store.transaction(lambda tx: finish_inbox(
                tx, row.alias, row.event_id, status="processed", at=now))
            self.applied += 1
            return True
        error = attempt.error or "failed"

        def record(tx: Tx) -> None:
            if attempt.outcome is Outcome.DEAD:
                finish_inbox(tx, row.alias, row.event_id, status="failed", at=now,
                             error=error)
            else:
                retry_inbox(tx, row.alias, row.event_id, error)

        await self.livechat.store.transaction(record)
        if attempt.outcome is Outcome.DEAD:
            self._not_before.pop(row.event_id, None)
        else:
            self._not_before[row.event_id] = trio.current_time() + attempt.retry_after
        return False

    async def _decode_and_apply(self, row: InboxRow) -> None:
        item = msgspec.json.decode(row.item, type=WebhookItem)
        await self._apply(row.alias, item)

    async def _apply(self, alias: str, item: WebhookItem) -> None:
        tenant = self.livechat.tenant(item.tenant_id)
        if tenant is None:
            raise LcxError(f"unknown tenant {item.tenant_id}")
        if item.kind == "started":
            return await self._start(alias, item)
        # the alias names the edge (a channel, or a provider that pushes its agents' events)
        conversation_id = await self.livechat.store.read(
            lambda tx: conversation_for(tx, alias, item.external_id))
        if conversation_id is None:
            if isinstance(item.event, EdgeTyping | EdgeRead):
                return  # a passing signal: nothing to wait for, and later events must not
            raise NotYet(f"no conversation yet for {alias} chat {item.external_id}")
        if item.event is not None:
            await self.livechat.conversations.ask(conversation_id, EdgeInbound(
                side=item.side, event=item.event), timeout=30.0)

    async def _start(self, alias: str, item: WebhookItem) -> None:
        tenant = self.livechat.tenant(item.tenant_id)
        assert tenant is not None
        edge = tenant.channel
        existing = await self.livechat.store.read(
            lambda tx: _open_conversation(tx, edge, item.external_id))
        if existing is not None:
            return  # a repeat of the start of a chat we already follow
        conversation = _new_conversation(tenant.id, tenant.organization_id,
                                         tenant.default_user_group, tenant.provider, edge,
                                         item)
        now = iso(utc_now())
        await self.livechat.store.transaction(lambda tx: _bind(
            tx, conversation.id, edge, item.external_id, now))
        try:
            await self.livechat.conversations.ask(conversation.id,
                                             CreateRequest(conversation=conversation))
        except Conflict:
            log.info("chat start skipped: the customer already has an open conversation",
                     extra={"chat": item.external_id})


def _open_conversation(tx: Tx, edge: str, external_id: str) -> str | None:
    conversation_id = conversation_for(tx, edge, external_id)
    if conversation_id is None:
        return None
    conversation = load_conversation(tx, conversation_id)
    return conversation_id if conversation is not None and conversation.is_open else None


def _bind(tx: Tx, conversation_id: str, edge: str, external_id: str, at: str) -> None:
    """Point the external chat at a new conversation (a chat can start again later)."""
    tx.execute("DELETE FROM edge_sessions WHERE edge = ? AND external_id = ?",
               (edge, external_id))
    save_session(tx, conversation_id, SIDE_CHANNEL, edge, external_id,
                 {"chatId": external_id}, at)


def _new_conversation(tenant_id: str, org_id: str, group: str, provider: str, edge: str,
                      item: WebhookItem) -> Conversation:
    customer = item.customer
    subscriber = Subscriber(name=customer.get("name"), email=customer.get("email"),
                            custom={k: v for k, v in customer.items()
                                    if k not in ("name", "email")})
    return new_request(org_id=org_id, tenant_id=tenant_id,
                       sub_handle=f"{edge}:{item.external_id}", user_group_id=group,
                       provider=provider, channel=edge, now=utc_now(), subscriber=subscriber)
