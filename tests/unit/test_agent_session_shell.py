"""The agent session actor as a shell, with in-memory ports over a real store (each
backend): it reloads the agent's chats from the store, announces presence to the cluster
and to the agent's queues, fans frames out to every socket (cutting one that cannot keep
up), and holds the agent's chat-slot limit."""

from __future__ import annotations

import msgspec
import pytest
from livechat_fakes import GROUP, ORG, FakeBus, FakePorts, FakeSink, pending, running

from actors.agent_session import (
    FRAME_TOPIC,
    SLOTS_RELOAD_REFRESHES,
    AgentSessionActor,
    Refresh,
    RelayedFrame,
)
from actors.messages import (
    AgentPresence,
    AgentState,
    Connect,
    Disconnect,
    Push,
    Release,
    Reserve,
    SetStatus,
)
from lcx.store import Store, Tx
from lcx.store.conversations import insert_conversation

pytest_plugins = ["support.stores"]


@pytest.fixture
def store(any_store: Store) -> Store:
    """An empty, migrated store of each backend (SQLite, PostgreSQL)."""
    return any_store


@pytest.fixture
def ports(store: Store) -> FakePorts:
    """In-memory ports over the store."""
    return FakePorts(store)


def session(ports: FakePorts) -> AgentSessionActor:
    return AgentSessionActor(ports, ORG, "alice")


def connect(socket_id: str, sink: FakeSink | None = None, **fields: object) -> Connect:
    return Connect(socket_id=socket_id, sink=sink, name="Alice", groups=(GROUP,),
                   **fields)  # type: ignore[arg-type]


def queue_presence(ports: FakePorts) -> list[tuple[str, str, int]]:
    """(status, group, active) of every AgentPresence told to a queue."""
    return [(m.status, group, m.active) for group, m in ports.told_queues
            if isinstance(m, AgentPresence)]


async def test_activation_reloads_the_agents_active_chats(ports: FakePorts,
                                                          store: Store) -> None:
    """The chats the store says the agent handles fill its slots at activation."""
    active = msgspec.structs.replace(pending("c1"), status="active", agent_id="alice",
                                     accepted_at="2026-12-03T06:00:01.000Z")

    def write(tx: Tx) -> None:
        insert_conversation(tx, active)
        insert_conversation(tx, pending("c2"))

    await store.transaction(write)
    async with running(session(ports)) as ref:
        assert await ref.ask(AgentState()) == ("offline", ["c1"])


async def test_a_first_socket_brings_the_agent_online_everywhere(ports: FakePorts) -> None:
    """Connect: online, announced to the cluster and told to each of the agent's queues;
    the last Disconnect takes it offline the same way."""
    async with running(session(ports)) as ref:
        answer = await ref.ask(connect("s1", FakeSink()))
        await ref.ask(connect("s2", FakeSink()))
        await ref.ask(Disconnect(socket_id="s1"))
        assert await ref.ask(AgentState()) == ("online", [])
        await ref.ask(Disconnect(socket_id="s2"))
        assert await ref.ask(AgentState()) == ("offline", [])
    assert answer == {"status": "online", "active": []}
    assert [p.status for p in ports.announced] == ["online", "offline"]
    assert ports.announced[0].name == "Alice"
    assert ports.announced[0].groups == (GROUP,)
    assert queue_presence(ports) == [("online", GROUP, 0), ("offline", GROUP, 0)]


async def test_a_pushed_frame_reaches_every_socket(ports: FakePorts) -> None:
    """Push: the same bytes offered to each socket of the agent."""
    tabs = FakeSink(), FakeSink()
    async with running(session(ports)) as ref:
        for n, sink in enumerate(tabs):
            await ref.ask(connect(f"s{n}", sink))
        await ref.ask(Push(frame=b'{"type":"ping"}'))
    assert [sink.frames for sink in tabs] == [[b'{"type":"ping"}'], [b'{"type":"ping"}']]


async def test_a_socket_that_cannot_keep_up_is_cut_and_counted(ports: FakePorts) -> None:
    """A sink that refuses a frame is cut off and forgotten; the others keep theirs."""
    slow, fast = FakeSink(room=0), FakeSink()
    async with running(session(ports)) as ref:
        await ref.ask(connect("slow", slow))
        await ref.ask(connect("fast", fast))
        await ref.ask(Push(frame=b"x"))
        await ref.ask(Push(frame=b"y"))
        assert (await ref.ask(AgentState()))[0] == "online"
    assert slow.cut_reason == "too many frames queued"
    assert ports.slow_consumers == 1
    assert fast.frames == [b"x", b"y"]


async def test_a_socket_held_elsewhere_is_reached_over_the_bus(store: Store) -> None:
    """A Connect from another instance: frames for that socket are published to it."""
    ports = FakePorts(store, bus=FakeBus("i1", members=("i1", "i2")))
    async with running(session(ports)) as ref:
        await ref.ask(connect("far", instance_id="i2"))
        await ref.ask(Push(frame=b"hello"))
    assert [(instance, topic, msgspec.msgpack.decode(payload, type=RelayedFrame).frame)
            for instance, topic, payload in ports.bus.published] == \
        [("i2", FRAME_TOPIC, b"hello")]


async def test_a_socket_held_here_is_found_in_the_directory(ports: FakePorts) -> None:
    """A Connect without a sink but from this instance uses the socket directory's sink."""
    ports.sinks["s1"] = sink = FakeSink()
    async with running(session(ports)) as ref:
        await ref.ask(connect("s1", instance_id="i1"))
        await ref.ask(Push(frame=b"near"))
    assert sink.frames == [b"near"]
    assert ports.bus.published == []


async def test_slots_hold_the_limit_and_free_on_release(ports: FakePorts) -> None:
    """Reserve grants up to the limit (a retried reserve succeeds); Release frees a slot
    and tells the queues the new load."""
    async with running(session(ports)) as ref:
        await ref.ask(connect("s1", FakeSink()))
        assert await ref.ask(Reserve(conversation_id="c1", limit=1, assigned=True))
        assert await ref.ask(Reserve(conversation_id="c1", limit=1, assigned=True))
        assert not await ref.ask(Reserve(conversation_id="c2", limit=1, assigned=True))
        await ref.ask(Release(conversation_id="c1"))
        assert await ref.ask(Reserve(conversation_id="c2", limit=1, assigned=True))
        after_release = queue_presence(ports)[-1]
        assert await ref.ask(AgentState()) == ("online", ["c2"])
    assert after_release == ("online", GROUP, 0)


async def test_an_away_agent_may_accept_but_is_not_assigned(ports: FakePorts) -> None:
    """Away: an assignment is refused, an accept the agent asked for is granted; an agent
    connected nowhere cannot go online."""
    async with running(session(ports)) as ref:
        assert await ref.ask(SetStatus(status="online")) == "offline"
        await ref.ask(connect("s1", FakeSink()))
        assert await ref.ask(SetStatus(status="away")) == "away"
        assert queue_presence(ports)[-1][0] == "away"
        assert not await ref.ask(Reserve(conversation_id="c1", limit=3, assigned=True))
        assert await ref.ask(Reserve(conversation_id="c1", limit=3, assigned=False))
    assert ports.announced[-1].status == "offline"  # stopping takes it offline


async def test_a_lost_release_is_repaired_by_the_slot_reload_once_a_minute(
        ports: FakePorts, store: Store) -> None:
    """A slot whose Release never came (a dropped post) stays taken through the refreshes
    that only re-announce, and is given back by the one that reloads the slots from the
    store (every SLOTS_RELOAD_REFRESHES-th): idle sessions do not read the store each
    period."""
    active = msgspec.structs.replace(pending("c1"), status="active", agent_id="alice",
                                     accepted_at="2026-12-03T06:00:01.000Z")
    await store.transaction(lambda tx: insert_conversation(tx, active))
    async with running(session(ports)) as ref:
        await ref.ask(connect("s1", FakeSink()))
        assert await ref.ask(Reserve(conversation_id="c9", limit=3, assigned=True))
        for _ in range(SLOTS_RELOAD_REFRESHES - 1):
            await ref.ask(Refresh())
            assert await ref.ask(AgentState()) == ("online", ["c1", "c9"])
        announced = len(queue_presence(ports))
        await ref.ask(Refresh())
        assert await ref.ask(AgentState()) == ("online", ["c1"])
        assert queue_presence(ports)[announced:] == [("online", GROUP, 1)]
