"""A socket that falls too far behind is cut off; the agent's other tabs keep receiving."""

from __future__ import annotations

from pathlib import Path

import msgspec
from support.livechat_app import RecordingSink, livechat_app

from actors.keys import agent_key
from actors.messages import AgentState, Connect
from lcx.api.socket_sink import SocketSink


async def test_slow_socket_is_cut_and_other_tabs_keep_receiving(tmp_path: Path) -> None:
    """With room for 3 frames and nobody reading, the 4th frame cuts that socket only."""
    async with livechat_app(tmp_path) as app:
        hub = app.hub
        key = agent_key("o1", "alice")
        slow, fast = SocketSink(3), RecordingSink()
        for socket_id, sink in (("slow", slow), ("fast", fast)):
            await hub.agents.ask(key, Connect(socket_id=socket_id, sink=sink, name="Alice",
                                              groups=("g1",)))
        for index in range(10):
            hub.push_to_agent("o1", "alice", msgspec.json.encode(
                {"type": "event", "event": "TEST", "n": index}))
        status, _ = await hub.agents.ask(key, AgentState())
        assert slow.cut_reason == "too many frames queued"
        assert slow.scope.cancel_called
        assert [f["n"] for f in fast.frames if f.get("event") == "TEST"] == list(range(10))
        assert status == "online"
        assert hub.counters.slow_consumers_cut == 1
        queued = 0
        while slow.take_nowait() is not None:
            queued += 1
        assert queued == 3
