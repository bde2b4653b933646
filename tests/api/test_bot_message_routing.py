"""``POST /messages`` remembers each subscriber's open conversation instead of reading the
store per message; what it answers must be what the store says, whatever happened since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.livechat_app import accept, connect_agent, livechat_app
from test_bot_api import conversation_id, error_of, open_request, send

from lcx.store import Tx
from lcx.store.conversations import messages_after


def _authors(tx: Tx, conversation: str) -> list[tuple[str | None, str | None]]:
    return [(m.text, m.author.name) for m in messages_after(tx, conversation, 0)]


async def test_after_the_end_messages_go_to_the_subscribers_next_conversation(
        tmp_path: Path) -> None:
    """A remembered conversation that ended is not written to: 404 while nothing is open,
    then the new request gets the messages."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        first = await conversation_id(app.hub)
        assert (await send(app, "one")).status_code == 202
        path = "/sessions/tenants/t1/subscribers/u1"
        assert (await app.client.delete(path, headers=app.tokens.bot())).status_code == 204
        details = error_of(await send(app, "lost"), 404, "not_found")["details"]
        assert details == {"tenantId": "t1", "subHandle": "u1"}
        assert (await open_request(app)).status_code == 201
        second = await conversation_id(app.hub)
        answer = (await send(app, "two")).json()
        assert answer["conversationId"] == second != first
        assert [t for t, _ in await app.hub.store.read(lambda tx: _authors(tx, first))] == [
            "one"]
        assert [t for t, _ in await app.hub.store.read(lambda tx: _authors(tx, second))] == [
            "two"]


async def test_a_resend_after_the_end_is_answered_as_the_first_time(tmp_path: Path) -> None:
    """Idempotency survives the end through the remembered conversation too."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        first: dict[str, Any] = (await send(app, "once", id="m-1")).json()
        path = "/sessions/tenants/t1/subscribers/u1"
        assert (await app.client.delete(path, headers=app.tokens.bot())).status_code == 204
        again = await send(app, "once", id="m-1")
        assert again.status_code == 202
        assert again.json() == first


async def test_messages_are_signed_with_the_subscribers_name_as_it_is_now(
        tmp_path: Path) -> None:
    """A PATCH renames the subscriber: later messages carry the new name, although the
    conversation was remembered before the rename."""
    async with livechat_app(tmp_path) as app:
        await open_request(app, subscriber={"name": "Ada"})
        assert (await send(app, "before")).status_code == 202
        response = await app.client.patch(
            "/requests/subscribers/u1", params={"tenantId": "t1"}, headers=app.tokens.bot(),
            json={"subscriber": {"name": "Ada L."}})
        assert response.status_code == 200, response.text
        assert (await send(app, "after")).status_code == 202
        await connect_agent(app.hub, "alice")
        conversation = await conversation_id(app.hub)
        await accept(app.hub, conversation, "alice")
        assert (await send(app, "active")).status_code == 202
        authors = await app.hub.store.read(lambda tx: _authors(tx, conversation))
    assert authors == [("before", "Ada"), ("after", "Ada L."), ("active", "Ada L.")]
