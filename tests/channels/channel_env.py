"""Helpers of the channel tests: an agent accepting, answering, and what it received."""

from __future__ import annotations

from typing import Any

from support.agent_client import AgentClient

JWT_SECRET = "channels-jwt-secret-with-more-than-32-bytes"


async def accepted(alice: AgentClient) -> str:
    offer = await alice.notification("request_created", timeout=10)
    answer = await alice.call("REQUEST_ACCEPT", {"requestId": offer["data"]["requestId"]})
    return str(answer["data"]["conversationId"])


def received(alice: AgentClient, conversation_id: str) -> list[dict[str, Any]]:
    """The messages the agent has of a conversation: the history in the accept's ack,
    then the message frames (each message once)."""
    found: dict[str, dict[str, Any]] = {}
    for frame in alice.frames:
        data = frame.get("data")
        history = data.get("messages", []) if frame.get("type") == "ack" and \
            isinstance(data, dict) and data.get("conversationId") == conversation_id else []
        for message in [*history, *([data] if frame.get("type") == "message" else [])]:
            if message.get("conversationId") == conversation_id:
                found.setdefault(message["messageId"], message)
    return list(found.values())


def seen(alice: AgentClient, conversation_id: str) -> list[str]:
    """The texts of :func:`received`."""
    return [m.get("text") or "" for m in received(alice, conversation_id)]


async def answer(alice: AgentClient, conversation_id: str, text: str) -> None:
    ack = await alice.call(None, {"conversationId": conversation_id, "text": text},
                           kind="message")
    assert ack["type"] == "ack", ack
