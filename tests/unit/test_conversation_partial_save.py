"""A guarded conversation save writes only the columns that changed, and the stored row
then reads back as the new state (counters, status and the open-request key included)."""

from __future__ import annotations

import msgspec

from lcx.model import Context, Conversation, Participant, Subscriber
from lcx.store import open_store
from lcx.store.conversations import (
    _changes,
    find_open,
    insert_conversation,
    load_conversation,
    save_conversation,
)

AT = "2026-11-22T00:00:00.000Z"
LATER = "2026-11-22T00:00:05.000Z"


def conversation() -> Conversation:
    return Conversation(id="c1", request_id="r1", org_id="o1", tenant_id="t1", sub_handle="u",
                        user_group_id="g1", provider="helvia", channel="bot",
                        status="active", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[], flags={}, created_at=AT,
                        queued_at=AT, last_activity_at=AT, agent_id="alice")


def test_a_post_writes_only_the_counters_and_the_activity_time() -> None:
    """No JSON column is encoded when only the counters and activity time moved."""
    before = conversation()
    after = msgspec.structs.replace(before, last_seq=1, last_event_no=2, last_activity_at=LATER)
    assignments, values = _changes(before, after)
    assert assignments == "last_seq = ?, last_event_no = ?, last_activity_at = ?"
    assert values == [1, 2, LATER]


async def test_partial_saves_read_back_as_the_new_state() -> None:
    """A post, a participant change and an end each read back whole; ending frees the key."""
    async with open_store("sqlite://:memory:") as store:
        first = conversation()
        await store.transaction(lambda tx: insert_conversation(tx, first))
        posted = msgspec.structs.replace(first, last_seq=1, last_activity_at=LATER)
        joined = msgspec.structs.replace(
            posted, last_event_no=1, participants=[Participant(id="bob", joined_at=LATER)])
        ended = msgspec.structs.replace(joined, status="ended", ended_at=LATER,
                                        last_event_no=2)
        for before, after in ((first, posted), (posted, joined), (joined, ended)):
            await store.transaction(
                lambda tx, b=before, a=after: save_conversation(tx, a, expected=b))
            assert await store.read(lambda tx: load_conversation(tx, "c1")) == after
        assert await store.read(lambda tx: find_open(tx, "t1", "u")) is None
