"""The conversation-detail response is a declared Struct that /openapi.json names, and it
encodes exactly what agents are shown of a conversation (the shape did not change)."""

from __future__ import annotations

import msgspec

from lcx.api.management import ENDPOINTS, ConversationDetail
from lcx.api.openapi import build_document
from lcx.livechat import frames
from lcx.model import AgentRef, Context, Conversation, Participant, Subscriber

AT = "2026-12-03T06:00:00.000Z"


def conversation(**changes: object) -> Conversation:
    base = Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1", sub_handle="u",
                        user_group_id="g1", provider="helvia", channel="bot",
                        status="active", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[Participant(
                            id="alice", name="Alice", joined_at=AT)],
                        flags={"vip": True}, created_at=AT, queued_at=AT,
                        last_activity_at=AT, agent_id="alice", agent_name="Alice",
                        accepted_at=AT, accepted_by="alice", last_seq=3)
    return msgspec.structs.replace(base, **changes)


def test_the_detail_encodes_like_the_agents_view_of_a_conversation() -> None:
    """Same keys, same order, same values: active and ended (nulls kept) alike."""
    for c in (conversation(), conversation(status="ended", agent_id=None, ended_at=AT,
                                           ended_by="alice", end_reason="done")):
        assert msgspec.json.encode(ConversationDetail.of(c)) == \
            msgspec.json.encode(frames.conversation_data(c))


def test_the_detail_carries_the_agent_as_a_ref() -> None:
    """The agent field is the conversation's current agent, or null once nobody holds it."""
    assert ConversationDetail.of(conversation()).agent == AgentRef(id="alice", name="Alice")
    assert ConversationDetail.of(conversation(agent_id=None)).agent is None


def test_openapi_names_the_detail_schema() -> None:
    """The 200 answer of GET .../livechat-conversations/{id} refers to ConversationDetail."""
    document = build_document(ENDPOINTS, version="test")
    path = "/organizations/{orgId}/livechat-conversations/{conversationId}"
    answer = document["paths"][path]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ConversationDetail"}
    assert "lastSeq" in document["components"]["schemas"]["ConversationDetail"]["required"]
