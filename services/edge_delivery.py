"""Carrying out edge commands from the outbox: to providers through their link actors,
to channels through their adapters; failures classified for the outbox's retry policy.
A channel that refuses an agent's message for good with a ``notice`` (e.g. WhatsApp
outside its 24 h window) has the agents told, instead of a silent dead letter."""

from __future__ import annotations

import logging

from actors.livechat import Livechat
from actors.messages import DeliverEdge, EdgeInbound
from adapters.bot_events import Delivered, Outcome, Reject, Retry
from adapters.edges import EDGE_COMMANDS, EdgeCallFailed
from adapters.policy import CircuitOpen
from lcx.errors import LcxError
from lcx.livechat.edges import SIDE_CHANNEL, EdgeUndelivered, SendMessage
from lcx.store.conversations import load_conversation
from lcx.store.edges import load_session
from lcx.store.outbox import OutboxRow
from services.bot_delivery import Sender

log = logging.getLogger("lcx.edges")

LINK_TIMEOUT = 30.0


def outcome_of(failure: EdgeCallFailed) -> Outcome:
    """The outbox outcome of a failed edge call (a breaker's refusal is no attempt: an
    outage longer than the attempts' backoff must not dead-letter what waits for it)."""
    if failure.retry:
        return Retry(str(failure), failure.retry_after,
                     attempted=not isinstance(failure, CircuitOpen))
    return Reject(str(failure), auth=failure.auth)


def provider_sender(livechat: Livechat) -> Sender:
    """Send provider commands through the conversation's link (wherever it lives)."""

    async def send(row: OutboxRow) -> Outcome:
        command = EDGE_COMMANDS.decode(row.body)
        try:
            await livechat.links.ask(row.conversation_id, DeliverEdge(command=command),
                                timeout=LINK_TIMEOUT)
        except EdgeCallFailed as failure:
            return outcome_of(failure)
        except LcxError as exc:  # the link is moving or busy: try again later
            return Retry(f"provider link unavailable: {exc}", None)
        return Delivered(200)

    return send


def channel_sender(livechat: Livechat) -> Sender:
    """Send channel commands with the channel's adapter and the stored chat session."""

    async def send(row: OutboxRow) -> Outcome:
        command = EDGE_COMMANDS.decode(row.body)
        conversation = await livechat.store.read(
            lambda tx: load_conversation(tx, row.conversation_id))
        session = await livechat.store.read(
            lambda tx: load_session(tx, row.conversation_id, SIDE_CHANNEL))
        if conversation is None or session is None:
            return Reject("no channel session for this conversation")
        channel = livechat.channels.get(conversation.channel)
        tenant = livechat.tenant(conversation.tenant_id)
        if channel is None or tenant is None:
            return Reject(f"channel {conversation.channel!r} is not configured")
        try:
            await channel.send(tenant, session, command)
        except EdgeCallFailed as failure:
            notice = getattr(failure, "notice", None)
            if not failure.retry and isinstance(command, SendMessage) and notice:
                await _tell_agents(livechat, row.conversation_id, command.message_id,
                                   str(notice))
            return outcome_of(failure)
        return Delivered(200)

    return send


async def _tell_agents(livechat: Livechat, conversation_id: str, message_id: str,
                       notice: str) -> None:
    """Tell the conversation's agents why the channel refused their message for good."""
    try:
        await livechat.conversations.ask(conversation_id, EdgeInbound(
            side=SIDE_CHANNEL, event=EdgeUndelivered(message_id=message_id, notice=notice)),
            timeout=LINK_TIMEOUT)
    except LcxError:
        log.warning("could not tell the agents of an undeliverable message",
                    extra={"conversationId": conversation_id, "messageId": message_id},
                    exc_info=True)
