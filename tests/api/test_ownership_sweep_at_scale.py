"""The ownership sweep at scale: it reads the open conversations a page of keys at a time
and still wakes every one that is neither in memory nor waiting on a deadline (what a
restart or a dead peer leaves), however many pages they span; and what it wakes only to
re-arm a deadline leaves memory again soon."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import livechat_app
from support.waiting import eventually

from lcx.store.conversations import open_conversation_keys
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


async def test_a_conversation_woken_only_to_rearm_passivates_soon(tmp_path: Path) -> None:
    """After a sweep woke it (Recover), an actor leaves memory within a few seconds while
    its deadline stays armed in the timer service: a restart's sweep over 100,000 open
    conversations does not keep 100,000 actors alive. A message brings it back."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        created = await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "woken"})
        assert created.status_code == 201, created.text
        hub = app.hub
        [key] = await hub.store.read(open_conversation_keys)
        hub.conversations.local.stop_actor(key.id)
        await eventually(lambda: hub.conversations.get(key.id) is None)
        hub.timers.cancel(key.id)
        await OwnershipService(hub).sweep()
        await eventually(lambda: hub.timers.armed(key.id))
        await eventually(lambda: hub.conversations.get(key.id) is None, timeout=5)
        assert hub.timers.armed(key.id)
        posted = await app.client.post("/messages", headers=bot, json={
            "tenantId": "t1", "subHandle": "woken", "text": "still waiting"})
        assert posted.status_code == 202, posted.text
