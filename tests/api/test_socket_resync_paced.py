"""The periodic resync registers local sockets again a few at a time, in turn: a session
that lost its sockets (restarted) gets them back within a few periods, and a period costs
the same however many sockets the instance holds; a full resync still takes all."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from support.livechat_app import livechat_app

from actors.keys import agent_key
from lcx.api import agent_sockets
from lcx.api.agent_sockets import SocketDirectory
from lcx.api.socket_sink import SocketSink
from lcx.auth import Principal


def _agent(agent_id: str) -> Principal:
    return Principal(sub=agent_id, org="o1", scopes=frozenset({"agent"}), groups=("g1",))


async def test_periodic_resyncs_take_sockets_in_turn_and_repair_a_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_sockets, "RESYNC_SOCKETS", 2)
    async with livechat_app(tmp_path) as app:
        directory = getattr(app.hub.local_push, "__self__", None)
        assert isinstance(directory, SocketDirectory)
        sinks = {f"s{n}": SocketSink(10) for n in range(5)}
        for socket_id, sink in sinks.items():
            await directory.attach(socket_id, sink, _agent(f"agent-{socket_id}"))
        registered: list[str] = []
        register = directory._register

        async def counting(socket_id: str, socket: object) -> None:
            registered.append(socket_id)
            await register(socket_id, socket)  # type: ignore[arg-type]

        monkeypatch.setattr(directory, "_register", counting)
        # agent-s0's session forgets its socket (as after a restart)
        app.hub.agents.local.stop_actor(agent_key("o1", "agent-s0"))
        await trio.testing.wait_all_tasks_blocked()
        app.hub.push_to_agent("o1", "agent-s0", b'{"lost":true}')
        await trio.testing.wait_all_tasks_blocked()
        assert sinks["s0"].take_nowait() is None  # nobody knows its socket now
        rounds = []
        for _ in range(3):
            registered.clear()
            await directory.resync(full=False)
            rounds.append(sorted(registered))
        assert [len(r) for r in rounds] == [2, 2, 1]
        assert sorted(s for r in rounds for s in r) == sorted(sinks)  # each once in 3 periods
        app.hub.push_to_agent("o1", "agent-s0", b'{"type":"event","event":"TEST"}')
        await trio.testing.wait_all_tasks_blocked()
        assert sinks["s0"].take_nowait() == b'{"type":"event","event":"TEST"}'
        registered.clear()
        await directory.resync(full=True)
        assert sorted(registered) == sorted(sinks)
