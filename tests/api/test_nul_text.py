"""Text with a NUL character is refused (400) everywhere, on every store backend alike."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import livechat_app


async def test_nul_in_bodies_queries_and_paths_is_invalid(tmp_path: Path) -> None:
    """A NUL in a JSON body, a query parameter or a path id is 400 naming where it was,
    while a literal backslash-u-0000 text is fine."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        body = await app.client.post("/requests", headers={**bot, "Content-Type":
                                                           "application/json"},
                                     content=b'{"tenantId": "t1", "subHandle": "u\\u0000x"}')
        assert body.status_code == 400
        assert body.json()["error"]["details"]["fields"] == ["$"]
        literal = await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "u\\u0000x"})
        assert literal.status_code == 201, literal.text
        query = await app.client.get("/subscribers/u/livechat-state", headers=bot,
                                     params={"tenantId": "t1\x00"})
        assert query.status_code == 400
        assert query.json()["error"]["details"]["fields"] == ["tenantId"]
        path = await app.client.get("/tenants/t%00x/availability", headers=bot)
        assert path.status_code == 400
        assert path.json()["error"]["details"]["fields"] == ["tenantId"]
