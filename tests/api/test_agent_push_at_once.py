"""A frame for a connected agent whose session waits for nothing reaches its sockets on
the sender's task (no task step through the session), and in order with frames that go
through the session's mailbox while it is busy."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
import trio.testing
from support.livechat_app import RecordingSink, livechat_app

from actors.keys import agent_key
from actors.messages import AgentState, Connect


def _frame(n: int) -> bytes:
    return msgspec.json.encode({"type": "event", "event": "TEST", "n": n})


async def test_a_frame_for_an_idle_session_is_offered_before_the_push_returns(
        tmp_path: Path) -> None:
    async with livechat_app(tmp_path) as app:
        hub = app.hub
        key = agent_key("o1", "alice")
        sink = RecordingSink()
        await hub.agents.ask(key, Connect(socket_id="s1", sink=sink, groups=("g1",)))
        await trio.testing.wait_all_tasks_blocked()
        hub.push_to_agent("o1", "alice", _frame(1))
        assert [f.get("n") for f in sink.frames if f.get("event") == "TEST"] == [1]


async def test_frames_pushed_while_the_session_is_busy_stay_in_order(tmp_path: Path) -> None:
    async with livechat_app(tmp_path) as app:
        hub = app.hub
        key = agent_key("o1", "alice")
        sink = RecordingSink()
        await hub.agents.ask(key, Connect(socket_id="s1", sink=sink, groups=("g1",)))
        await trio.testing.wait_all_tasks_blocked()
        for n in range(5):
            hub.push_to_agent("o1", "alice", _frame(n))
        hub.agents.post(key, AgentState())  # the session has a message to handle
        for n in range(5, 10):
            hub.push_to_agent("o1", "alice", _frame(n))  # behind it, in its mailbox
        await hub.agents.ask(key, AgentState())
        hub.push_to_agent("o1", "alice", _frame(10))  # idle again
        assert [f.get("n") for f in sink.frames if f.get("event") == "TEST"] == \
            list(range(11))
