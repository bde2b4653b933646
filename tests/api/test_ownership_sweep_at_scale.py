"""The ownership sweep at scale: it reads the open conversations a page of keys at a time
and still wakes every one that is neither in memory nor waiting on a deadline (what a
restart or a dead peer leaves), however many pages they span; a conversation of lcx's own
agents gets its deadline back without its actor being loaded."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import livechat_app
from support.waiting import eventually, eventually_async

from lcx.model import Conversation
from lcx.store.conversations import load_conversation, open_conversation_keys
from services.ownership import OwnershipService


async def test_a_sweep_in_pages_of_two_wakes_all_five_lost_conversations(
        tmp_path: Path) -> None:
    """Five pending requests whose actors stopped and whose timers were dropped: one sweep
    with pages of two re-arms all five, and their queue still has them."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        for n in range(5):
            created = await app.client.post("/requests", headers=bot, json={
                "tenantId": "t1", "subHandle": f"lost-{n}"})
            assert created.status_code == 201, created.text
        hub = app.hub
        ids = [key.id for key in await hub.store.read(open_conversation_keys)]
        assert len(ids) == 5
        assert all(hub.timers.armed(c) for c in ids)
        for conversation_id in ids:
            hub.conversations.local.stop_actor(conversation_id)
        await eventually(lambda: all(hub.conversations.get(c) is None for c in ids))
        for conversation_id in ids:
            hub.timers.cancel(conversation_id)
        sweeper = OwnershipService(hub, page_size=2)
        await sweeper.sweep()
        await eventually(lambda: all(hub.timers.armed(c) for c in ids))
        state = await app.client.get("/subscribers/lost-4/livechat-state", headers=bot,
                                     params={"tenantId": "t1"})
        assert state.json()["state"] == "pending", state.text


async def test_a_sweep_arms_a_lost_deadline_without_loading_the_conversation(
        tmp_path: Path) -> None:
    """A pending request whose actor stopped and whose timer was lost: the sweep arms its
    deadline from the stored keys without activating the actor, and the deadline fires
    on time (the request is missed after its 2 s), as if the actor had armed it."""
    async with livechat_app(tmp_path,
                            settings_overrides={"o1": {"requestTimeoutSeconds": 2}}) as app:
        bot = app.tokens.bot()
        created = await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "lost-deadline"})
        assert created.status_code == 201, created.text
        hub = app.hub
        [key] = await hub.store.read(open_conversation_keys)
        hub.conversations.local.stop_actor(key.id)
        await eventually(lambda: hub.conversations.get(key.id) is None)
        hub.timers.cancel(key.id)
        await OwnershipService(hub).sweep()
        assert hub.timers.armed(key.id)
        assert hub.conversations.get(key.id) is None

        async def closed() -> Conversation | None:
            stored = await hub.store.read(lambda tx: load_conversation(tx, key.id))
            return stored if stored is not None and not stored.is_open else None

        stored = await eventually_async(closed, timeout=6)
        assert stored.status == "missed"
