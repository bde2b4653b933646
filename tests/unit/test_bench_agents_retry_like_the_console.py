"""The reconnecting bench agents behave as the console does: an attempt that fails is
tried again after the console's backoff (half to all of 0.5 s, doubling up to 10 s),
every failed attempt is reported, and a refused token (4401) is not tried again. An
``ERROR`` instead of ``AUTHORIZATION_GRANTED`` is a failed attempt, not an agent in."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit import Agent, Frame, agents_connected, console_backoff

GRANTED = '{"type":"event","event":"AUTHORIZATION_GRANTED","data":{}}'
UNAVAILABLE = '{"type":"event","event":"ERROR","data":{"code":"unavailable"}}'
UNAUTHORIZED = '{"type":"event","event":"ERROR","data":{"code":"unauthorized"}}'
NAMES = ["agent-0", "agent-1", "agent-2"]


def _ignore(agent: Agent, frame: Frame) -> None:
    """The agents do nothing with their frames."""


def test_the_backoff_is_the_consoles() -> None:
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (9, 10.0)]:
        for _ in range(50):
            assert ceiling / 2 <= console_backoff(attempt) <= ceiling


async def test_a_refused_first_attempt_is_tried_again_and_reported(
        nursery: trio.Nursery) -> None:
    seen = 0

    async def refuse_the_first_ones(request: WebSocketRequest) -> None:
        nonlocal seen
        seen += 1
        ws = await request.accept()
        if seen <= len(NAMES):  # every agent's first attempt comes before any retry
            await ws.send_message(UNAVAILABLE)  # as lcx does when a session is unreachable
            await ws.aclose(1013, "try again later")
            return
        await ws.send_message(GRANTED)
        with contextlib.suppress(ConnectionClosed):
            await ws.get_message()  # until the agent leaves

    server = await nursery.start(serve_websocket, refuse_the_first_ones, "127.0.0.1", 0,
                                 None)
    async with agents_connected(nursery, f"http://127.0.0.1:{server.port}", NAMES,
                                _ignore, at_once=len(NAMES), retry=True) as connected:
        assert sorted(agent.name for agent in connected.agents) == NAMES
        assert connected.failures == []
        assert sorted(attempt.split(":")[0] for attempt in connected.failed_attempts) \
            == NAMES
        assert all("ERROR unavailable and closed (1013)" in attempt
                   for attempt in connected.failed_attempts)


@pytest.mark.parametrize("retry", [True, False])
async def test_a_refused_token_is_not_tried_again(nursery: trio.Nursery,
                                                  retry: bool) -> None:
    async def refuse(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(UNAUTHORIZED)
        await ws.aclose(4401, "unauthorized")

    server = await nursery.start(serve_websocket, refuse, "127.0.0.1", 0, None)
    async with agents_connected(nursery, f"http://127.0.0.1:{server.port}", NAMES,
                                _ignore, retry=retry) as connected:
        assert connected.agents == []
        assert len(connected.failures) == len(connected.failed_attempts) == len(NAMES)
