"""Forwarded actor messages and answers survive the trip across the bus unchanged."""

from __future__ import annotations

import msgspec
import pytest

from actors.messages import (
    WIRE_MESSAGES,
    Accept,
    Accepted,
    AgentState,
    Connect,
    End,
    Msg,
    Position,
    PostMessage,
    PostResult,
    Reserve,
)
from actors.routing import Answer, _codec
from lcx.model import AgentRef, Author, Context, Conversation, Message, Subscriber


def conversation() -> Conversation:
    return Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1", sub_handle="u",
                        user_group_id="g1", provider="helvia", channel="bot",
                        status="active", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[], flags={"vip": True},
                        created_at="2026-11-22T00:00:00.000Z",
                        queued_at="2026-11-22T00:00:00.000Z",
                        last_activity_at="2026-11-22T00:00:00.000Z", agent_id="alice")


def test_every_message_type_has_a_distinct_tag() -> None:
    """Every message that crosses instances is in the forwarding union under its own tag."""
    types = WIRE_MESSAGES
    tags = [t.__struct_config__.tag for t in types]
    assert len(tags) == len(set(tags))
    assert {"Accept", "Resync", "PostMessage", "Connect"} <= set(tags)


@pytest.mark.parametrize("message", [
    Accept(agent=AgentRef(id="alice", name="Alice"), assigned=True),
    PostMessage(author=Author(type="agent", id="alice"), text="hi", client_id="x",
                idempotency_scope="agent:o1:alice"),
    End(by="agent", reason="done"),
    Reserve(conversation_id="c1", limit=3, assigned=False),
    Connect(socket_id="s1", instance_id="i2", name="Alice", groups=("g1",)),
])
def test_forward_round_trip(message: Msg) -> None:
    """A message encodes and decodes to an equal message of the same type."""
    encoder, decoder = _codec()
    wire = encoder.encode({"kind": "conversation", "key": "c1", "mode": "ask",
                           "timeout": 5.0, "message": message})
    forward = decoder.decode(wire)
    assert forward.message == message
    assert type(forward.message) is type(message)


def test_answers_decode_as_the_messages_reply_type() -> None:
    """Replies come back typed: Accepted, PostResult, tuples, booleans."""
    accepted = Accepted(conversation=conversation(), messages=(Message(
        conversation_id="c1", seq=1, message_id="m1", author=Author(type="subscriber"),
        type="text", at="2026-11-22T00:00:00.000Z", text="hello"),))
    for message, value in ((Accept(agent=AgentRef(id="a")), accepted),
                           (PostMessage(author=Author(type="agent")),
                            PostResult(id="m", conversation_id="c1", request_id="r1", seq=2)),
                           (Position(conversation_id="c1"), (2, 60)),
                           (Reserve(conversation_id="c1", limit=1, assigned=True), True),
                           (AgentState(), ("online", ["c1"]))):
        raw = msgspec.msgpack.encode(Answer(value=msgspec.Raw(msgspec.msgpack.encode(value))))
        answer = msgspec.msgpack.decode(raw, type=Answer)
        assert msgspec.msgpack.decode(answer.value, type=message.reply) == value


def test_every_actor_message_is_listed_for_the_wire() -> None:
    """Each message an actor of another instance may be sent is in WIRE_MESSAGES (a
    message left out could not be forwarded)."""
    import actors.messages as module

    defined = {obj for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, Msg) and obj is not Msg}
    assert defined == set(WIRE_MESSAGES)
