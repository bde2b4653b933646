"""The conversation actor as a shell, with in-memory ports over a real store (each
backend): it loads the stored state, lets the rules decide, commits the decision in one
transaction, and only then carries it out (queues told, frames pushed, slots released,
timer armed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
from livechat_fakes import GROUP, ORG, FakePorts, pending, running

from actors.conversation import ConversationActor
from actors.messages import (
    Accept,
    Accepted,
    CreateRequest,
    Dequeue,
    End,
    Enqueue,
    GetState,
    MemberGuard,
    PostMessage,
    PostResult,
    Recover,
    Release,
    Reserve,
    Timeout,
    Transfer,
)
from actors.presence import Presence
from lcx.config import TenantConfig
from lcx.errors import Conflict, Forbidden, NotFound
from lcx.model import AgentRef, Author, Conversation, iso, parse_iso, utc_now
from lcx.store import Store
from lcx.store.conversations import load_conversation, messages_after

ALICE = AgentRef(id="alice", name="Alice")
BOB = AgentRef(id="bob", name="Bob")
SUBSCRIBER = Author(type="subscriber")


pytest_plugins = ["support.stores"]


@pytest.fixture
def store(any_store: Store) -> Store:
    """An empty, migrated store of each backend (SQLite, PostgreSQL)."""
    return any_store


@pytest.fixture
def ports(store: Store) -> FakePorts:
    """In-memory ports over the store, with one tenant that receives bot events."""
    return FakePorts(store, tenants={"t1": TenantConfig(
        id="t1", organization_id=ORG, bot_events_url="http://bot.invalid/events")})


async def stored(store: Store, conversation_id: str = "c1") -> Conversation | None:
    return await store.read(lambda tx: load_conversation(tx, conversation_id))


async def outbox_types(store: Store) -> list[str]:
    rows = await store.read(lambda tx: tx.fetchall(
        "SELECT type FROM outbox ORDER BY event_no", ()))
    return [row["type"] for row in rows]


async def test_a_new_request_is_stored_then_queued_counted_and_timed(
        ports: FakePorts, store: Store) -> None:
    """CreateRequest: the row is in the store, the queue is told, the request timer runs."""
    request = pending(queued_at=iso(utc_now()))
    async with running(ConversationActor(ports, "c1")) as ref:
        answer = await ref.ask(CreateRequest(conversation=request))
    assert isinstance(answer, Conversation)
    assert answer.status == "pending"
    assert await stored(store) == answer
    assert ports.told_queues == [(GROUP, Enqueue(conversation=request))]
    assert ports.counted == ["requests_created"]
    delay, timeout = ports.armed["c1"]
    assert timeout.kind == "request"
    assert 119 <= delay <= 120


async def test_a_refused_command_stores_and_tells_nothing(ports: FakePorts,
                                                          store: Store) -> None:
    """An End for a conversation that does not exist is NotFound; no effect escapes."""
    async with running(ConversationActor(ports, "c1")) as ref:
        with pytest.raises(NotFound):
            await ref.ask(End(by="agent", agent=ALICE))
    assert await stored(store) is None
    assert (ports.told_queues, ports.told_agents, ports.pushed, ports.counted) == \
        ([], [], [], [])


async def test_an_accept_commits_then_answers_with_the_waiting_messages(
        ports: FakePorts, store: Store) -> None:
    """Accept: stored active with its agent, the queued message handed over, a
    CONVERSATION_BEGIN bot event in the outbox (delivery woken), the inactivity timer."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(PostMessage(author=SUBSCRIBER, text="hello?"))
        accepted = await ref.ask(Accept(agent=ALICE))
    assert isinstance(accepted, Accepted)
    assert [m.text for m in accepted.messages] == ["hello?"]
    row = await stored(store)
    assert row is not None
    assert row.status == "active"
    assert row.agent_id == "alice"
    assert accepted.conversation == row
    assert "CONVERSATION_BEGIN" in await outbox_types(store)
    assert "c1" in ports.woken
    assert ports.armed["c1"][1].kind == "inactivity"


async def test_an_agent_message_is_stored_then_pushed_to_the_agents(
        ports: FakePorts, store: Store) -> None:
    """PostMessage in an active conversation: stored with its seq, one frame per agent."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        result = await ref.ask(PostMessage(author=Author(type="agent", id="alice"),
                                           text="hi"))
    assert isinstance(result, PostResult)
    assert result.seq == 1
    log = await store.read(lambda tx: messages_after(tx, "c1", 0))
    assert [(m.seq, m.text) for m in log] == [(1, "hi")]
    frames = ports.pushed_frames()
    assert [(agent, frame["type"], frame["data"]["text"]) for agent, frame in frames] == \
        [("alice", "message", "hi")]
    assert ports.counted.count("messages_stored") == 1


async def test_a_resend_with_the_same_client_id_is_stored_once(ports: FakePorts,
                                                               store: Store) -> None:
    """The second PostMessage with the same client id gets the first answer, and the log
    holds one message."""
    post = PostMessage(author=SUBSCRIBER, text="once", client_id="m-1",
                       idempotency_scope="bot:t1")
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        first = await ref.ask(post)
        again = await ref.ask(post)
    assert first == again
    assert len(await store.read(lambda tx: messages_after(tx, "c1", 0))) == 1


async def test_ending_releases_the_slots_tells_the_agents_and_stops_the_timer(
        ports: FakePorts, store: Store) -> None:
    """End of an active conversation: stored ended, CONVERSATION_END pushed, every
    participant's slot released, no timer left."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        ended = await ref.ask(End(by="agent", agent=ALICE))
    assert ended.status == "ended"
    assert (await stored(store)) == ended
    assert [frame["event"] for _, frame in ports.pushed_frames()] == ["CONVERSATION_END"]
    assert ports.told_agents == [("alice", Release(conversation_id="c1"))]
    assert "c1" not in ports.armed
    assert "CONVERSATION_END" in await outbox_types(store)


async def test_cancelling_a_pending_request_takes_it_out_of_its_queue(
        ports: FakePorts, store: Store) -> None:
    """End while pending: stored cancelled, the queue told to drop it."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(End(by="subscriber"))
    row = await stored(store)
    assert row is not None
    assert row.status == "cancelled"
    assert ports.told_queues[-1] == (GROUP, Dequeue(conversation_id="c1", why="cancelled"))


async def test_the_armed_request_timeout_marks_the_request_missed(
        ports: FakePorts, store: Store) -> None:
    """The Timeout the shell armed, delivered when due: missed, stored, dequeued, counted;
    a stale Timeout (another deadline) changes nothing and re-arms the current one."""
    long_ago = iso(utc_now() - timedelta(hours=1))
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=long_ago)))
        delay, due = ports.armed["c1"]
        assert delay == 0.0
        await ref.ask(Timeout(kind="request", deadline=iso(utc_now())))  # not the one armed
        assert (await stored(store)).status == "pending"  # type: ignore[union-attr]
        await ref.ask(due)
    row = await stored(store)
    assert row is not None
    assert row.status == "missed"
    assert ports.told_queues[-1] == (GROUP, Dequeue(conversation_id="c1", why="missed"))
    assert "requests_missed" in ports.counted
    assert "c1" not in ports.armed


async def test_a_transfer_to_an_agent_reserves_the_target_slot_before_committing(
        ports: FakePorts, store: Store) -> None:
    """The target's slot is reserved (not as an assignment), then the hand-over is stored."""
    ports.presences["bob"] = Presence(org_id=ORG, agent_id="bob", status="online",
                                      name="Bob", groups=(GROUP,))
    ports.free_slots["bob"] = 1
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        moved = await ref.ask(Transfer(agent=ALICE, to_agent_id="bob"))
    assert ports.reserves == [("bob", Reserve(conversation_id="c1", limit=3,
                                              assigned=False))]
    assert moved.agent_id == "bob"
    assert (await stored(store)) == moved
    assert ("alice", Release(conversation_id="c1")) in ports.told_agents


async def test_a_transfer_to_an_agent_without_a_free_slot_changes_nothing(
        ports: FakePorts, store: Store) -> None:
    """No slot: Conflict, and the conversation stays with its agent."""
    ports.presences["bob"] = Presence(org_id=ORG, agent_id="bob", status="online")
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        before = await stored(store)
        with pytest.raises(Conflict, match="no free chat slot"):
            await ref.ask(Transfer(agent=ALICE, to_agent_id="bob"))
        assert await ref.ask(GetState()) == before
    assert await stored(store) == before
    assert ports.told_agents == []


async def test_a_new_actor_loads_the_stored_state(ports: FakePorts, store: Store) -> None:
    """Activation reads the row: a conversation stored by an earlier actor answers as
    stored, and its timer is armed again."""
    async with running(ConversationActor(ports, "c1")) as ref:
        created = await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
    ports.armed.clear()
    async with running(ConversationActor(ports, "c1")) as ref:
        assert await ref.ask(GetState()) == created
    assert ports.armed["c1"][1].kind == "request"



async def test_the_timer_is_not_armed_again_when_its_deadline_did_not_change(
        ports: FakePorts, store: Store) -> None:
    """Reads and a pending request's messages leave the deadline where it was: the timer
    armed first is not armed again, and it still fires (the request is missed); a stale
    Timeout or a Recover arms it again."""
    long_ago = iso(utc_now() - timedelta(hours=1))
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=long_ago)))
        assert ports.arms == 1
        first = ports.armed["c1"]
        await ref.ask(GetState())
        await ref.ask(GetState(fresh=True))
        await ref.ask(PostMessage(author=SUBSCRIBER, text="still there?"))
        assert ports.arms == 1
        assert ports.armed["c1"] == first
        await ref.ask(Timeout(kind="request", deadline=iso(utc_now())))  # stale: re-armed
        assert ports.arms == 2
        await ref.ask(Recover())
        assert ports.arms == 3
        await ref.ask(first[1])
    row = await stored(store)
    assert row is not None
    assert row.status == "missed"
    assert "c1" not in ports.armed


async def test_activity_pushes_the_inactivity_deadline_back_without_arming_per_message(
        ports: FakePorts, store: Store) -> None:
    """Messages move an active conversation's inactivity deadline later without arming the
    timer again: the one armed at the accept fires first, is found stale (the conversation
    stays active) and the deadline after the last message is armed then."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        armed = ports.arms
        first = ports.armed["c1"][1]
        await trio.sleep(0.002)  # a later millisecond than the accept's
        await ref.ask(PostMessage(author=SUBSCRIBER, text="one"))
        await trio.sleep(0.002)  # a later millisecond: a later last activity
        await ref.ask(PostMessage(author=SUBSCRIBER, text="two"))
        assert ports.arms == armed
        await ref.ask(first)  # the earlier deadline comes: stale
        row = await stored(store)
        assert row is not None
        assert row.status == "active"
        assert ports.arms == armed + 1
        timeout = ports.armed["c1"][1]
        assert timeout.kind == "inactivity"
        assert timeout.deadline > first.deadline
        settings = await ports.settings(row.org_id)
        assert timeout.deadline == iso(parse_iso(row.last_activity_at) + timedelta(
            seconds=settings.inactivity_timeout_seconds))


async def test_a_guarded_message_is_refused_unless_its_agent_is_in_the_conversation(
        ports: FakePorts, store: Store) -> None:
    """The agent API's membership check, made by the actor in the same hop: another
    organization is NotFound, an agent not (or no longer) in it Forbidden, a supervisor
    of the organization may write; a refused message stores nothing."""
    agent = Author(type="agent", id="bob", name="Bob")
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        await ref.ask(Accept(agent=ALICE))
        with pytest.raises(NotFound, match="no such conversation"):
            await ref.ask(PostMessage(author=agent, text="x", guard=MemberGuard(
                org_id="elsewhere", agent_id="alice")))
        with pytest.raises(Forbidden, match="not in this conversation"):
            await ref.ask(PostMessage(author=agent, text="x", guard=MemberGuard(
                org_id=ORG, agent_id="bob")))
        posted = await ref.ask(PostMessage(author=agent, text="from the supervisor",
                                           guard=MemberGuard(org_id=ORG, agent_id="bob",
                                                             supervisor=True)))
        mine = await ref.ask(PostMessage(
            author=Author(type="agent", id="alice"), text="mine",
            guard=MemberGuard(org_id=ORG, agent_id="alice")))
    assert (posted.seq, mine.seq) == (1, 2)
    texts = [m.text for m in await store.read(lambda tx: messages_after(tx, "c1", 0))]
    assert texts == ["from the supervisor", "mine"]


async def test_a_guard_refused_by_a_stale_memory_is_checked_on_the_stored_state(
        ports: FakePorts, store: Store) -> None:
    """Another owner accepted the request meanwhile (the store says so, this memory does
    not): the agent's guarded message is obeyed, not refused."""
    async with running(ConversationActor(ports, "c1")) as ref:
        await ref.ask(CreateRequest(conversation=pending(queued_at=iso(utc_now()))))
        async with running(ConversationActor(ports, "c1")) as other:
            await other.ask(Accept(agent=ALICE))
        posted = await ref.ask(PostMessage(
            author=Author(type="agent", id="alice"), text="hello",
            guard=MemberGuard(org_id=ORG, agent_id="alice")))
    assert posted.seq == 1
