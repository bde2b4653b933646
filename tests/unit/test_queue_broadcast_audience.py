"""Broadcast routing passes one tuple of its online agents for as long as nobody comes
online or goes away or offline (the fan-out joins broadcasts to the same audience by
identity), and a presence change is seen by the next broadcast and the next position."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from livechat_fakes import GROUP, ORG, FakePorts, pending, running

from actors.messages import AgentPresence, Enqueue, Position
from actors.presence import Presence
from actors.queue import QueueActor
from lcx.model import AgentRef
from lcx.store import Store

pytest_plugins = ["support.stores"]


class RecordingPorts(FakePorts):
    """Fake ports that also keep the agent ids each broadcast was given, as given."""

    def __init__(self, store: Store, presences: dict[str, Presence]) -> None:
        super().__init__(store, presences=presences)
        self.audiences: list[Iterable[str]] = []

    def push_to_agents(self, org_id: str, agent_ids: Iterable[str], frame: bytes) -> None:
        self.audiences.append(agent_ids)
        super().push_to_agents(org_id, agent_ids, frame)


def _online(*agent_ids: str) -> dict[str, Presence]:
    return {a: Presence(org_id=ORG, agent_id=a, status="online", name=a.title(),
                        groups=(GROUP,)) for a in agent_ids}


@pytest.fixture
def store(any_store: Store) -> Store:
    """An empty, migrated store of each backend (SQLite, PostgreSQL)."""
    return any_store


async def test_the_audience_follows_presence(store: Store) -> None:
    """Two requests with alice and bob online share one tuple; bob goes away, carol comes
    online: the next request goes to alice and carol (a new tuple), and positions divide
    by two online agents again."""
    ports = RecordingPorts(store, _online("alice", "bob"))
    async with running(QueueActor(ports, ORG, GROUP)) as ref:
        await ref.ask(Enqueue(conversation=pending("c1")))
        await ref.ask(Enqueue(conversation=pending("c2")))
        await ref.ask(AgentPresence(agent=AgentRef(id="bob", name="Bob"), status="away",
                                    active=0))
        await ref.ask(AgentPresence(agent=AgentRef(id="carol", name="Carol"),
                                    status="online", active=0))
        await ref.ask(Enqueue(conversation=pending("c3")))
        position, wait = await ref.ask(Position(conversation_id="c3"))
    first, second = ports.audiences[:2]
    assert first is second
    assert sorted(first) == ["alice", "bob"]
    assert ports.audiences[-1] is not first
    assert sorted(ports.audiences[-1]) == ["alice", "carol"]
    assert position == 3
    assert wait == round(30 * 3 / 2)
