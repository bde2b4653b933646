"""The provider link actor: one per conversation handed to an external provider.

It opens the external session (e.g. a Genesys guest chat) once, stores it, and follows
the provider's event stream, handing every normalized event to the conversation actor,
which applies it durably (messages deduplicated by their external id) before the stream
moves on. Outbox commands for the provider (messages, typing, end) come back here
(``DeliverEdge``) so they use the session this link holds.

Links are placed like every keyed actor: one live link per conversation in the cluster.
When its instance dies, the conversation's new owner wakes it (``OpenLink``); the link
finds the stored session and follows the stream again from where the provider lets it
resume (a repeated event is dropped by its external id).

The stream stops as soon as the conversation is over: once the end has been delivered to
the provider (``EndSession``), or once an event the stream emitted closed the
conversation (e.g. the provider's last agent left): an ended chat is never polled again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from actors.messages import DeliverEdge, EdgeInbound, End, OpenLink
from actors.ports import LinkPorts
from adapters.edges import (
    AgentLeft,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EndSession,
    Provider,
    Session,
)
from lcx.errors import LcxError
from lcx.livechat.edges import SIDE_PROVIDER
from lcx.model import Conversation, iso, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store.conversations import load_conversation
from lcx.store.edges import load_session, save_session

log = logging.getLogger("lcx.provider")


class ProviderLinkActor(Actor):
    """Holds one conversation's provider session and stream; see the module docstring."""

    def __init__(self, ports: LinkPorts, conversation_id: str) -> None:
        self.ports = ports
        self.conversation_id = conversation_id
        self.session: Session | None = None
        self.provider: Provider | None = None
        self._streaming = False
        self._stream_scope: trio.CancelScope | None = None

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.session = await self.ports.store.read(
            lambda tx: load_session(tx, self.conversation_id, SIDE_PROVIDER))

    async def receive(self, message: Any) -> Any:
        match message:
            case OpenLink():
                return await self._open()
            case DeliverEdge():
                return await self._deliver(message)
        raise TypeError(f"provider link got {type(message).__name__}")

    async def _conversation(self) -> Conversation | None:
        return await self.ports.store.read(
            lambda tx: load_conversation(tx, self.conversation_id))

    async def _open(self) -> None:
        conversation = await self._conversation()
        if conversation is None or not conversation.is_open:
            return
        provider = self.ports.providers.get(conversation.provider)
        tenant = self.ports.tenant(conversation.tenant_id)
        if provider is None or tenant is None:
            await self._give_up(f"provider {conversation.provider!r} is not configured")
            return
        self.provider = provider
        if self.session is None:
            try:
                self.session = await provider.open(conversation, tenant)
            except EdgeCallFailed as exc:
                if exc.retry:
                    raise  # the sweep (or the next Recover) opens again later
                await self._give_up(str(exc))
                return
            await self._store_session(conversation, self.session)
        if not self._streaming:
            self._streaming = True
            self.ctx.idle_seconds = None  # a link with a live stream never passivates
            self.ctx.nursery.start_soon(self._follow, provider, self.session)

    async def _store_session(self, conversation: Conversation, session: Session) -> None:
        external = str(session.get("conversationId") or conversation.id)
        now = iso(utc_now())
        await self.ports.store.transaction(lambda tx: save_session(
            tx, conversation.id, SIDE_PROVIDER, conversation.provider, external, session, now))

    async def _follow(self, provider: Provider, session: Session) -> None:
        try:
            with trio.CancelScope() as self._stream_scope:
                await provider.stream(session, self._emit, self._save)
        except EdgeCallFailed as exc:
            log.warning("provider stream failed for good", extra={
                "conversationId": self.conversation_id, "error": str(exc)})
            await self._give_up(str(exc))
            return
        finally:
            self._stream_scope = None
            self._streaming = False
            self.ctx.idle_seconds = 60.0

    def _stop_stream(self) -> None:
        """Stop following the provider (the conversation is over)."""
        if self._stream_scope is not None:
            self._stream_scope.cancel()

    async def _save(self, session: Session) -> None:
        conversation = await self._conversation()
        if conversation is None:
            return
        self.session = session
        await self._store_session(conversation, session)

    async def _emit(self, event: AnyEdgeEvent) -> None:
        await self.ports.tell_conversation(self.conversation_id,
                                         EdgeInbound(side="provider", event=event),
                                         timeout=30.0)
        if isinstance(event, AgentLeft | EdgeEnded):  # the only events that may close it
            conversation = await self._conversation()
            if conversation is None or not conversation.is_open:
                self._stop_stream()

    async def _deliver(self, deliver: DeliverEdge) -> None:
        if self.session is None or self.provider is None:
            await self._open()
        if self.session is None or self.provider is None:
            raise EdgeCallFailed("no provider session (yet)", retry=True)
        await self.provider.send(self.session, deliver.command)
        if isinstance(deliver.command, EndSession):
            self._stop_stream()

    async def _give_up(self, reason: str) -> None:
        # already ended, or its owner is moving (the sweep tries again): nothing to do
        with contextlib.suppress(LcxError):
            await self.ports.tell_conversation(self.conversation_id, End(
                by="provider", reason=f"provider error: {reason}"[:500]))
