"""The queue actor as a shell, with in-memory ports over a real store (each backend): it
rebuilds its pending list from the store, offers or assigns requests by the routing rules
(a slot reserved in the agent's session before the conversation accepts), and tells
agents."""

from __future__ import annotations

from collections.abc import Container

import msgspec
import pytest
from livechat_fakes import GROUP, ORG, FakePorts, pending, running

from actors.messages import (
    AcceptRequest,
    AgentPresence,
    Dequeue,
    Enqueue,
    Position,
    QueueStats,
    Release,
    Reserve,
    Resync,
)
from actors.presence import Presence
from actors.queue import OFFER_PAGE, QueueActor
from lcx.errors import Conflict
from lcx.livechat.queue import QueueBook, QueuedAgent
from lcx.livechat.settings import LivechatSettings
from lcx.model import AgentRef, Context, Conversation, Subscriber
from lcx.store import Store, Tx
from lcx.store.conversations import insert_conversation, load_conversation, save_conversation

ALICE = AgentRef(id="alice", name="Alice")
EARLY = "2026-12-03T06:00:00.000Z"
LATER = "2026-12-03T06:00:05.000Z"
AUTO = LivechatSettings(routing="auto", max_concurrent_chats=1)


pytest_plugins = ["support.stores"]


@pytest.fixture
def store(any_store: Store) -> Store:
    """An empty, migrated store of each backend (SQLite, PostgreSQL)."""
    return any_store


def online(*agent_ids: str) -> dict[str, Presence]:
    return {a: Presence(org_id=ORG, agent_id=a, status="online", name=a.title(),
                        groups=(GROUP,)) for a in agent_ids}


async def stored(store: Store, *requests: Conversation) -> None:
    def write(tx: Tx) -> None:
        for request in requests:
            insert_conversation(tx, request)
    await store.transaction(write)


def notifications(ports: FakePorts) -> list[tuple[str, str, str | None]]:
    """(agent, kind, request id) of every NOTIFICATION pushed."""
    return [(agent, frame["data"]["kind"], frame["data"].get("requestId"))
            for agent, frame in ports.pushed_frames()]


def rankings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the limit of every look for the least-loaded free agent."""
    ranked: list[int] = []
    plain = QueueBook.least_loaded

    def counting(self: QueueBook, limit: int, skip: Container[str] = ()
                 ) -> QueuedAgent | None:
        ranked.append(limit)
        return plain(self, limit, skip)
    monkeypatch.setattr(QueueBook, "least_loaded", counting)
    return ranked


def queue(ports: FakePorts) -> QueueActor:
    return QueueActor(ports, ORG, GROUP)


async def test_activation_rebuilds_the_pending_list_from_the_store(store: Store) -> None:
    """A new queue actor knows the stored pending requests, oldest first."""
    await stored(store, pending("c2", queued_at=LATER), pending("c1", queued_at=EARLY))
    ports = FakePorts(store, presences=online("alice"))
    async with running(queue(ports)) as ref:
        assert await ref.ask(QueueStats()) == (2, 1)
        assert (await ref.ask(Position(conversation_id="c1")))[0] == 1
        assert (await ref.ask(Position(conversation_id="c2")))[0] == 2


async def test_broadcast_offers_a_new_request_to_every_online_agent(store: Store) -> None:
    """Enqueue under broadcast routing: one request_created per online agent, no slot
    taken, nobody assigned."""
    ports = FakePorts(store, presences=online("alice", "bob"))
    async with running(queue(ports)) as ref:
        await ref.ask(Enqueue(conversation=pending("c1")))
    assert sorted(notifications(ports)) == [("alice", "request_created", "r-c1"),
                                            ("bob", "request_created", "r-c1")]
    assert ports.reserves == []


async def test_periodic_reports_keep_the_broadcast_audience_until_who_is_online_changes(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Broadcast: the online agents' ids are listed once and kept while reports only
    repeat what is known (every agent reports every period: rebuilding the list after
    each would cost O(agents) per request); one going away is not offered the next."""
    listed: list[int] = []
    plain = QueueBook.online

    def counting(self: QueueBook) -> list[QueuedAgent]:
        listed.append(1)
        return plain(self)
    monkeypatch.setattr(QueueBook, "online", counting)
    bob = AgentRef(id="bob", name="Bob")
    ports = FakePorts(store, presences=online("alice", "bob"))
    async with running(queue(ports)) as ref:
        await ref.ask(Enqueue(conversation=pending("c1")))
        built = len(listed)
        for _ in range(3):
            await ref.ask(AgentPresence(agent=ALICE, status="online", active=1))
        await ref.ask(Enqueue(conversation=pending("c2")))
        assert len(listed) == built
        await ref.ask(AgentPresence(agent=bob, status="away", active=0))
        await ref.ask(Enqueue(conversation=pending("c3")))
    assert sorted(notifications(ports)) == [
        ("alice", "request_created", "r-c1"), ("alice", "request_created", "r-c2"),
        ("alice", "request_created", "r-c3"), ("bob", "request_created", "r-c1"),
        ("bob", "request_created", "r-c2")]


async def test_an_agent_coming_online_is_offered_what_waits(store: Store) -> None:
    """Broadcast: an agent that comes online is offered every pending request."""
    await stored(store, pending("c1"))
    ports = FakePorts(store)
    async with running(queue(ports)) as ref:
        await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
    assert notifications(ports) == [("alice", "request_created", "r-c1")]


async def test_auto_routing_reserves_a_slot_then_accepts_then_tells_the_agent(
        store: Store) -> None:
    """Auto routing: the slot is reserved as an assignment before the accept, and the
    agent gets request_assigned."""
    await stored(store, pending("c1"))
    ports = FakePorts(store, org_settings=AUTO, presences=online("alice"),
                      free_slots={"alice": 1})
    async with running(queue(ports)) as ref:
        await ref.ask(Enqueue(conversation=pending("c1")))
        assert await ref.ask(QueueStats()) == (0, 1)
    assert ports.reserves == [("alice", Reserve(conversation_id="c1", limit=1,
                                                assigned=True))]
    assert [(c, a.agent.id, a.assigned) for c, a in ports.accepts] == [("c1", "alice", True)]
    assert notifications(ports) == [("alice", "request_assigned", "r-c1")]


async def test_auto_routing_assigns_in_arrival_order(store: Store) -> None:
    """FIFO: with one free slot, the oldest request is assigned and the newer one waits."""
    await stored(store, pending("c2", queued_at=LATER), pending("c1", queued_at=EARLY))
    ports = FakePorts(store, org_settings=AUTO, presences=online("alice"),
                      free_slots={"alice": 1})
    async with running(queue(ports)) as ref:
        await ref.ask(Enqueue(conversation=pending("c2", queued_at=LATER)))
        assert await ref.ask(QueueStats()) == (1, 1)
        assert (await ref.ask(Position(conversation_id="c2")))[0] == 1
    assert [c for c, _ in ports.accepts] == ["c1"]


async def test_a_full_agents_presence_report_ranks_no_agents(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto routing with requests waiting: the report of an agent with no free slot
    changes nothing that can be routed, so it ranks nobody (a long queue behind busy
    agents would otherwise sort every online agent on every report); the report that
    shows a free slot assigns the oldest request."""
    await stored(store, pending("c1"))
    ports = FakePorts(store, org_settings=AUTO, presences=online("alice"),
                      free_slots={"alice": 1})
    async with running(queue(ports)) as ref:
        ranked = rankings(monkeypatch)
        for _ in range(3):
            await ref.ask(AgentPresence(agent=ALICE, status="online", active=1))
        assert ranked == []
        assert ports.accepts == []
        await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
        assert ranked
    assert [c for c, _ in ports.accepts] == ["c1"]


async def test_a_failed_accept_gives_the_reserved_slot_back(store: Store) -> None:
    """AcceptRequest whose conversation refuses: Conflict, and the slot is released."""
    await stored(store, pending("c1"))
    ports = FakePorts(store, presences=online("alice"), free_slots={"alice": 1},
                      refuse_accept=True)
    async with running(queue(ports)) as ref:
        with pytest.raises(Conflict):
            await ref.ask(AcceptRequest(conversation_id="c1", agent=ALICE))
    assert ports.told_agents == [("alice", Release(conversation_id="c1"))]


async def test_an_accept_without_a_free_slot_is_refused_before_the_conversation_is_asked(
        store: Store) -> None:
    """No slot: refused with maxConcurrentChats, the conversation is never asked."""
    await stored(store, pending("c1"))
    ports = FakePorts(store, presences=online("alice"))
    async with running(queue(ports)) as ref:
        with pytest.raises(Conflict, match="no free chat slot"):
            await ref.ask(AcceptRequest(conversation_id="c1", agent=ALICE))
    assert ports.accepts == []


async def test_a_request_the_queue_was_never_told_of_is_found_in_the_store(
        store: Store) -> None:
    """AcceptRequest for a request stored after activation (its Enqueue lost): the store
    says it waits here, so it is accepted, and the other agents are told it is taken."""
    ports = FakePorts(store, presences=online("alice", "bob"), free_slots={"alice": 1})
    async with running(queue(ports)) as ref:
        await stored(store, pending("c1"))
        accepted = await ref.ask(AcceptRequest(conversation_id="c1", agent=ALICE))
    assert accepted.conversation.agent_id == "alice"
    assert notifications(ports) == [("bob", "request_accepted", "r-c1")]


async def test_a_cancelled_request_is_withdrawn_from_the_agents(store: Store) -> None:
    """Dequeue(cancelled): the agents are told request_cancelled; moved says nothing."""
    await stored(store, pending("c1"), pending("c2"))
    ports = FakePorts(store, presences=online("alice"))
    async with running(queue(ports)) as ref:
        await ref.ask(Dequeue(conversation_id="c1", why="cancelled"))
        await ref.ask(Dequeue(conversation_id="c2", why="moved"))
        assert await ref.ask(QueueStats()) == (0, 1)
    assert notifications(ports) == [("alice", "request_cancelled", "r-c1")]


def at_second(n: int) -> str:
    """A queuedAt ``n`` seconds after 06:00 (distinct, increasing)."""
    return f"2026-12-03T{6 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"


async def test_an_offer_after_a_restart_carries_the_stored_request(store: Store) -> None:
    """The book keeps places only: an agent coming online after activation is offered the
    request with its subscriber and context, loaded from the store."""
    rich = msgspec.structs.replace(pending("c1"), subscriber=Subscriber(name="Ada L."),
                                   context=Context(metadata={"plan": "gold"}))
    await stored(store, rich)
    ports = FakePorts(store)
    async with running(queue(ports)) as ref:
        await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
    [(agent, frame)] = ports.pushed_frames()
    data = frame["data"]
    assert agent == "alice"
    assert data["requestId"] == "r-c1"
    assert data["subscriber"]["name"] == "Ada L."
    assert data["context"]["metadata"] == {"plan": "gold"}


async def test_an_agent_coming_online_is_offered_every_one_of_many_in_order(
        store: Store) -> None:
    """More than a page waits: the agent is offered each once, oldest first, a page at
    a time, and the queue answers between pages."""
    count = 2 * OFFER_PAGE + 5
    await stored(store, *(pending(f"c{n:04d}", queued_at=at_second(n)) for n in range(count)))
    ports = FakePorts(store)
    async with running(queue(ports)) as ref:
        await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
        assert await ref.ask(QueueStats()) == (count, 1)
        for _ in range(count // OFFER_PAGE + 1):
            await ref.ask(QueueStats())  # the next pages go through the mailbox meanwhile
    assert notifications(ports) == [("alice", "request_created", f"r-c{n:04d}")
                                    for n in range(count)]


async def test_a_resync_repairs_lost_enqueues_and_dequeues(store: Store) -> None:
    """A request stored without its Enqueue, and one cancelled without its Dequeue: the
    periodic resync makes the book the store's view, places and positions right."""
    await stored(store, pending("c1", queued_at=EARLY), pending("c3", queued_at=LATER))
    ports = FakePorts(store, presences=online("alice"))
    async with running(queue(ports)) as ref:
        await stored(store, pending("c2", queued_at="2026-12-03T06:00:02.000Z"))

        def cancel(tx: Tx) -> None:
            before = load_conversation(tx, "c1")
            assert before is not None
            save_conversation(tx, msgspec.structs.replace(before, status="cancelled"),
                              expected=before)
        await store.transaction(cancel)
        await ref.ask(Resync())
        assert await ref.ask(QueueStats()) == (2, 1)
        assert (await ref.ask(Position(conversation_id="c2")))[0] == 1
        assert (await ref.ask(Position(conversation_id="c3")))[0] == 2
        assert (await ref.ask(Position(conversation_id="c1")))[0] is None



async def test_a_presence_report_with_nothing_waiting_looks_at_no_agent(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto routing: an agent's periodic report to a queue where nothing waits returns
    without ranking the online agents (each report would cost O(agents), and every agent
    reports every period); a request that waits is still assigned."""
    ranked = rankings(monkeypatch)
    ports = FakePorts(store, org_settings=AUTO, presences=online("alice"),
                      free_slots={"alice": 1})
    async with running(queue(ports)) as ref:
        for _ in range(3):
            await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
        assert ranked == []
        await stored(store, pending("c1"))
        await ref.ask(Resync())
        await ref.ask(AgentPresence(agent=ALICE, status="online", active=0))
        assert ranked
    assert [c for c, _ in ports.accepts] == ["c1"]
