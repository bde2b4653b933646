"""The store contract, run against every backend (``any_store``: SQLite and PostgreSQL).

First the :class:`~lcx.store.Store` and :class:`~lcx.store.Tx` protocols themselves
(commit, rollback, error mapping, scripts, statistics), then every repository module
written over ``Tx``: each test proves the module answers the same on both engines, so a
statement that is not portable fails here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import pytest
import trio
from fakes.bot import outbox_event

from lcx.business_hours import BusinessHours
from lcx.errors import FencedOut, IntegrityConflict, StoreError, StoreUnavailable
from lcx.model import Author, Context, Conversation, Message, Participant, Subscriber
from lcx.org_settings import DEFAULT_SETTINGS, LivechatSettings, OrgSettings
from lcx.store import Row, Store, StoreStatistics, Tx, open_store
from lcx.store import attachments as att
from lcx.store import business_hours as bh
from lcx.store import conversations as conv
from lcx.store import outbox as ob
from lcx.store import retention as ret
from lcx.store.fencing import advance
from lcx.store.listings import ListFilter, Position, list_conversations

pytest_plugins = ["support.stores"]

T = TypeVar("T")
T0 = "2026-01-01T00:00:00.000Z"
T1 = "2026-01-01T00:00:01.000Z"
T2 = "2026-01-01T00:00:02.000Z"
LATER = "2026-01-01T00:05:00.000Z"

SCHEMA = """
-- a comment; with a semicolon, a ? and a %
CREATE TABLE contract_items (key TEXT PRIMARY KEY, value TEXT NOT NULL, n INTEGER);
CREATE TABLE contract_notes (id INTEGER PRIMARY KEY,
                             item TEXT NOT NULL REFERENCES contract_items (key));
INSERT INTO contract_items (key, value) VALUES ('seed', 'a;b ? 100%');
"""


async def write(store: Store, fn: Callable[[Tx], T]) -> T:
    return await store.transaction(fn)


async def with_schema(store: Store) -> Store:
    await store.transaction(lambda tx: tx.executescript(SCHEMA))
    return store


def put(key: str, value: str = "v") -> Callable[[Tx], int]:
    return lambda tx: tx.execute("INSERT INTO contract_items (key, value) VALUES (?, ?)",
                                 (key, value))


def count_items(tx: Tx) -> int:
    row = tx.fetchone("SELECT count(*) AS n FROM contract_items")
    assert row is not None
    return row["n"]


def blocking_write(started: trio.Event, release: threading.Event) -> Callable[[Tx], str]:
    """A write that inserts ``a``, signals, waits for ``release``, then inserts ``b``."""
    token = trio.lowlevel.current_trio_token()  # fn runs in one of the store's threads

    def fn(tx: Tx) -> str:
        put("a")(tx)
        trio.from_thread.run_sync(started.set, trio_token=token)
        release.wait(timeout=10)
        put("b")(tx)
        return "done"
    return fn


# --- the Store and Tx protocols --------------------------------------------------------


async def test_commit_returns_result_and_reads_see_it(any_store: Store) -> None:
    """A committed transaction returns fn's result and a later read sees its rows."""
    store = await with_schema(any_store)

    def fn(tx: Tx) -> str | None:
        put("a", "1")(tx)
        row = tx.fetchone("INSERT INTO contract_items (key, value) VALUES (?, ?) RETURNING key",
                          ("b", "2"))
        return None if row is None else row["key"]

    assert await store.transaction(fn) == "b"
    rows = await store.read(lambda tx: tx.fetchall(
        "SELECT key, value FROM contract_items WHERE key <> ? ORDER BY key", ("seed",)))
    assert rows == [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]


async def test_exception_in_fn_rolls_back_and_propagates_unchanged(any_store: Store) -> None:
    """An exception of fn's own rolls everything back and reaches the caller as it is."""
    store = await with_schema(any_store)

    def fail(tx: Tx) -> None:
        put("a")(tx)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await store.transaction(fail)
    assert await store.read(count_items) == 1


@pytest.mark.parametrize("statement", [
    "INSERT INTO contract_items (key, value) VALUES ('seed', 'again')",
    "INSERT INTO contract_notes (id, item) VALUES (1, 'no such item')",
    "INSERT INTO contract_items (key, value) VALUES ('k', NULL)",
], ids=["unique", "foreign-key", "not-null"])
async def test_integrity_violations_are_integrity_conflict(any_store: Store,
                                                           statement: str) -> None:
    """Unique, foreign-key and not-null violations raise IntegrityConflict from the
    driver's error, and the transaction's earlier writes are rolled back."""
    store = await with_schema(any_store)

    def fn(tx: Tx) -> None:
        put("a")(tx)
        tx.execute(statement)

    with pytest.raises(IntegrityConflict) as info:
        await store.transaction(fn)
    assert info.value.__cause__ is not None
    assert await store.read(count_items) == 1


async def test_bad_sql_is_a_plain_store_error(any_store: Store) -> None:
    """SQL the engine refuses is a StoreError (neither a conflict nor unavailable)."""
    with pytest.raises(StoreError) as info:
        await any_store.transaction(lambda tx: tx.execute("SELEKT 1"))
    assert type(info.value) is StoreError
    assert info.value.__cause__ is not None


async def test_read_refuses_to_write(any_store: Store) -> None:
    """read() is read-only: a write through its Tx is a StoreError and changes nothing."""
    store = await with_schema(any_store)
    with pytest.raises(StoreError) as info:
        await store.read(put("a"))
    assert type(info.value) is StoreError
    assert await store.read(count_items) == 1


async def test_fn_may_not_end_the_transaction(any_store: Store) -> None:
    """fn committing on its own is refused: atomicity belongs to the store."""
    store = await with_schema(any_store)
    with pytest.raises(StoreError, match="ended the transaction"):
        await store.transaction(lambda tx: tx.execute("COMMIT"))
    await store.transaction(put("a"))
    assert await store.read(count_items) == 2


async def test_executescript_runs_every_statement_in_the_transaction(any_store: Store) -> None:
    """A script's statements (with ; ? % in strings and comments) run inside the caller's
    transaction: a later failure rolls the whole script back."""
    def script_then_fail(tx: Tx) -> None:
        tx.executescript(SCHEMA)
        raise ValueError("after the script")

    with pytest.raises(ValueError, match="after the script"):
        await any_store.transaction(script_then_fail)
    with pytest.raises(StoreError):
        await any_store.read(count_items)
    await with_schema(any_store)
    row = await any_store.read(lambda tx: tx.fetchone(
        "SELECT value FROM contract_items WHERE key = ?", ("seed",)))
    assert row == {"value": "a;b ? 100%"}


async def test_parameters_carry_placeholder_and_percent_characters(any_store: Store) -> None:
    """Values holding ? % %s ' and non-ASCII text round-trip; LIKE with an escape matches
    a literal %."""
    store = await with_schema(any_store)
    values = ["?", "%", "%s", "%%s", "it's", "100% sure?", "héllo ✓"]
    await store.transaction(lambda tx: tx.executemany(
        "INSERT INTO contract_items (key, value) VALUES (?, ?)",
        [(f"k{i}", value) for i, value in enumerate(values)]))
    rows = await store.read(lambda tx: tx.fetchall(
        "SELECT value FROM contract_items WHERE key LIKE ? ORDER BY key", ("k%",)))
    assert [row["value"] for row in rows] == values
    literal = await store.read(lambda tx: tx.fetchall(
        "SELECT key FROM contract_items WHERE value LIKE ? ESCAPE ? ORDER BY key",
        ("%!%%", "!")))
    assert [row["key"] for row in literal] == ["k1", "k2", "k3", "k5", "seed"]


async def test_result_shapes(any_store: Store) -> None:
    """count(*) AS n is an int, a bool parameter is stored as 1, a missing row is None,
    an empty result is [], and a statement without a result set fetches as None / []."""
    store = await with_schema(any_store)

    def fn(tx: Tx) -> list[Any]:
        tx.execute("INSERT INTO contract_items (key, value, n) VALUES (?, ?, ?)",
                   ("b", "v", True))
        return [count_items(tx),
                tx.fetchone("SELECT n FROM contract_items WHERE key = ?", ("b",)),
                tx.fetchone("SELECT n FROM contract_items WHERE key = ?", ("none",)),
                tx.fetchall("SELECT n FROM contract_items WHERE key = ?", ("none",)),
                tx.fetchone("UPDATE contract_items SET n = ? WHERE key = ?", (2, "b")),
                tx.fetchall("UPDATE contract_items SET n = ? WHERE key = ?", (3, "b"))]

    assert await store.transaction(fn) == [2, {"n": 1}, None, [], None, []]


async def test_execute_returns_rowcount(any_store: Store) -> None:
    """execute() answers the rows an UPDATE, DELETE or INSERT .. ON CONFLICT changed."""
    store = await with_schema(any_store)
    await store.transaction(lambda tx: tx.executemany(
        "INSERT INTO contract_items (key, value) VALUES (?, ?)", [("a", "x"), ("b", "x")]))

    def fn(tx: Tx) -> list[int]:
        return [tx.execute("UPDATE contract_items SET value = ? WHERE value = ?", ("y", "x")),
                tx.execute("INSERT INTO contract_items (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO NOTHING", ("a", "z")),
                tx.execute("DELETE FROM contract_items WHERE key = ?", ("nothing",)),
                tx.execute("DELETE FROM contract_items WHERE value = ?", ("y",))]

    assert await store.transaction(fn) == [2, 0, 0, 2]


async def test_text_compares_and_sorts_bytewise(any_store: Store) -> None:
    """Text columns of the shipped schema order and compare by bytes (SQLite's BINARY),
    not by a locale: upper case before lower case, punctuation by its code."""
    keys = ["b", "B", "a-2", "a_1", "a1", "Z", "é", "a 1", "a-1"]

    def fn(tx: Tx) -> None:
        for key in keys:
            tx.execute("INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?)",
                       (key, "{}", T0))

    await any_store.transaction(fn)
    rows = await any_store.read(lambda tx: tx.fetchall(
        "SELECT org_id FROM org_settings WHERE org_id > ? ORDER BY org_id", ("Z",)))
    assert [row["org_id"] for row in rows] == sorted(k for k in keys if k > "Z")


async def test_cancel_during_write_still_commits_whole_transaction(any_store: Store) -> None:
    """A caller cancelled mid-write gets the full commit, then Cancelled at its next
    checkpoint."""
    store = await with_schema(any_store)
    started, release = trio.Event(), threading.Event()
    results: list[str] = []

    async def caller(scope: trio.CancelScope) -> None:
        with scope:
            results.append(await store.transaction(blocking_write(started, release)))
            await trio.lowlevel.checkpoint()
            results.append("not cancelled")

    scope = trio.CancelScope()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, scope)
            await started.wait()
            scope.cancel()
            await trio.sleep(0.05)
            release.set()
    assert results == ["done"]
    assert await store.read(count_items) == 3


async def test_statistics_count_committed_failed_and_in_flight(any_store: Store) -> None:
    """statistics() counts committed, failed and in-flight transaction() calls."""
    store = await with_schema(any_store)
    base = store.statistics()
    started, release = trio.Event(), threading.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.transaction, blocking_write(started, release))
            await started.wait()
            assert store.statistics().transactions_in_flight == 1
            release.set()
    with pytest.raises(IntegrityConflict):
        await store.transaction(put("a"))
    await store.read(count_items)
    statistics = store.statistics()
    assert statistics == StoreStatistics(
        transactions_committed=base.transactions_committed + 1,
        transactions_failed=base.transactions_failed + 1, transactions_in_flight=0,
        commit_batches=statistics.commit_batches, inline_commits=statistics.inline_commits,
        inline_fallbacks=statistics.inline_fallbacks)
    assert base.commit_batches < statistics.commit_batches
    # the blocking write (it waits for another thread) and the conflict were tried on the
    # Trio thread first, and ran again on a worker thread
    assert statistics.inline_fallbacks >= base.inline_fallbacks + 2


async def test_ping_then_close(store_url: str) -> None:
    """ping() answers on an open store; after close (idempotent) every call raises
    StoreUnavailable."""
    async with open_store(store_url) as store:
        await store.ping()
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.transaction(lambda tx: None)
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.read(lambda tx: None)


async def test_migrations_rerun_is_a_no_op(store_url: str) -> None:
    """Opening a migrated database again applies nothing and keeps every version once."""
    def versions(tx: Tx) -> list[Row]:
        return tx.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")

    async with open_store(store_url) as store:
        first = await store.read(versions)
    async with open_store(store_url) as store:
        assert await store.read(versions) == first
    assert [row["version"] for row in first] == list(range(1, len(first) + 1))


# --- conversations ---------------------------------------------------------------------


def conversation(cid: str, *, sub: str = "u-1", status: str = "pending", org: str = "o1",
                 tenant: str = "t1", group: str = "g1", created_at: str = T0,
                 **fields: Any) -> Conversation:
    """A conversation with every JSON column filled in."""
    values: dict[str, Any] = {
        "id": cid, "request_id": f"r-{cid}", "org_id": org, "tenant_id": tenant,
        "sub_handle": sub, "user_group_id": group, "provider": "helvia", "channel": "bot",
        "status": status, "subscriber": Subscriber(name="Ada", custom={"tier": "gold"}),
        "context": Context(metadata={"lang": "el"}), "participants": [], "flags": {"x": 1},
        "created_at": created_at, "queued_at": created_at, "last_activity_at": created_at,
        **fields}
    return Conversation(**values)


def message(cid: str, seq: int, *, org: str = "o1", at: str = T0) -> Message:
    return Message(conversation_id=cid, seq=seq, message_id=f"m-{cid}-{seq}",
                   author=Author(type="subscriber", id="u-1"), type="text", at=at,
                   text=f"text {seq} 100%", payload={"k": [1, None]})


async def insert(store: Store, *rows: Conversation) -> None:
    def fn(tx: Tx) -> None:
        for row in rows:
            conv.insert_conversation(tx, row)
    await store.transaction(fn)


async def test_conversation_insert_load_save_round_trip(any_store: Store) -> None:
    """A conversation loads back equal (JSON columns included), by id and by request, and
    save() overwrites it."""
    row = conversation("c1", participants=[Participant(id="alice", joined_at=T1)])
    await insert(any_store, row)
    assert await any_store.read(lambda tx: conv.load_conversation(tx, "c1")) == row
    assert await any_store.read(lambda tx: conv.find_by_request(tx, "r-c1")) == row
    assert await any_store.read(lambda tx: conv.load_conversation(tx, "nope")) is None
    changed = conversation("c1", status="active", agent_id="alice", accepted_at=T1,
                           last_seq=7, flags={"y": True})
    await write(any_store, lambda tx: conv.save_conversation(tx, changed))
    assert await any_store.read(lambda tx: conv.load_conversation(tx, "c1")) == changed


async def test_one_open_conversation_per_subscriber(any_store: Store) -> None:
    """open_key allows one open conversation per subscriber and tenant: a second is an
    IntegrityConflict; once the first ends, find_open forgets it and a new one fits."""
    await insert(any_store, conversation("c1"), conversation("c9", tenant="t2"))
    assert (await any_store.read(lambda tx: conv.find_open(tx, "t1", "u-1"))).id == "c1"
    with pytest.raises(IntegrityConflict):
        await insert(any_store, conversation("c2"))
    with pytest.raises(IntegrityConflict):
        await insert(any_store, conversation("c1", sub="u-2"))
    await write(any_store, lambda tx: conv.save_conversation(
        tx, conversation("c1", status="ended", ended_at=T1)))
    assert await any_store.read(lambda tx: conv.find_open(tx, "t1", "u-1")) is None
    await insert(any_store, conversation("c2", created_at=T1))
    assert (await any_store.read(lambda tx: conv.find_latest(tx, "t1", "u-1"))).id == "c2"


async def test_conversation_queries_order_with_ties(any_store: Store) -> None:
    """Queue, agent and latest queries order by time then id, ties included."""
    await insert(any_store,
                 conversation("c3", sub="u-3", created_at=T0),
                 conversation("c1", sub="u-1", created_at=T1),
                 conversation("c2", sub="u-2", created_at=T0),
                 conversation("c4", sub="u-4", status="active", agent_id="al",
                              accepted_at=T2, created_at=T0),
                 conversation("c5", sub="u-5", status="active", agent_id="al",
                              accepted_at=T1, created_at=T0),
                 conversation("c6", sub="u-1", status="missed", tenant="t1", created_at=T1,
                              ended_at=T2))

    def fn(tx: Tx) -> list[Any]:
        return [[cid for _, cid in conv.pending_places(tx, "o1", "g1")],
                conv.active_for_agent(tx, "o1", "al"),
                conv.find_latest(tx, "t1", "u-1").id,
                conv.count_pending(tx, "o1"), conv.count_pending(tx, "o1", tenant_id="t2"),
                conv.count_pending(tx, "o1", tenant_id="t1", user_group_id="g1")]

    assert await any_store.read(fn) == [
        ["c2", "c3", "c1"], ["c5", "c4"], "c6", 3, 0, 3]


async def test_open_conversation_keys_page_through_the_open_ones_only(
        any_store: Store) -> None:
    """Pages of (id, org, group, provider, status) of open conversations only, by
    open_key, each page starting after the last one's key, until an empty page."""
    await insert(any_store, *[conversation(f"c{n}", sub=f"u-{n}") for n in range(5)],
                 conversation("c8", sub="u-8", status="active", agent_id="al", group="g2"),
                 conversation("c9", sub="u-9", status="ended", ended_at=T1))
    seen: list[tuple[str, str, str]] = []
    after, pages = "", 0
    while page := await any_store.read(
            functools.partial(conv.open_conversation_keys, after=after, limit=2)):
        seen += [(key.id, key.user_group_id, key.status) for key in page]
        after, pages = page[-1].open_key, pages + 1
    assert pages == 3
    assert sorted(seen) == [*[(f"c{n}", "g1", "pending") for n in range(5)],
                            ("c8", "g2", "active")]
    [key] = await any_store.read(lambda tx: conv.open_conversation_keys(tx, limit=1))
    assert (key.org_id, key.provider, key.open_key) == ("o1", "helvia", "t1/u-0")


async def test_open_ids_of_a_tenant_are_its_open_ones_with_that_provider(
        any_store: Store) -> None:
    """Only open conversations of exactly that tenant (not one whose id starts with it)
    and that provider."""
    await insert(any_store, conversation("c1", sub="a"), conversation("c2", sub="b"),
                 conversation("c3", sub="c", status="ended", ended_at=T1),
                 conversation("c4", sub="d", provider="zendesk"),
                 conversation("c5", sub="a", tenant="t10"),
                 conversation("c6", sub="x/a", tenant="t1"),
                 conversation("c7", sub="b", tenant="t1/x"))
    assert await any_store.read(
        lambda tx: conv.open_ids_of_tenant(tx, "t1", "helvia")) == ["c1", "c2", "c6"]
    assert await any_store.read(
        lambda tx: conv.open_ids_of_tenant(tx, "t1", "zendesk")) == ["c4"]


async def test_open_ids_of_an_org_are_its_pending_and_active_ones(any_store: Store) -> None:
    """Open conversations of that organization only, oldest first."""
    await insert(any_store, conversation("c1", sub="a", created_at=T1),
                 conversation("c2", sub="b", status="active", agent_id="al"),
                 conversation("c3", sub="c", status="missed", ended_at=T1),
                 conversation("c4", sub="d", org="o2"))
    assert await any_store.read(lambda tx: conv.open_ids_of_org(tx, "o1")) == ["c2", "c1"]


async def test_accepted_waits_since(any_store: Store) -> None:
    """accepted_waits lists (queued_at, accepted_at) accepted at or after ``since``."""
    await insert(any_store,
                 conversation("c1", sub="a", status="active", accepted_at=T1),
                 conversation("c2", sub="b", status="active", accepted_at=T2),
                 conversation("c3", sub="c"))
    waits = await any_store.read(lambda tx: conv.accepted_waits(tx, "t1", T1))
    assert sorted(waits) == [(T0, T1), (T0, T2)]


async def test_messages_in_seq_order_and_unique_slots(any_store: Store) -> None:
    """messages_after pages by seq; a taken (conversation, seq) or id is a conflict;
    messages_between orders by conversation then seq and filters by time."""
    await insert(any_store, conversation("c1"), conversation("c0", sub="u-0"))

    def fn(tx: Tx) -> None:
        for seq in (3, 1, 2, 10):
            conv.append_message(tx, message("c1", seq, at=f"2026-01-01T00:00:{seq:02d}.000Z"),
                                org_id="o1", client_id=None)
        conv.append_message(tx, message("c0", 1), org_id="o1", client_id="cl-1")

    await any_store.transaction(fn)
    after = await any_store.read(lambda tx: conv.messages_after(tx, "c1", 1, limit=2))
    assert [m.seq for m in after] == [2, 3]
    assert after[0] == message("c1", 2, at="2026-01-01T00:00:02.000Z")
    with pytest.raises(IntegrityConflict):
        await write(any_store, lambda tx: conv.append_message(
            tx, message("c1", 2), org_id="o1", client_id=None))
    between = await any_store.read(lambda tx: conv.messages_between(
        tx, "o1", conversation_id=None, since=None, until=None))
    assert [(m.conversation_id, m.seq) for m in between] == [
        ("c0", 1), ("c1", 1), ("c1", 2), ("c1", 3), ("c1", 10)]
    window = await any_store.read(lambda tx: conv.messages_between(
        tx, "o1", conversation_id="c1", since="2026-01-01T00:00:02.000Z",
        until="2026-01-01T00:00:10.000Z"))
    assert [m.seq for m in window] == [2, 3]


async def test_idempotency_keys_remember_once(any_store: Store) -> None:
    """remember() stores an answer once per (scope, key); remembered() gives it back."""
    await write(any_store, lambda tx: conv.remember(tx, "http:o1:x", "k", b'{"a":1}', T0))
    assert await any_store.read(lambda tx: conv.remembered(tx, "http:o1:x", "k")) == b'{"a":1}'
    assert await any_store.read(lambda tx: conv.remembered(tx, "http:o1:x", "K")) is None
    with pytest.raises(IntegrityConflict):
        await write(any_store, lambda tx: conv.remember(tx, "http:o1:x", "k", b"{}", T1))



async def test_idempotency_claim_stores_once_and_returns_the_earlier_answer(
        any_store: Store) -> None:
    """claim() stores an answer when the key is new (None back) and, when it is taken,
    writes nothing and gives back the first answer: one statement for the usual case."""
    assert await write(any_store, lambda tx: conv.claim(tx, "bot:o1", "m1", b'{"a":1}', T0)) \
        is None
    assert await write(any_store, lambda tx: conv.claim(tx, "bot:o1", "m1", b'{"a":2}', T1)) \
        == b'{"a":1}'
    assert await any_store.read(lambda tx: conv.remembered(tx, "bot:o1", "m1")) == b'{"a":1}'
    assert await write(any_store, lambda tx: conv.claim(tx, "bot:o1", "m2", b"{}", T1)) is None


# --- outbox ----------------------------------------------------------------------------


async def enqueue(store: Store, *events: ob.OutboxEvent) -> None:
    def fn(tx: Tx) -> None:
        for event in events:
            ob.enqueue(tx, event)
    await store.transaction(fn)


async def test_outbox_lanes_heads_and_marks(any_store: Store) -> None:
    """due_lanes lists each lane whose head is due, most overdue first; marks move events
    only while pending; next_due_at names the next parked head."""
    e1, e2, e3 = (outbox_event("c1", 1, event_id="e1"), outbox_event("c1", 2, event_id="e2"),
                  outbox_event("c2", 1, event_id="e3", tenant_id="t2", created_at=T1))
    await enqueue(any_store, e1, e2, e3)
    with pytest.raises(IntegrityConflict):
        await enqueue(any_store, outbox_event("c1", 2))
    lanes = await any_store.read(lambda tx: ob.due_lanes(tx, LATER, 10))
    assert lanes == [ob.Lane("c1", "bot", "t1"), ob.Lane("c2", "bot", "t2")]
    assert await any_store.read(
        lambda tx: ob.due_lanes(tx, LATER, 10, exclude_tenants=["t1"])) == [lanes[1]]
    head = await any_store.read(lambda tx: ob.next_in_lane(tx, "c1", "bot"))
    assert head is not None
    assert (head.id, head.body, head.status, head.attempts) == ("e1", e1.body, "pending", 0)
    assert await write(any_store, lambda tx: ob.mark_retry(tx, "e1", 1, LATER, "503"))
    assert await any_store.read(lambda tx: ob.due_lanes(tx, T2, 10)) == [lanes[1]]
    assert await any_store.read(lambda tx: ob.next_due_at(tx, T2)) == LATER
    assert await write(any_store, lambda tx: ob.mark_delivered(tx, "e1", 2, T2))
    assert not await write(any_store, lambda tx: ob.mark_delivered(tx, "e1", 3, T2))
    assert await write(any_store, lambda tx: ob.mark_dead(tx, "e3", 4, "410 gone"))
    assert not await write(any_store, lambda tx: ob.mark_retry(tx, "e3", 5, T2, "x"))
    assert (await any_store.read(lambda tx: ob.next_in_lane(tx, "c1", "bot"))).id == "e2"
    assert await any_store.read(lambda tx: [ob.pending_count(tx), ob.dead_count(tx),
                                            ob.dead_count(tx, "t1")]) == [1, 1, 0]


async def test_outbox_dead_letters_list_replay_drop(any_store: Store) -> None:
    """Dead events list oldest first, replay to pending with 0 attempts, drop for good;
    the filters by id (empty list: none) and tenant hold."""
    events = [outbox_event(f"c{i}", 1, event_id=f"e{i}", created_at=at,
                           tenant_id="t2" if i == 3 else "t1")
              for i, at in ((1, T2), (2, T0), (3, T1), (4, T0))]
    await enqueue(any_store, *events)

    def kill(tx: Tx) -> None:
        for event in events:
            ob.mark_dead(tx, event.id, 8, "gave up")

    await write(any_store, kill)
    dead = await any_store.read(lambda tx: ob.list_dead(tx))
    assert [row.id for row in dead] == ["e2", "e4", "e3", "e1"]
    assert [r.id for r in await any_store.read(lambda tx: ob.list_dead(tx, "t2"))] == ["e3"]
    assert await write(any_store, lambda tx: ob.replay_dead(tx, [])) == 0
    assert await write(any_store, lambda tx: ob.replay_dead(tx, ["e1", "e2"], now_iso=T2)) == 2
    replayed = await any_store.read(lambda tx: ob.next_in_lane(tx, "c1", "bot"))
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, T2)
    assert await write(any_store, lambda tx: ob.drop_dead(tx, tenant_id="t2")) == 1
    assert await write(any_store, lambda tx: ob.drop_dead(tx)) == 1
    assert await any_store.read(lambda tx: [ob.pending_count(tx), ob.dead_count(tx)]) == [2, 0]


# --- listings --------------------------------------------------------------------------


async def test_listing_pages_newest_first_with_ties(any_store: Store) -> None:
    """Pages walk (created_at, id) descending; rows sharing a created_at are neither
    skipped nor repeated across a page boundary."""
    rows = [conversation(f"c{i}", sub=f"u-{i}", created_at=T1 if i % 2 else T0)
            for i in range(7)]
    await insert(any_store, *rows)
    where = ListFilter(org_id="o1")
    seen: list[str] = []
    after: Position | None = None
    while page := await any_store.read(partial(list_conversations, where=where, after=after,
                                               limit=3)):
        seen += [c.id for c in page]
        after = Position(page[-1].created_at, page[-1].id)
    assert seen == ["c5", "c3", "c1", "c6", "c4", "c2", "c0"]


async def test_listing_filters_and_participants(any_store: Store) -> None:
    """Status, group and time filters apply; the participant filter matches the agent
    exactly, whatever LIKE does with case, % and _ on either engine."""
    def joined(*ids: str) -> list[Participant]:
        return [Participant(id=pid, joined_at=T0) for pid in ids]

    await insert(any_store,
                 conversation("c1", sub="a", participants=joined("a%b_c")),
                 conversation("c2", sub="b", participants=joined("A%B_C", "bob")),
                 conversation("c3", sub="c", participants=joined("axxbyc")),
                 conversation("c4", sub="d", status="ended", group="g2", created_at=T1,
                              participants=joined("a%b_c")))

    def ids(where: ListFilter) -> Callable[[Tx], list[str]]:
        return lambda tx: [c.id for c in list_conversations(tx, where, after=None, limit=10)]

    assert await any_store.read(ids(ListFilter(org_id="o1", participant="a%b_c"))) == \
        ["c4", "c1"]
    assert await any_store.read(ids(ListFilter(org_id="o1", statuses=("ended",)))) == ["c4"]
    assert await any_store.read(ids(ListFilter(org_id="o1", groups=("g1",), since=T0,
                                               until=T1))) == ["c3", "c2", "c1"]
    assert await any_store.read(ids(ListFilter(org_id="o1", groups=()))) == []


# --- retention and attachments ----------------------------------------------------------


def attachment(aid: str, *, cid: str | None, org: str = "o1",
               created_at: str = T0) -> att.AttachmentRecord:
    return att.AttachmentRecord(id=aid, org_id=org, conversation_id=cid, name="a.png",
                                content_type="image/png", size=3, backend="local",
                                storage_key=f"k/{aid}", uploaded_by="alice",
                                created_at=created_at)


async def test_attachments_records_and_keys(any_store: Store) -> None:
    """Records round-trip; keys_for_org filters by conversations, time and orphans,
    oldest first; delete_rows answers how many went."""
    records = [attachment("a3", cid="c1", created_at=T0), attachment("a1", cid="c2",
               created_at=T1), attachment("a2", cid=None, created_at=T0),
               attachment("a9", cid="c1", org="o2")]

    def fn(tx: Tx) -> None:
        for record in records:
            att.insert_attachment(tx, record)

    await write(any_store, fn)
    assert await any_store.read(lambda tx: att.get_attachment(tx, "a1")) == records[1]
    with pytest.raises(IntegrityConflict):
        await write(any_store, lambda tx: att.insert_attachment(tx, records[0]))

    def keys(**filters: Any) -> Callable[[Tx], list[str]]:
        return lambda tx: [k.id for k in att.keys_for_org(tx, "o1", **filters)]

    assert await any_store.read(keys()) == ["a2", "a3", "a1"]
    assert await any_store.read(keys(conversation_ids=["c1", "c2"])) == ["a3", "a1"]
    assert await any_store.read(keys(conversation_ids=[])) == []
    assert await any_store.read(keys(before=T1)) == ["a2", "a3"]
    assert await any_store.read(keys(unattached=True)) == ["a2"]
    assert await write(any_store, lambda tx: att.delete_rows(tx, ["a1", "a2", "zz"])) == 2


async def test_retention_purges_closed_conversations_with_their_rows(any_store: Store) -> None:
    """A purge deletes closed conversations with their messages, outbox rows and
    attachments, counts each, and leaves open ones and other organizations alone."""
    await insert(any_store,
                 conversation("c1", sub="a", status="ended", ended_at=T1),
                 conversation("c2", sub="b", status="missed", ended_at=T0),
                 conversation("c3", sub="c", status="active"),
                 conversation("c9", sub="d", status="ended", org="o2", ended_at=T0))

    def seed(tx: Tx) -> None:
        for cid, org in (("c1", "o1"), ("c1", "o1"), ("c2", "o1"), ("c3", "o1"), ("c9", "o2")):
            seq = 1 + len(conv.messages_after(tx, cid, 0))
            conv.append_message(tx, message(cid, seq, org=org), org_id=org, client_id=None)
        ob.enqueue(tx, outbox_event("c1", 1))
        att.insert_attachment(tx, attachment("a1", cid="c1"))
        att.insert_attachment(tx, attachment("a2", cid=None))

    await write(any_store, seed)
    ids = await any_store.read(lambda tx: ret.closed_conversation_ids(tx, "o1", before=None))
    assert ids == ["c2", "c1"]
    assert await any_store.read(
        lambda tx: ret.closed_conversation_ids(tx, "o1", before=T1)) == ["c2"]
    keys = await any_store.read(lambda tx: att.keys_for_org(tx, "o1", conversation_ids=ids))
    purged = await write(any_store, lambda tx: ret.delete_conversations(
        tx, "o1", [*ids, "c3", "c9"], keys))
    assert purged == ret.Purged(conversations=2, messages=3, outbox=1, attachments=1)
    orphans = await any_store.read(lambda tx: ret.orphan_attachment_keys(tx, "o1", before=None))
    assert [k.id for k in orphans] == ["a2"]
    assert await any_store.read(lambda tx: ret.open_conversation_ids(tx, "o1")) == ["c3"]
    assert await any_store.read(ret.orgs_with_records) == ["o1", "o2"]


async def test_delete_org_rows_matches_scopes_exactly(any_store: Store) -> None:
    """The organization delete removes its settings, hours and idempotency scopes
    ``http:<org>:`` (case-sensitive prefix) and ``bot:<tenant>``, and nothing else."""
    hours = BusinessHours(timezone="UTC", weekly={"mon": [("09:00", "17:00")]})

    def seed(tx: Tx) -> None:
        for scope in ("http:o1:a", "http:o1:b", "HTTP:o1:c", "http:o10:d", "bot:t1", "bot:t9"):
            conv.remember(tx, scope, "k", b"{}", T0)
        tx.execute("INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?)",
                   ("o1", "{}", T0))
        bh.upsert(tx, "o1", "g1", hours)
        bh.upsert(tx, "o2", "g1", hours)

    await write(any_store, seed)
    rows = await write(any_store, lambda tx: ret.delete_org_rows(tx, "o1", ["t1"]))
    assert rows == ret.OrgRows(messages=0, outbox=0, settings=1, business_hours=1,
                               idempotency_keys=3)
    left = await any_store.read(lambda tx: tx.fetchall(
        "SELECT scope FROM idempotency_keys ORDER BY scope"))
    assert [row["scope"] for row in left] == ["HTTP:o1:c", "bot:t9", "http:o10:d"]


# --- business hours, organization settings, fencing -------------------------------------


async def test_business_hours_insert_upsert_delete(any_store: Store) -> None:
    """insert() only when absent, upsert() replaces, delete() and delete_for_org() answer
    whether and how many rows went."""
    first = BusinessHours(timezone="Europe/Athens", weekly={"mon": [("09:00", "17:00")]})
    second = BusinessHours(timezone="UTC", weekly={}, holidays=["2026-12-25"], enabled=False)
    assert await write(any_store, lambda tx: bh.insert(tx, "o1", "g1", first))
    assert not await write(any_store, lambda tx: bh.insert(tx, "o1", "g1", second))
    assert await any_store.read(lambda tx: bh.get(tx, "o1", "g1")) == first
    await write(any_store, lambda tx: bh.upsert(tx, "o1", "g1", second))
    await write(any_store, lambda tx: bh.upsert(tx, "o1", "g2", first))
    assert await any_store.read(lambda tx: bh.get(tx, "o1", "g1")) == second
    assert await write(any_store, lambda tx: bh.delete(tx, "o1", "g1"))
    assert not await write(any_store, lambda tx: bh.delete(tx, "o1", "g1"))
    assert await write(any_store, lambda tx: bh.delete_for_org(tx, "o1")) == 1


async def test_org_settings_upsert_and_defaults(any_store: Store) -> None:
    """Settings default until put; a second put replaces the first (upsert), as a fresh
    reader of the same store sees."""
    settings = OrgSettings(lambda: any_store)
    assert await settings.get("o1") == DEFAULT_SETTINGS
    await settings.put("o1", LivechatSettings(max_concurrent_chats=5))
    await settings.put("o1", LivechatSettings(greeting="hi 100%?"))
    assert await OrgSettings(lambda: any_store).get("o1") == LivechatSettings(
        greeting="hi 100%?")


async def test_fencing_terms_refuse_a_stale_leader(any_store: Store) -> None:
    """advance() accepts equal or higher terms; a lower one raises FencedOut and its
    transaction writes nothing."""
    await write(any_store, lambda tx: advance(tx, "retention", 2, "i-1", T0))
    await write(any_store, lambda tx: advance(tx, "retention", 2, "i-1", T1))
    await write(any_store, lambda tx: advance(tx, "retention", 3, "i-2", T1))

    def stale(tx: Tx) -> None:
        put_settings = "INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?)"
        tx.execute(put_settings, ("o1", "{}", T2))
        advance(tx, "retention", 2, "i-1", T2)

    with pytest.raises(FencedOut):
        await write(any_store, stale)
    row = await any_store.read(lambda tx: tx.fetchone(
        "SELECT term, holder FROM fencing_terms WHERE name = ?", ("retention",)))
    assert row == {"term": 3, "holder": "i-2"}
    assert await any_store.read(lambda tx: tx.fetchall("SELECT org_id FROM org_settings")) == []
