"""The rules of one queue (lcx.livechat.queue.QueueBook): first come first served,
who may be assigned, presence, the learned wait and positions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec

from lcx.livechat.conversation import new_request
from lcx.livechat.queue import DEFAULT_WAIT_SECONDS, QueueBook, QueuedAgent, Waiting
from lcx.model import AgentRef, Conversation, Subscriber, parse_iso

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """The fixed start time plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def request(conversation_id: str, queued: float) -> Conversation:
    """A pending request named ``conversation_id`` queued ``queued`` seconds after T0."""
    ids = iter([conversation_id, f"r-{conversation_id}"])
    return new_request(org_id="o1", tenant_id="t1", sub_handle=f"u-{conversation_id}",
                       user_group_id="g1", provider="helvia", channel="bot",
                       now=at(queued), subscriber=Subscriber(name="Ada"),
                       ids=lambda: next(ids))


def book_with(*agents: tuple[str, str, int]) -> QueueBook:
    """A book that has heard of the agents given as (id, status, active chats)."""
    book = QueueBook()
    for agent_id, status, active in agents:
        book.heard(AgentRef(id=agent_id, name=agent_id.title()), status, active)
    return book


def test_requests_wait_in_order_of_queued_at_then_id() -> None:
    """Requests are kept oldest first by ``queuedAt``; equal times are ordered by id,
    whatever the order they were enqueued in."""
    book = QueueBook()
    for conversation in (request("c", 20), request("b", 10), request("a", 20),
                         request("d", 5)):
        book.enqueue(conversation)
    assert [w.id for w in book.in_order()] == ["d", "b", "a", "c"]


def test_enqueue_is_true_only_the_first_time() -> None:
    """Enqueue answers True for a request not yet waiting; a second enqueue refreshes the
    request's place and answers False."""
    book = QueueBook()
    first = request("a", 10)
    assert book.enqueue(first) is True
    book.enqueue(request("b", 20))
    requeued = msgspec.structs.replace(first, queued_at=request("z", 30).queued_at,
                                       subscriber=Subscriber(name="Ada L."))
    assert book.enqueue(requeued) is False
    assert [w.id for w in book.in_order()] == ["b", "a"]
    assert book.pending["a"] == Waiting(requeued.queued_at, "a", "r-a")


def test_dequeue_removes_a_waiting_request_once() -> None:
    """Dequeue answers the request it removed, then None."""
    book = QueueBook()
    waiting = request("a", 0)
    book.enqueue(waiting)
    assert book.dequeue("a") == Waiting.of(waiting)
    assert book.dequeue("a") is None
    assert book.pending == {}


def test_reload_replaces_the_waiting_requests_in_order() -> None:
    """Reload forgets what was waiting and keeps the store's rows, ordered."""
    book = QueueBook()
    book.enqueue(request("old", 0))
    book.reload([Waiting.of(request("y", 30)), Waiting.of(request("x", 10))])
    assert [w.id for w in book.in_order()] == ["x", "y"]


def test_the_book_keeps_places_only_and_orders_them_like_conversations() -> None:
    """What waits is kept as (queuedAt, id, request id), nothing of the subscriber or
    context; entries reloaded from places alone order and rank as the requests would."""
    rows = [request("c", 20), request("b", 10), request("a", 20), request("d", 5)]
    book = QueueBook()
    book.reload(Waiting(r.queued_at, r.id, r.request_id) for r in rows)
    assert [w.id for w in book.in_order()] == ["d", "b", "a", "c"]
    assert all(type(w) is Waiting for w in book.pending.values())
    assert book.position("a")[0] == 3
    assert book.pending["a"].request_id == "r-a"


def test_the_book_holds_the_stored_rows_only_when_they_are_exactly_what_waits() -> None:
    """``holds`` compares plain stored rows with the book: equal in order and content
    only; a missing, extra or moved request makes it False."""
    book = QueueBook()
    rows = [(r.queued_at, r.id, r.request_id) for r in (request("a", 1), request("b", 2))]
    book.reload(QueueBook.entries(rows))
    assert book.holds(rows) is True
    assert book.holds(rows[:1]) is False
    assert book.holds(rows[::-1]) is False
    assert book.holds([*rows, (request("c", 3).queued_at, "c", "r-c")]) is False
    assert book.holds([rows[0], (request("b", 5).queued_at, "b", "r-b")]) is False


def test_pages_walk_the_queue_in_order_while_it_changes() -> None:
    """A page starts after a place: walking three at a time gives every request once, in
    order, even when one already walked is removed and a newer one arrives meanwhile."""
    book = QueueBook()
    for n in range(7):
        book.enqueue(request(f"c{n}", n))
    first = book.page(None, 3)
    assert [w.id for w in first] == ["c0", "c1", "c2"]
    book.dequeue("c1")
    book.enqueue(request("c7", 7))
    after = (first[-1].queued_at, first[-1].id)
    second = book.page(after, 3)
    assert [w.id for w in second] == ["c3", "c4", "c5"]
    third = book.page((second[-1].queued_at, second[-1].id), 3)
    assert [w.id for w in third] == ["c6", "c7"]
    assert book.page((third[-1].queued_at, third[-1].id), 3) == []


def test_candidates_are_online_agents_under_the_limit_least_loaded_first() -> None:
    """Assignment candidates: only online agents with fewer active chats than the limit,
    least loaded first, ties by agent id."""
    book = book_with(("dora", "online", 1), ("bob", "online", 2), ("alice", "online", 1),
                     ("carl", "online", 3), ("eve", "away", 0))
    assert [a.ref.id for a in book.candidates(3)] == ["alice", "dora", "bob"]
    assert [a.ref.id for a in book.candidates(2)] == ["alice", "dora"]
    assert book.candidates(1) == []


def test_the_least_loaded_agent_is_the_first_candidate_in_one_pass() -> None:
    """``least_loaded`` answers what ``candidates`` would rank first (skipping the agents
    already tried), None when nobody is free."""
    book = book_with(("dora", "online", 1), ("bob", "online", 2), ("alice", "online", 1),
                     ("carl", "online", 3), ("eve", "away", 0))
    for limit in (1, 2, 3, 4):
        ranked = book.candidates(limit)
        first = book.least_loaded(limit)
        assert (first.ref.id if first else None) == (ranked[0].ref.id if ranked else None)
    second = book.least_loaded(3, skip={"alice"})
    assert second is not None
    assert second.ref.id == "dora"
    assert book.least_loaded(3, skip={"alice", "dora", "bob"}) is None


def test_the_ranking_follows_every_change_of_the_agents() -> None:
    """Through any mix of reports, accepts and full marks (thousands of changes, the heap
    compacted on the way), ``least_loaded`` answers what ranking every agent anew would."""
    rng = random.Random(11)
    book = QueueBook()
    ids = [f"a{n:02d}" for n in range(40)]
    for _ in range(5_000):
        agent_id = rng.choice(ids)
        roll = rng.random()
        if roll < 0.5:
            status = rng.choice(("online", "online", "away", "offline"))
            book.heard(AgentRef(id=agent_id, name=agent_id), status, rng.randrange(4))
        elif roll < 0.8:
            book.taken(Waiting("2026-12-04T00:00:00.000Z", "c", "r"), agent_id,
                       parse_iso("2026-12-04T00:00:01.000Z"))
        else:
            book.full(agent_id, rng.randrange(1, 5))
        limit = rng.randrange(1, 6)
        skip = set(rng.sample(ids, rng.randrange(3)))
        expected = [a for a in book.candidates(limit) if a.ref.id not in skip]
        found = book.least_loaded(limit, skip)
        assert (found.ref.id if found else None) == \
            (expected[0].ref.id if expected else None)
    assert len(book._ranked) <= 2 * len(book.agents) + 65


def test_online_excludes_away_agents() -> None:
    """Away agents are known but not online."""
    book = book_with(("alice", "online", 0), ("eve", "away", 0))
    assert [a.ref.id for a in book.online()] == ["alice"]
    assert set(book.agents) == {"alice", "eve"}


def test_heard_is_true_only_when_an_agent_comes_online() -> None:
    """Heard answers True when an agent is first heard online or goes from away to
    online; False for repeats, for away, and for offline (which forgets the agent)."""
    book = QueueBook()
    alice = AgentRef(id="alice", name="Alice")
    assert book.heard(alice, "online", 0) is True
    assert book.heard(alice, "online", 1) is False
    assert book.agents["alice"] == QueuedAgent(alice, "online", 1)
    assert book.heard(alice, "away", 1) is False
    assert book.heard(alice, "online", 1) is True
    assert book.heard(alice, "offline", 0) is False
    assert "alice" not in book.agents
    assert book.heard(AgentRef(id="eve"), "away", 0) is False
    assert book.heard(alice, "online", 0) is True


def test_taken_stops_the_wait_learns_the_average_and_loads_the_agent() -> None:
    """Taken: the request stops waiting, the average wait moves a fifth of the way to the
    time it waited, and the agent counts one more active chat."""
    book = book_with(("alice", "online", 1))
    waiting = request("a", 0)
    book.enqueue(waiting)
    book.taken(waiting, "alice", at(80))
    assert book.pending == {}
    assert book.average_wait == 0.8 * DEFAULT_WAIT_SECONDS + 0.2 * 80
    assert book.agents["alice"].active == 2


def test_taken_by_an_unknown_agent_or_before_queued_counts_no_negative_wait() -> None:
    """A clock behind ``queuedAt`` counts as no wait, and an agent the queue never heard of
    is not invented."""
    book = QueueBook()
    waiting = request("a", 100)
    book.enqueue(waiting)
    book.taken(waiting, "ghost", at(50))
    assert book.average_wait == 0.8 * DEFAULT_WAIT_SECONDS
    assert book.agents == {}


def test_full_skips_the_agent_until_it_reports_again() -> None:
    """An agent found without a free slot stops being a candidate until heard again."""
    book = book_with(("alice", "online", 0), ("bob", "online", 1))
    book.full("alice", 3)
    assert [a.ref.id for a in book.candidates(3)] == ["bob"]
    book.heard(AgentRef(id="alice", name="Alice"), "online", 0)
    assert [a.ref.id for a in book.candidates(3)] == ["alice", "bob"]


def test_position_and_estimate_follow_the_order_and_the_online_agents() -> None:
    """Position is 1-based in the waiting order; the estimate is the average wait times
    the position, shared by the online agents (at least one)."""
    book = QueueBook()
    for conversation in (request("a", 0), request("b", 1), request("c", 2)):
        book.enqueue(conversation)
    assert book.position("a") == (1, 30)
    assert book.position("c") == (3, 90)
    book.heard(AgentRef(id="alice"), "online", 0)
    book.heard(AgentRef(id="bob"), "online", 0)
    book.heard(AgentRef(id="eve"), "away", 0)
    assert book.position("c") == (3, 45)
    assert book.position("b") == (2, 30)


def test_position_of_a_request_not_waiting_is_unknown() -> None:
    """A request that is not waiting has no position and no estimate."""
    assert QueueBook().position("nope") == (None, None)


def test_any_mix_of_enqueues_refreshes_and_removals_keeps_order_and_positions() -> None:
    """2,000 seeded random operations (new requests mostly newest, some older, re-queues
    at a new time, refreshes, accepts, removals): after each, the book's order and every
    position are those of sorting what waits by (queuedAt, id)."""
    rng = random.Random(20261203)
    book = book_with(("al", "online", 0))
    model: dict[str, Conversation] = {}
    clock = 0.0
    for step in range(2000):
        roll = rng.random()
        if roll < 0.45 or not model:
            clock += rng.choice((0.0, 0.5, 1.0))  # equal times happen: ordered by id
            queued = clock if rng.random() < 0.9 else clock - rng.uniform(0, 50)
            conversation = request(f"c{step:05d}", queued)
        elif roll < 0.6:  # re-queued at a new time (a transfer)
            conversation = request(rng.choice(sorted(model)), clock + 1)
        elif roll < 0.7:  # refreshed in place (same time)
            conversation = msgspec.structs.replace(model[rng.choice(sorted(model))],
                                                   subscriber=Subscriber(name="Bo"))
        else:
            gone = rng.choice(sorted(model))
            if rng.random() < 0.5:
                assert book.dequeue(gone) is not None
            else:
                book.taken(model[gone], "al", at(clock + 100))
            del model[gone]
            conversation = None
        if conversation is not None:
            assert book.enqueue(conversation) == (conversation.id not in model)
            model[conversation.id] = conversation
        expected = [c.id for c in sorted(model.values(), key=lambda c: (c.queued_at, c.id))]
        assert [w.id for w in book.in_order()] == expected
        assert sorted(book.pending) == sorted(expected)
        assert [w.id for w in book.page(None, len(expected) + 1)] == expected
        if expected:
            probe = rng.choice(expected)
            assert book.position(probe)[0] == expected.index(probe) + 1
