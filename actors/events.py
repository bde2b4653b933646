"""Events to the bot and flow triggers (API.md section 4), as outbox rows."""

from __future__ import annotations

from typing import Any, cast, get_args
from urllib.parse import urlencode

import msgspec

from adapters.edges import EdgeCommand
from lcx.config import TenantConfig
from lcx.ids import new_id
from lcx.model import BotEvent, Conversation, EventType, iso, utc_now
from lcx.store.outbox import TARGET_BOT, TARGET_FLOW, OutboxEvent

FLOW_TRIGGERS: dict[str, str] = {
    "REQUEST_MISSED": "livechat-request-missed",
    "CONVERSATION_END": "livechat-conversation-finished",
}


def flow_url(tenant: TenantConfig, trigger: str) -> str:
    """The event publisher URL that fires ``trigger`` for a tenant."""
    query = urlencode({"triggerType": trigger, "organizationId": tenant.organization_id,
                       "tenantId": tenant.id})
    return f"{tenant.event_publisher_url.rstrip('/')}/connectors/flows:trigger?{query}"


def build_events(conversation: Conversation, tenant: TenantConfig | None, event_no: int,
                 event_type: str, data: dict[str, Any]) -> list[OutboxEvent]:
    """The outbox rows one domain event becomes: to the bot and, for some, to the flows.

    Nothing is produced for a tenant without a ``bot_events_url`` (and publisher URL).
    """
    if tenant is None:
        return []
    now = iso(utc_now())
    shown_id = conversation.id if conversation.accepted_at else None
    event_id = new_id()
    body = msgspec.json.encode(BotEvent(
        id=event_id, type=_event_type(event_type), tenant_id=conversation.tenant_id,
        organization_id=conversation.org_id, sub_handle=conversation.sub_handle,
        request_id=conversation.request_id, conversation_id=shown_id,
        seq=conversation.last_seq, at=now, data=data))
    rows: list[OutboxEvent] = []
    if tenant.bot_events_url:
        rows.append(OutboxEvent(event_id, conversation.org_id, conversation.tenant_id,
                                conversation.id, event_no, TARGET_BOT, tenant.bot_events_url,
                                event_type, body, now))
    trigger = FLOW_TRIGGERS.get(event_type)
    if trigger and tenant.event_publisher_url:
        rows.append(OutboxEvent(f"{event_id}-flow", conversation.org_id, conversation.tenant_id,
                                conversation.id, event_no, TARGET_FLOW,
                                flow_url(tenant, trigger), event_type, body, now))
    return rows


_EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))


def _event_type(name: str) -> EventType:
    if name in _EVENT_TYPES:  # the common case, without a conversion per event
        return cast(EventType, name)
    event_type: EventType = msgspec.convert(name, EventType)  # raises for another name
    return event_type


def edge_command_row(conversation: Conversation, side: str, event_no: int,
                     command: EdgeCommand) -> OutboxEvent:
    """The outbox row of a command for the conversation's channel or provider (the lane
    ``(conversation, side)`` keeps commands in order, and the outbox retries them)."""
    now = iso(utc_now())
    tag = type(command).__name__
    return OutboxEvent(new_id(), conversation.org_id, conversation.tenant_id, conversation.id,
                       event_no, side, "", tag, msgspec.json.encode(command), now)
