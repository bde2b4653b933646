"""The supervisors' overview reads counts, not rows: the figures it computes from the
store's aggregates are the ones a row-by-row count gives (waiting and its oldest, active,
each agent's load with left and repeated participants handled), on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from lcx.model import Context, Conversation, Participant, Subscriber
from lcx.overview import OpenFigures, PresenceView, build_overview, open_figures
from lcx.store import Store
from lcx.store.conversations import insert_conversation

pytest_plugins = ["support.stores"]

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def conversation(number: int, *, org: str = "o1", group: str = "g1", status: str,
                 queued_at: str = "2026-12-03T11:59:00.000Z",
                 participants: tuple[Participant, ...] = ()) -> Conversation:
    return Conversation(
        id=f"c{number}", request_id=f"r{number}", org_id=org, tenant_id="t1",
        sub_handle=f"u{number}", user_group_id=group, provider="helvia", channel="bot",
        status=status, subscriber=Subscriber(), context=Context(),
        participants=list(participants), flags={}, created_at=queued_at,
        queued_at=queued_at, last_activity_at=queued_at,
        agent_id=participants[0].id if participants else None)


def agent(name: str, *, left: bool = False, role: str = "agent") -> Participant:
    return Participant(id=name, role=role, joined_at="2026-12-03T11:59:30.000Z",
                       left_at="2026-12-03T11:59:40.000Z" if left else None)


async def test_counts_per_group_and_agent_load(any_store: Store) -> None:
    rows = [
        conversation(1, status="pending", queued_at="2026-12-03T11:58:00.000Z"),
        conversation(2, status="pending", queued_at="2026-12-03T11:50:00.000Z"),
        conversation(3, group="g2", status="pending"),
        conversation(4, status="active", participants=(agent("alice"), agent("bob"))),
        # alice came back after leaving once: one chat, not two
        conversation(5, status="active", participants=(agent("alice", left=True),
                                                       agent("alice"), agent("bob", left=True))),
        conversation(6, group="g3", status="active", participants=(agent("carol"),)),
        conversation(7, status="ended", participants=(agent("alice"),)),
        conversation(8, org="o2", status="pending"),
        conversation(9, org="o2", status="active", participants=(agent("alice"),)),
    ]
    for row in rows:
        await any_store.transaction(lambda tx, row=row: insert_conversation(tx, row))
    figures = await any_store.read(lambda tx: open_figures(tx, "o1"))
    assert figures == OpenFigures(
        waiting={"g1": 2, "g2": 1},
        oldest_queued_at={"g1": "2026-12-03T11:50:00.000Z", "g2": "2026-12-03T11:59:00.000Z"},
        active={"g1": 2, "g3": 1},
        chats={"alice": 2, "bob": 1, "carol": 1})


def test_the_document_from_the_figures() -> None:
    figures = OpenFigures(waiting={"g1": 2}, oldest_queued_at={"g1": "2026-12-03T11:50:00.000Z"},
                          active={"g1": 1, "g3": 1}, chats={"alice": 2})
    presence = [PresenceView("bob", None, "away", ("g1", "g2")),
                PresenceView("alice", "Alice", "online", ("g1",)),
                PresenceView("dora", None, "busy", ("g4",))]
    overview = build_overview(figures, presence, max_chats=3, now=NOW)
    by_group = {q.user_group_id: q for q in overview.queues}
    assert [q.user_group_id for q in overview.queues] == ["g1", "g2", "g3", "g4"]
    assert (by_group["g1"].waiting, by_group["g1"].longest_wait_seconds,
            by_group["g1"].agents_online, by_group["g1"].agents_away,
            by_group["g1"].active_conversations) == (2, 600, 1, 1, 1)
    assert (by_group["g2"].waiting, by_group["g2"].longest_wait_seconds,
            by_group["g2"].agents_away) == (0, 0, 1)
    assert (by_group["g4"].agents_online, by_group["g4"].agents_away) == (0, 0)
    assert [(a.id, a.active_chats, a.max_chats) for a in overview.agents] == [
        ("alice", 2, 3), ("bob", 0, 3), ("dora", 0, 3)]
