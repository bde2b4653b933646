"""A queue's periodic resync makes its book the store's view without decoding every
waiting request: one it was never told of is added (in its place), one that stopped
waiting behind its back is dropped, one re-queued at another time moves; the book holds
places only, so a resync reads places only."""

from __future__ import annotations

from pathlib import Path

import msgspec
from support.livechat_app import livechat_app

from actors.keys import queue_key
from actors.messages import CreateRequest, Position, QueueStats, Resync
from lcx.livechat.conversation import new_request
from lcx.model import Conversation, iso, utc_now
from lcx.store import Tx
from lcx.store.conversations import load_conversation, save_conversation

QUEUE = queue_key("o1", "g1")


def request(sub: str) -> Conversation:
    """A new pending request of ``sub`` in o1/g1."""
    return new_request(org_id="o1", tenant_id="t1", sub_handle=sub, user_group_id="g1",
                       provider="helvia", channel="bot", now=utc_now())


def stored_as(conversation_id: str, **fields: object):  # type: ignore[no-untyped-def]
    """A write of another instance: the stored row changed, the queue not told."""

    def write(tx: Tx) -> None:
        current = load_conversation(tx, conversation_id)
        assert current is not None
        save_conversation(tx, msgspec.structs.replace(current, **fields), expected=current)

    return write


async def test_resync_adds_the_missed_drops_the_gone_and_moves_the_requeued(
        tmp_path: Path) -> None:
    """Four requests the queue knows, one it missed: after the store ends one, re-queues
    another as the newest and a resync, the queue holds four in store order."""
    async with livechat_app(tmp_path) as (_, _, hub):
        known = [request(f"known-{n}") for n in range(4)]
        for conversation in known:
            await hub.conversations.ask(conversation.id, CreateRequest(conversation=conversation))
        missed = request("missed")
        await hub.conversations.ask(missed.id, CreateRequest(conversation=missed,
                                                             enqueue=False))
        assert (await hub.queues.ask(QUEUE, QueueStats()))[0] == 4
        await hub.store.transaction(stored_as(known[1].id, status="cancelled",
                                              ended_at=iso(utc_now())))
        await hub.store.transaction(stored_as(known[0].id, queued_at=iso(utc_now())))
        await hub.queues.ask(QUEUE, Resync())
        assert (await hub.queues.ask(QUEUE, QueueStats()))[0] == 4
        order = [known[2], known[3], missed, known[0]]
        for place, conversation in enumerate(order, start=1):
            position, _ = await hub.queues.ask(QUEUE, Position(
                conversation_id=conversation.id))
            assert position == place, conversation.sub_handle
        gone, _ = await hub.queues.ask(QUEUE, Position(conversation_id=known[1].id))
        assert gone is None
