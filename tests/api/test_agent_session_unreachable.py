"""An agent socket whose session cannot be reached (its owner kept moving past the settle
bound) is told why, with a documented reason, then closed with 1013 (try again): never a
bare close, never an internal class name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from support.livechat_app import livechat_app
from trio_websocket import ConnectionClosed, open_websocket_url

from actors.messages import Connect
from lcx.errors import MailboxClosed


async def _read_until_closed(ws: Any, received: list[str]) -> int | None:
    """Keep every message until the server closes; its close code."""
    try:
        while True:
            received.append(str(await ws.get_message()))
    except ConnectionClosed as exc:
        code: int | None = exc.reason.code
        return code


async def test_a_socket_whose_session_stays_unreachable_gets_error_then_1013(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's router refuses Connect as a moving owner does past its bound."""
    async with livechat_app(tmp_path) as app:
        real_ask = app.hub.agents.ask

        async def moving(key: str, message: Any, timeout: float = 5.0) -> Any:
            if isinstance(message, Connect):
                raise MailboxClosed("agent_session:o1/alice: its owner is moving "
                                    "(MemberGone: b is gone)")
            return await real_ask(key, message, timeout)

        monkeypatch.setattr(app.hub.agents, "ask", moving)
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        url = str(app.client.base_url).replace("http://", "ws://") + f"/ws?token={token}"
        received: list[str] = []
        with trio.fail_after(5):
            async with open_websocket_url(url) as ws:
                try:
                    code = await _read_until_closed(ws, received)
                finally:  # trio-websocket leaves its stream open when the server closed
                    with trio.CancelScope(shield=True):
                        await ws._stream.aclose()
    assert code == 1013
    [raw] = received
    assert "MailboxClosed" not in raw
    assert "MemberGone" not in raw
    frame = json.loads(raw)
    assert frame["event"] == "ERROR"
    assert frame["data"]["code"] == "unavailable"
    assert frame["data"]["details"] == {"reason": "owner_moving"}
