"""The benchmarks' agents give their TCP connection back once the server closed their
websocket, as a browser does. trio-websocket's client keeps the stream of a websocket the
server closed first open (and ``aclose`` does nothing then): a bench whose 10,000 agents
were closed by a restart held 10,000 dead descriptors and its last reconnects failed with
EMFILE."""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from trio_websocket import WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit import Agent, Frame, agents_connected

GRANTED = '{"type":"event","event":"AUTHORIZATION_GRANTED","data":{}}'


async def _grant_then_restart(request: WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message(GRANTED)
    await ws.aclose(1012, "server shutting down; reconnect")


def _ignore(agent: Agent, frame: Frame) -> None:
    """The agents do nothing with their frames."""


async def test_an_agent_the_server_closed_frees_its_descriptor(
        nursery: trio.Nursery) -> None:
    server = await nursery.start(serve_websocket, _grant_then_restart, "127.0.0.1", 0, None)
    url = f"http://127.0.0.1:{server.port}"
    names = [f"agent-{index}" for index in range(5)]
    async with agents_connected(nursery, url, names, _ignore) as connected:
        assert connected.failures == []
        with trio.fail_after(10):
            for agent in connected.agents:
                await agent.gone.wait()
        assert {agent.closed_code for agent in connected.agents} == {1012}
        assert all(agent.stream is not None and agent.stream.socket.fileno() == -1
                   for agent in connected.agents)
