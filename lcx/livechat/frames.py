"""Agent websocket frames (API.md section 5) built from domain records."""

from __future__ import annotations

from typing import Any

import msgspec

from lcx.model import Conversation, Message


def plain(value: Any) -> Any:
    """A Struct (or anything msgspec encodes) as plain JSON-ready builtins."""
    return msgspec.to_builtins(value)


def event(name: str, data: dict[str, Any], ref: str | None = None) -> dict[str, Any]:
    """An ``event`` frame."""
    frame: dict[str, Any] = {"type": "event", "event": name, "data": data}
    if ref is not None:
        frame["ref"] = ref
    return frame


def notification(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A ``NOTIFICATION`` event frame of one kind."""
    return event("NOTIFICATION", {"kind": kind, **data})


def message(msg: Message) -> dict[str, Any]:
    """A ``message`` frame."""
    return {"type": "message", "data": plain(msg)}


def request_data(conversation: Conversation) -> dict[str, Any]:
    """What agents are told about a request."""
    return {"requestId": conversation.request_id,
            "conversationId": conversation.id if conversation.status != "pending" else None,
            "tenantId": conversation.tenant_id, "userGroupId": conversation.user_group_id,
            "subHandle": conversation.sub_handle, "subscriber": plain(conversation.subscriber),
            "context": plain(conversation.context), "createdAt": conversation.created_at,
            "queuedAt": conversation.queued_at, "provider": conversation.provider}


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """A conversation as the management API and agents see it."""
    return {"id": conversation.id, "requestId": conversation.request_id,
            "organizationId": conversation.org_id, "tenantId": conversation.tenant_id,
            "subHandle": conversation.sub_handle, "userGroupId": conversation.user_group_id,
            "provider": conversation.provider, "channel": conversation.channel,
            "status": conversation.status, "subscriber": plain(conversation.subscriber),
            "context": plain(conversation.context),
            "participants": plain(conversation.participants), "flags": conversation.flags,
            "agent": plain(conversation.agent), "createdAt": conversation.created_at,
            "queuedAt": conversation.queued_at, "acceptedAt": conversation.accepted_at,
            "acceptedBy": conversation.accepted_by, "endedAt": conversation.ended_at,
            "endedBy": conversation.ended_by, "endReason": conversation.end_reason,
            "lastSeq": conversation.last_seq, "lastActivityAt": conversation.last_activity_at}
