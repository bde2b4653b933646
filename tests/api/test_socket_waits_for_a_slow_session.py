"""A new agent socket waits for its session even when the session is slow to start (all
agents reconnecting at once after a restart start thousands of sessions together): it is
registered, not refused after the 5 s an ordinary ask waits."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from support.livechat_app import livechat_app

from actors.agent_session import AgentSessionActor
from lcx.api.agent_sockets import SocketDirectory
from lcx.api.socket_sink import SocketSink
from lcx.auth import Principal
from lcx.runtime.actor import ActorContext


async def test_a_socket_waits_for_a_session_that_starts_slowly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = AgentSessionActor.on_start

    async def slow_start(self: AgentSessionActor, ctx: ActorContext) -> None:
        await trio.sleep(5.5)  # longer than an ordinary ask waits (5 s)
        await started(self, ctx)

    monkeypatch.setattr(AgentSessionActor, "on_start", slow_start)
    async with livechat_app(tmp_path) as app:
        directory = getattr(app.hub.local_push, "__self__", None)
        assert isinstance(directory, SocketDirectory)
        sink = SocketSink(10)
        principal = Principal(sub="alice", org="o1", scopes=frozenset({"agent"}),
                              groups=("g1",))
        with trio.fail_after(20):
            await directory.attach("s1", sink, principal)
        assert len(directory) == 1
        assert app.hub.presence_book.get("o1", "alice") is not None
