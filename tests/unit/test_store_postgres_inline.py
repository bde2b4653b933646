"""The PostgreSQL store's inline connections: transactions on the Trio thread that never
hold it while the server is slow, and fall back to the thread path whenever anything is
out of the ordinary, with the thread path's errors and nothing committed twice."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from support import postgres

from lcx.config import load_settings
from lcx.errors import ConfigError, IntegrityConflict, StoreError
from lcx.store import Tx, open_store, postgres_inline
from lcx.store.postgres import PostgresStore, open_postgres_store

pytest_plugins = ["support.stores"]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_url, inline_connections=2) as opened:
        await opened.transaction(lambda tx: tx.executescript(
            "CREATE TABLE beds (ward TEXT NOT NULL, no INTEGER NOT NULL, patient TEXT, "
            "weight REAL, PRIMARY KEY (ward, no));"
            "INSERT INTO beds VALUES ('a', 1, NULL, NULL), ('a', 2, 'ann', 61.5);"))
        yield opened


def admin(url: str, statement: str, *params: Any) -> list[dict[str, Any]]:
    """One statement on a connection of its own (outside the store)."""
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def bed_locked(url: str, release: threading.Event) -> Iterator[threading.Event]:
    """Another connection holds bed a/1's row lock until ``release`` is set."""
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE beds SET patient = 'held' WHERE ward = 'a' AND no = 1")
            locked.set()
            release.wait(timeout=10)
            conn.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        yield locked
    finally:
        release.set()
        holder.join()


async def test_reads_and_writes_run_inline_with_the_thread_paths_types(
        store: PostgresStore) -> None:
    """A write and a read commit on an inline connection; the rows have the types the
    thread path gives (int, str, None, float, computed columns), rowcounts are right."""
    before = store.inline_commits
    changed = await store.transaction(lambda tx: tx.execute(
        "UPDATE beds SET patient = ?, weight = ? WHERE ward = ? AND no = ?",
        ("bob", 80.25, "a", 1)))
    assert changed == 1
    rows = await store.read(lambda tx: tx.fetchall(
        "SELECT no, patient, weight, no * ? AS twice FROM beds ORDER BY no", (2,)))
    assert rows == [{"no": 1, "patient": "bob", "weight": 80.25, "twice": 2},
                    {"no": 2, "patient": "ann", "weight": 61.5, "twice": 4}]
    assert await store.read(lambda tx: tx.values(
        "SELECT count(*) AS n, max(coalesce(?, patient)) AS p FROM beds "
        "WHERE patient IS NOT NULL", (None,))) == [(2, "bob")]
    assert await store.read(lambda tx: tx.fetchone(
        "SELECT patient FROM beds WHERE no = ?", (9,))) is None
    # an int that fits is an int4, as a literal would be (substr has no bigint variant);
    # a larger one an int8
    assert await store.read(lambda tx: tx.values(
        "SELECT substr(?, 1, ?) AS s, ? + 1 AS big", ("hello", 3, 1 << 40))) == [
            ("hel", (1 << 40) + 1)]
    assert store.inline_commits == before + 5
    assert store.inline_fallbacks == 0


async def test_an_error_falls_back_and_is_the_thread_paths(store: PostgresStore) -> None:
    """A unique violation, and fn's own exception, reach the caller as on the thread
    path (IntegrityConflict from UniqueViolation; the exception itself), and nothing of
    either transaction is committed."""
    def double_booking(tx: Tx) -> None:
        tx.execute("UPDATE beds SET patient = ? WHERE no = ?", ("carl", 1))
        tx.execute("INSERT INTO beds (ward, no) VALUES (?, ?)", ("a", 2))

    with pytest.raises(IntegrityConflict) as conflict:
        await store.transaction(double_booking)
    assert isinstance(conflict.value.__cause__, psycopg.errors.UniqueViolation)

    def change_of_mind(tx: Tx) -> None:
        tx.execute("UPDATE beds SET patient = ? WHERE no = ?", ("dora", 1))
        raise LookupError("no such ward")

    with pytest.raises(LookupError, match="no such ward"):
        await store.transaction(change_of_mind)
    assert store.inline_fallbacks == 2
    assert await store.read(lambda tx: tx.values(
        "SELECT patient FROM beds WHERE no = ?", (1,))) == [(None,)]


async def test_a_string_holding_nul_is_refused_as_on_the_thread_path(
        store: PostgresStore) -> None:
    """libpq's text parameters cannot carry NUL: the call falls back and fails as the
    thread path fails (no truncated value stored)."""
    with pytest.raises(StoreError):
        await store.transaction(lambda tx: tx.execute(
            "UPDATE beds SET patient = ? WHERE no = ?", ("ev\x00e", 1)))
    assert await store.read(lambda tx: tx.values(
        "SELECT patient FROM beds WHERE no = ?", (1,))) == [(None,)]


async def test_a_lock_wait_leaves_the_trio_thread_free(store: PostgresStore,
                                                       postgres_url: str) -> None:
    """A statement waiting for a row lock suspends its transaction, not the Trio thread:
    another task keeps running meanwhile; once the lock is released the transaction
    commits inline."""
    release = threading.Event()
    ticks: list[float] = []
    before = store.inline_commits

    async def ticker() -> None:
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(0.01)

    with bed_locked(postgres_url, release), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            done = trio.Event()

            async def write() -> None:
                await store.transaction(lambda tx: tx.execute(
                    "UPDATE beds SET patient = ? WHERE ward = ? AND no = ?", ("fay", "a", 1)))
                done.set()

            nursery.start_soon(write)
            await trio.sleep(0.2)
            assert not done.is_set()
            waiting_ticks = len(ticks)
            release.set()
            await done.wait()
            nursery.cancel_scope.cancel()
    assert waiting_ticks >= 10
    assert store.inline_commits == before + 1
    assert store.inline_fallbacks == 0
    assert await store.read(lambda tx: tx.values(
        "SELECT patient FROM beds WHERE no = ?", (1,))) == [("fay",)]


async def test_a_caller_cancelled_while_its_transaction_waits_gets_it_committed(
        store: PostgresStore, postgres_url: str) -> None:
    """The wait is shielded as the thread path's is: the whole transaction commits, and
    the cancellation reaches the caller at its next checkpoint."""
    release = threading.Event()
    results: list[str] = []

    async def caller(scope: trio.CancelScope) -> None:
        with scope:
            await store.transaction(lambda tx: tx.execute(
                "UPDATE beds SET patient = ? WHERE ward = ? AND no = ?", ("gil", "a", 1)))
            results.append("returned")
            await trio.lowlevel.checkpoint()
            results.append("not cancelled")

    with bed_locked(postgres_url, release), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()
            nursery.start_soon(caller, scope)
            await trio.sleep(0.1)
            scope.cancel()
            await trio.sleep(0.05)
            release.set()
    assert results == ["returned"]
    assert await store.read(lambda tx: tx.values(
        "SELECT patient FROM beds WHERE no = ?", (1,))) == [("gil",)]


async def test_a_silent_server_gives_the_connection_up(
        store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement whose answer does not come within the wait timeout: the connection is
    closed, the call runs on the thread path (and succeeds), and the store opens a new
    inline connection in the background."""
    monkeypatch.setattr(postgres_inline, "WAIT_TIMEOUT_SECONDS", 0.2)
    with trio.fail_after(20):
        row = await store.read(lambda tx: tx.fetchone("SELECT pg_sleep(0.6) AS slept"))
        assert row == {"slept": ""}
        assert store.inline_fallbacks == 1
        await store.inline_connections_restored()
        assert store.inline_connections_open == 2
    before = store.inline_commits
    await store.read(lambda tx: tx.fetchone("SELECT 1 AS one"))
    await store.read(lambda tx: tx.fetchone("SELECT 1 AS one"))
    assert store.inline_commits == before + 2


async def test_inline_connections_killed_while_idle_are_replaced(
        store: PostgresStore, postgres_url: str) -> None:
    """The server ends the inline connections' processes: the next calls succeed on the
    thread path, and new inline connections take over."""
    killed = admin(postgres_url, "SELECT pg_terminate_backend(pid) AS killed "
                   "FROM pg_stat_activity WHERE application_name = %s "
                   "AND pid = ANY(%s)", postgres.schema_of(postgres_url),
                   store.inline_backend_pids())
    assert len(killed) == 2
    with trio.fail_after(20):
        for patient in ("hal", "ida"):
            await store.transaction(lambda tx, p=patient: tx.execute(
                "UPDATE beds SET patient = ? WHERE no = ?", (p, 1)))
        await store.inline_connections_restored()
        assert store.inline_connections_open == 2
    before = store.inline_commits
    await store.transaction(lambda tx: tx.execute(
        "UPDATE beds SET patient = ? WHERE no = ?", ("jo", 1)))
    assert store.inline_commits == before + 1
    assert await store.read(lambda tx: tx.values(
        "SELECT patient FROM beds WHERE no = ?", (1,))) == [("jo",)]


async def test_many_callers_share_the_inline_connections_and_the_threads(
        store: PostgresStore) -> None:
    """More concurrent callers than inline connections: every call commits, on an inline
    connection or on the thread path, each exactly once."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for no in range(10, 60):
                nursery.start_soon(store.transaction, lambda tx, n=no: tx.execute(
                    "INSERT INTO beds (ward, no) VALUES (?, ?)", ("b", n)))
    assert await store.read(lambda tx: tx.values(
        "SELECT count(*) AS n FROM beds WHERE ward = ?", ("b",))) == [(50,)]
    assert store.statistics().transactions_committed >= 51


async def test_a_table_altered_by_another_instance_keeps_working(
        store: PostgresStore, postgres_url: str) -> None:
    """A prepared SELECT * of a table another instance altered since fails on the server
    ("cached plan must not change result type"): that call falls back, the connection
    forgets its plans, and the next call runs inline again with the new columns."""
    def everything(tx: Tx) -> Any:
        return tx.fetchall("SELECT * FROM beds WHERE no = ?", (2,))

    for _ in range(3):
        assert await store.read(everything) == [
            {"ward": "a", "no": 2, "patient": "ann", "weight": 61.5}]
    admin(postgres_url, "ALTER TABLE beds ADD COLUMN nurse TEXT")
    for _ in range(4):  # whichever inline connection a call takes
        assert await store.read(everything) == [
            {"ward": "a", "no": 2, "patient": "ann", "weight": 61.5, "nurse": None}]
    before = store.inline_commits
    await store.read(everything)
    assert store.inline_commits == before + 1


async def test_the_configured_number_of_inline_connections(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """``store.postgres_inline_connections`` (4 by default, 0 to 64) is how many inline
    connections an instance's store opens; 0 runs every transaction in a worker thread."""
    assert load_settings(None).store.postgres_inline_connections == 4
    config = tmp_path / "lcx.toml"
    config.write_text("[store]\npostgres_inline_connections = 0\n")
    assert load_settings(config).store.postgres_inline_connections == 0
    for bad in (-1, 65):
        config.write_text(f"[store]\npostgres_inline_connections = {bad}\n")
        with pytest.raises(ConfigError, match=r"store\.postgres_inline_connections"):
            load_settings(config)
    for wanted in (0, 3):
        async with open_store(postgres_url, postgres_inline_connections=wanted) as opened:
            assert isinstance(opened, PostgresStore)
            assert opened.inline_connections_open == wanted
            before = opened.statistics().inline_commits
            await opened.transaction(lambda tx: tx.fetchone("SELECT 1 AS one"))
            assert opened.statistics().inline_commits == before + (1 if wanted else 0)
