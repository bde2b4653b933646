"""``POST /messages`` looks up the open conversation's id and subscriber name only: the
brief agrees with the whole row while the conversation is open, and is gone once it ends."""

from __future__ import annotations

import msgspec

from lcx.model import Context, Conversation, Subscriber
from lcx.store import open_store
from lcx.store.conversations import (
    find_open,
    find_open_brief,
    insert_conversation,
    save_conversation,
)

AT = "2026-11-22T00:00:00.000Z"


def conversation(name: str | None) -> Conversation:
    return Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1", sub_handle="u",
                        user_group_id="g1", provider="helvia", channel="bot",
                        status="active", subscriber=Subscriber(name=name, email="a@b.c"),
                        context=Context(), participants=[], flags={}, created_at=AT,
                        queued_at=AT, last_activity_at=AT, agent_id="alice")


async def test_the_brief_is_the_open_rows_id_and_subscriber_name() -> None:
    async with open_store("sqlite://:memory:") as store:
        first = conversation("Ada")
        await store.transaction(lambda tx: insert_conversation(tx, first))
        whole = await store.read(lambda tx: find_open(tx, "t1", "u"))
        brief = await store.read(lambda tx: find_open_brief(tx, "t1", "u"))
        assert whole is not None
        assert brief == (whole.id, whole.subscriber.name) == ("c1", "Ada")
        assert await store.read(lambda tx: find_open_brief(tx, "t1", "other")) is None
        ended = msgspec.structs.replace(first, status="ended", ended_at=AT, last_event_no=1)
        await store.transaction(lambda tx: save_conversation(tx, ended, expected=first))
        assert await store.read(lambda tx: find_open_brief(tx, "t1", "u")) is None


async def test_a_subscriber_without_a_name_has_none() -> None:
    async with open_store("sqlite://:memory:") as store:
        nameless = conversation(None)
        await store.transaction(lambda tx: insert_conversation(tx, nameless))
        assert await store.read(lambda tx: find_open_brief(tx, "t1", "u")) == ("c1", None)
