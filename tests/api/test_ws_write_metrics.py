"""``/metrics`` counts the writes to agent sockets and the frames they carried."""

from __future__ import annotations

from pathlib import Path

from support.agent_client import agent_connection
from support.livechat_app import LivechatApp, livechat_app


async def _counter(app: LivechatApp, name: str) -> float:
    text = (await app.client.get("/metrics", headers=app.tokens.admin())).text
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith(name + " "))


async def test_writes_and_frames_are_counted(tmp_path: Path) -> None:
    """A connect (its AUTHORIZATION_GRANTED) and three answered pings: four frames, in at
    most as many writes."""
    async with livechat_app(tmp_path) as app:
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        async with agent_connection(str(app.client.base_url), token) as alice:
            for ref in ("p1", "p2", "p3"):
                await alice.send({"type": "ping", "ref": ref})
                await alice.wait_for(lambda f, ref=ref: f.get("type") == "pong"
                                     and f.get("ref") == ref)
            frames = await _counter(app, "lcx_ws_frames_sent_total")
            writes = await _counter(app, "lcx_ws_writes_total")
        assert frames == 4
        assert 1 <= writes <= frames
