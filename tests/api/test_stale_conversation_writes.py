"""A conversation actor whose state went stale (another activation of the same
conversation wrote meanwhile: an owner elsewhere while this instance was paused or cut
off) neither fails nor overwrites what the other stored: its write is refused by the store
and it starts again from the stored state. Found by the chaos suite (SIGSTOP of an
instance): without this, every later message of the conversation answered 500."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from support.livechat_app import livechat_app

from actors.messages import CreateRequest, PostMessage
from lcx.api.errors import error_reply
from lcx.errors import StaleState
from lcx.livechat.conversation import new_request
from lcx.model import Author, Conversation, Message, iso, utc_now
from lcx.store import Tx
from lcx.store.conversations import (
    append_message,
    load_conversation,
    messages_after,
    save_conversation,
)


def written_elsewhere(conversation_id: str, text: str):  # type: ignore[no-untyped-def]
    """What another owner of the conversation commits: its next message and the row."""

    def write(tx: Tx) -> Conversation:
        current = load_conversation(tx, conversation_id)
        assert current is not None
        seq = current.last_seq + 1
        append_message(tx, Message(conversation_id=conversation_id, seq=seq,
                                   message_id=f"elsewhere-{seq}",
                                   author=Author(type="subscriber"), type="text",
                                   at=iso(utc_now()), text=text), org_id="o1", client_id=None)
        stored = msgspec.structs.replace(current, last_seq=seq)
        save_conversation(tx, stored, expected=current)
        return stored

    return write


async def test_a_stale_actor_starts_again_from_the_store(tmp_path: Path) -> None:
    """The actor still holds seq 0 while another activation stored seq 1: its next message
    is stored as seq 2 (not refused with a taken seq, not stored over the other)."""
    async with livechat_app(tmp_path) as (_, _, hub):
        request = new_request(org_id="o1", tenant_id="t1", sub_handle="stale",
                              user_group_id="g1", provider="helvia", channel="bot",
                              now=utc_now())
        await hub.conversations.ask(request.id, CreateRequest(conversation=request,
                                                              enqueue=False))
        await hub.store.transaction(written_elsewhere(request.id, "stored elsewhere"))
        result = await hub.conversations.ask(request.id, PostMessage(
            author=Author(type="subscriber"), text="stored here"))
        assert result.seq == 2
        stored = await hub.store.read(lambda tx: messages_after(tx, request.id, 0))
        assert [(m.seq, m.text) for m in stored] == [(1, "stored elsewhere"),
                                                     (2, "stored here")]
        row = await hub.store.read(lambda tx: load_conversation(tx, request.id))
        assert row is not None
        assert row.last_seq == 2


async def test_the_store_refuses_a_row_based_on_a_stale_state(tmp_path: Path) -> None:
    """save_conversation with the state it was based on: refused once the stored row
    moved on (a stale writer never takes the seq counter back)."""
    async with livechat_app(tmp_path) as (_, _, hub):
        request = new_request(org_id="o1", tenant_id="t1", sub_handle="cas",
                              user_group_id="g1", provider="helvia", channel="bot",
                              now=utc_now())
        await hub.conversations.ask(request.id, CreateRequest(conversation=request,
                                                              enqueue=False))
        stale = await hub.store.read(lambda tx: load_conversation(tx, request.id))
        assert stale is not None
        await hub.store.transaction(written_elsewhere(request.id, "newer"))
        with pytest.raises(StaleState):
            await hub.store.transaction(lambda tx: save_conversation(
                tx, msgspec.structs.replace(stale, flags={"x": 1}), expected=stale))
        row = await hub.store.read(lambda tx: load_conversation(tx, request.id))
        assert row is not None
        assert row.last_seq == 1


def test_a_write_still_stale_after_its_retries_is_a_503_owner_moving() -> None:
    """Two instances acting for one conversation for longer than the actor's retries (an
    instance cut from Redis owns every key on its side): the caller gets 503 with
    ``Retry-After``, never 500."""
    reply = error_reply(StaleState("conversation c changed since seq 3 / event 1 was read"))
    assert (reply.status, reply.code, reply.details) == (503, "unavailable",
                                                         {"reason": "owner_moving"})
    assert reply.headers["Retry-After"] == "1"
