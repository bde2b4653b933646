"""Genesys guest chat frames and the chat ledger, without sockets (adapters.genesys_stream)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.edges import (
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeCallFailed,
    EdgeEnded,
    EdgeMessage,
    EdgeTyping,
)
from adapters.genesys_stream import (
    ChatLedger,
    MemberInfo,
    decode_frame,
    is_state_error,
    parse_frame,
)
from lcx.model import AgentRef

CHAT = "chat-1"
ME = "guest-1"
AGENT = "agent-1"


def message_frame(sender: str, body: str | None, body_type: str = "standard",
                  message_id: str = "m1", kind: str = "message",
                  correlation: str = "CorrelationId") -> str:
    event: dict[str, Any] = {"id": message_id, "conversation": {"id": CHAT},
                             "sender": {"id": sender}, "timestamp": "2020-04-20T09:36:45.355Z"}
    if kind == "message":
        event |= {"body": body, "bodyType": body_type}
    return json.dumps({"topicName": f"v2.conversations.chats.{CHAT}.messages", "version": "2",
                       "eventBody": event, "metadata": {correlation: "c-1", "type": kind}})


def member_frame(member: str, state: str) -> str:
    return json.dumps({"topicName": f"v2.conversations.chats.{CHAT}.members", "version": "2",
                       "eventBody": {"conversation": {"id": CHAT},
                                     "member": {"id": member, "state": state}},
                       "metadata": {"CorrelationId": "c-2", "type": "member-change"}})


def ledger_with_agent() -> ChatLedger:
    ledger = ChatLedger(CHAT, ME)
    ledger.learn(MemberInfo(id=AGENT, display_name="Gina", role="AGENT"))
    return ledger


def admit_all(ledger: ChatLedger, raw: str) -> list[AnyEdgeEvent]:
    return [out for event in parse_frame(raw, ME) for out in ledger.admit(event)]


def test_standard_message_becomes_edge_message() -> None:
    """An agent's standard message is an EdgeMessage keyed by its Genesys message id."""
    assert parse_frame(message_frame(AGENT, "Hello"), ME) == [
        EdgeMessage(external_id="m1", author=AgentRef(id=AGENT), text="Hello")]


def test_own_echo_is_ignored() -> None:
    """The echo of the guest's own message gives no event."""
    assert parse_frame(message_frame(ME, "Hi from me"), ME) == []


def test_notice_and_media_request_bodies_are_ignored() -> None:
    """Only ``standard`` bodies are messages; notices give nothing."""
    assert parse_frame(message_frame(AGENT, "queued", body_type="notice"), ME) == []


def test_typing_indicator_becomes_edge_typing() -> None:
    """A typing-indicator frame of the agent is EdgeTyping; our own is ignored."""
    assert parse_frame(message_frame(AGENT, None, kind="typing-indicator"), ME) == [
        EdgeTyping(agent=AgentRef(id=AGENT))]
    assert parse_frame(message_frame(ME, None, kind="typing-indicator"), ME) == []


def test_member_join_and_leave_of_another_member() -> None:
    """member-join/member-leave bodies of another member are join/leave candidates."""
    assert parse_frame(message_frame(AGENT, None, "member-join"), ME) == [
        AgentJoined(agent=AgentRef(id=AGENT))]
    assert parse_frame(message_frame(AGENT, None, "member-leave"), ME) == [
        AgentLeft(agent=AgentRef(id=AGENT))]


def test_own_member_leave_ends_and_own_join_is_ignored() -> None:
    """Our own member-leave ends the chat; our own member-join says nothing."""
    assert parse_frame(message_frame(ME, None, "member-leave"), ME) == [
        EdgeEnded(reason="guest left")]
    assert parse_frame(message_frame(ME, None, "member-join"), ME) == []


def test_member_change_states() -> None:
    """CONNECTED/DISCONNECTED of another member are candidates; our own CONNECTED is not."""
    assert parse_frame(member_frame(AGENT, "CONNECTED"), ME) == [
        AgentJoined(agent=AgentRef(id=AGENT))]
    assert parse_frame(member_frame(AGENT, "DISCONNECTED"), ME) == [
        AgentLeft(agent=AgentRef(id=AGENT))]
    assert parse_frame(member_frame(AGENT, "ALERTING"), ME) == []
    assert parse_frame(member_frame(ME, "CONNECTED"), ME) == []
    assert parse_frame(member_frame(ME, "DISCONNECTED"), ME) == [
        EdgeEnded(reason="guest disconnected")]


def test_heartbeat_and_unknown_topics_give_nothing() -> None:
    """Heartbeats, unknown topics and unreadable frames give no event."""
    heartbeat = json.dumps({"topicName": "channel.metadata",
                            "eventBody": {"message": "WebSocket Heartbeat"}})
    assert decode_frame(heartbeat).kind == "heartbeat"
    assert parse_frame(heartbeat, ME) == []
    assert parse_frame(json.dumps({"topicName": "v2.system.other", "eventBody": {}}), ME) == []
    assert parse_frame("not json", ME) == []
    assert parse_frame(json.dumps({"topicName": f"v2.conversations.chats.{CHAT}.messages",
                                   "eventBody": {"nope": 1}}), ME) == []


@pytest.mark.parametrize("spelling", ["CorrelationId", "correlationId"])
def test_correlation_id_in_either_spelling(spelling: str) -> None:
    """The correlation id is read from CorrelationId and from correlationId."""
    assert decode_frame(message_frame(AGENT, "x", correlation=spelling)).correlation_id == "c-1"


def test_ledger_joins_an_agent_once_across_duplicates() -> None:
    """member-join plus two CONNECTED events of one agent give one AgentJoined."""
    ledger = ledger_with_agent()
    events = admit_all(ledger, message_frame(AGENT, None, "member-join"))
    events += admit_all(ledger, member_frame(AGENT, "CONNECTED"))
    events += admit_all(ledger, member_frame(AGENT, "CONNECTED"))
    assert events == [AgentJoined(agent=AgentRef(id=AGENT, name="Gina"),
                                  external_id=f"{AGENT}:joined")]


def test_ledger_ignores_members_that_are_not_agents() -> None:
    """A CONNECTED workflow member (or one of unknown role) is not an agent."""
    ledger = ChatLedger(CHAT, ME)
    ledger.learn(MemberInfo(id="flow-1", role="WORKFLOW"))
    assert admit_all(ledger, member_frame("flow-1", "CONNECTED")) == []
    assert admit_all(ledger, member_frame("who", "CONNECTED")) == []
    assert ledger.unknown(parse_frame(member_frame("who", "CONNECTED"), ME)) == ["who"]


def test_ledger_names_message_authors() -> None:
    """A message's author carries the looked-up display name."""
    ledger = ledger_with_agent()
    assert admit_all(ledger, message_frame(AGENT, "Hi")) == [
        EdgeMessage(external_id="m1", author=AgentRef(id=AGENT, name="Gina"), text="Hi")]


def test_last_agent_leaving_ends_the_chat_once() -> None:
    """member-leave then DISCONNECTED of the only agent: AgentLeft, EdgeEnded, then nothing."""
    ledger = ledger_with_agent()
    admit_all(ledger, member_frame(AGENT, "CONNECTED"))
    events = admit_all(ledger, message_frame(AGENT, None, "member-leave", message_id="m9"))
    events += admit_all(ledger, member_frame(AGENT, "DISCONNECTED"))
    assert events == [AgentLeft(agent=AgentRef(id=AGENT, name="Gina"),
                                external_id=f"{AGENT}:left"),
                      EdgeEnded(reason="agent disconnected", external_id=f"{CHAT}:ended")]
    assert ledger.ended


def test_agent_leaving_while_another_remains_does_not_end() -> None:
    """A transfer: the first agent disconnects while a second is connected."""
    ledger = ledger_with_agent()
    ledger.learn(MemberInfo(id="agent-2", display_name="Bo", role="AGENT"))
    admit_all(ledger, member_frame(AGENT, "CONNECTED"))
    admit_all(ledger, member_frame("agent-2", "CONNECTED"))
    assert admit_all(ledger, member_frame(AGENT, "DISCONNECTED")) == [
        AgentLeft(agent=AgentRef(id=AGENT, name="Gina"), external_id=f"{AGENT}:left")]
    assert not ledger.ended


def test_reconcile_joins_and_leaves_from_the_member_list() -> None:
    """After a reconnect the member list adds a new agent and ends for our disconnection."""
    ledger = ChatLedger(CHAT, ME)
    events = ledger.reconcile([MemberInfo(id=ME, role="CUSTOMER", state="CONNECTED"),
                               MemberInfo(id=AGENT, display_name="Gina", role="AGENT",
                                          state="CONNECTED")])
    assert events == [AgentJoined(agent=AgentRef(id=AGENT, name="Gina"),
                                  external_id=f"{AGENT}:joined")]
    events = ledger.reconcile([MemberInfo(id=ME, role="CUSTOMER", state="DISCONNECTED"),
                               MemberInfo(id=AGENT, role="AGENT", state="CONNECTED")])
    assert events == [EdgeEnded(reason="guest disconnected", external_id=f"{CHAT}:ended")]


def test_seen_messages_and_resume_point() -> None:
    """Marked ids are remembered; the resume point only moves forward with new ids."""
    ledger = ChatLedger(CHAT, ME, memory=2)
    for message_id in ("m1", "m2", "m1"):
        ledger.mark(message_id)
    assert ledger.last_message_id == "m2"
    assert ledger.seen("m1")
    ledger.mark("m3")
    assert not ledger.seen("m1")


def test_state_errors_are_recognised() -> None:
    """400 chat.error.conversation.state / member.state mean the chat is not active."""
    body = '{"code":"chat.error.member.state","message":"The conversation is not active"}'
    assert is_state_error(EdgeCallFailed(f"x: 400 {body}", retry=False, status=400))
    assert not is_state_error(EdgeCallFailed("x: 400 bad.request", retry=False, status=400))
