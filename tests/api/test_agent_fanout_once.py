"""A frame for many agents is encoded once and the same bytes are offered straight to every
socket (no session actor in between); a socket that cannot take it is cut, the others
still get it."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import livechat_app

from lcx.api.agent_sockets import SocketDirectory
from lcx.api.socket_sink import SocketSink
from lcx.auth import Principal


def _agent(agent_id: str) -> Principal:
    return Principal(sub=agent_id, org="o1", scopes=frozenset({"agent"}), groups=("g1",))


def _queued(sink: SocketSink) -> list[bytes]:
    frames = []
    while (frame := sink.take_nowait()) is not None:
        frames.append(frame)
    return frames


async def test_same_bytes_reach_every_socket_and_a_full_one_is_cut(tmp_path: Path) -> None:
    """Two tabs of alice, one of bob, a full one of carol; dave has no socket."""
    async with livechat_app(tmp_path) as app:
        directory = getattr(app.hub.local_push, "__self__", None)
        assert isinstance(directory, SocketDirectory)
        sinks = {"a1": SocketSink(10), "a2": SocketSink(10), "b1": SocketSink(10),
                 "c1": SocketSink(1)}
        owners = {"a1": "alice", "a2": "alice", "b1": "bob", "c1": "carol"}
        for socket_id, sink in sinks.items():
            await directory.attach(socket_id, sink, _agent(owners[socket_id]))
        assert sinks["c1"].offer(b"filler")
        frame = b'{"type":"event","event":"TEST"}'
        app.hub.push_to_agents("o1", ["alice", "bob", "carol", "dave"], frame)
        for socket_id in ("a1", "a2", "b1"):
            [got] = _queued(sinks[socket_id])
            assert got is frame
        assert sinks["c1"].cut_reason == "too many frames queued"
        assert _queued(sinks["c1"]) == [b"filler"]
        assert app.hub.counters.slow_consumers_cut == 1
        directory.detach("a1")
        app.hub.push_to_agents("o1", ["alice"], frame)
        assert _queued(sinks["a1"]) == []
        assert _queued(sinks["a2"]) == [frame]
