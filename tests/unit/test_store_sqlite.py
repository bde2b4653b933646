"""The SQLite store: transactions, isolation, cancellation, durability, error mapping."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from lcx.errors import IntegrityConflict, StoreError, StoreUnavailable
from lcx.store import Row, Store, StoreStatistics, Tx, open_store
from lcx.store.sqlite import SqliteStore, split_script

T = TypeVar("T")

SCHEMA = """
CREATE TABLE items (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE notes (id INTEGER PRIMARY KEY, item TEXT NOT NULL REFERENCES items (key));
"""


async def _create_schema(store: Store) -> None:
    await store.transaction(lambda tx: tx.executescript(SCHEMA))


@pytest.fixture(params=["file", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path}/lcx.db" if request.param == "file" else "sqlite://:memory:"
    async with open_store(url) as opened:
        await _create_schema(opened)
        yield opened


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/lcx.db") as opened:
        await _create_schema(opened)
        yield opened


def put(key: str, value: str = "v") -> Callable[[Tx], int]:
    return lambda tx: tx.execute("INSERT INTO items (key, value) VALUES (?, ?)", (key, value))


def count_items(tx: Tx) -> int:
    row = tx.fetchone("SELECT count(*) AS n FROM items")
    assert row is not None
    return int(row["n"])


def blocking_write(started: trio.Event, release: threading.Event,
                   *keys: str) -> Callable[[Tx], str]:
    """A write that inserts ``keys[0]``, signals, waits for ``release``, inserts the rest."""
    token = trio.lowlevel.current_trio_token()  # fn runs in one of the store's threads

    def fn(tx: Tx) -> str:
        put(keys[0])(tx)
        trio.from_thread.run_sync(started.set, trio_token=token)
        release.wait(timeout=10)
        for key in keys[1:]:
            put(key)(tx)
        return "done"
    return fn


async def test_transaction_commits_and_read_sees_it(store: Store) -> None:
    """A committed transaction returns fn's result and its rows are visible to reads."""
    def write(tx: Tx) -> str | None:
        put("a", "1")(tx)
        row = tx.fetchone("INSERT INTO items (key, value) VALUES (?, ?) RETURNING key", ("b", "2"))
        return None if row is None else row["key"]

    assert await store.transaction(write) == "b"
    rows = await store.read(lambda tx: tx.fetchall("SELECT key, value FROM items ORDER BY key"))
    assert rows == [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]


async def test_exception_in_fn_rolls_back_and_propagates(store: Store) -> None:
    """An exception raised by fn rolls the whole transaction back and reaches the caller."""
    def fail(tx: Tx) -> None:
        put("a")(tx)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await store.transaction(fail)
    assert await store.read(count_items) == 0


async def test_unique_violation_is_integrity_conflict(store: Store) -> None:
    """A duplicate key raises IntegrityConflict chained to sqlite3, and nothing is kept."""
    await store.transaction(put("a"))

    def dup(tx: Tx) -> None:
        put("b")(tx)
        put("a")(tx)

    with pytest.raises(IntegrityConflict) as info:
        await store.transaction(dup)
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert await store.read(count_items) == 1


async def test_foreign_keys_are_enforced(store: Store) -> None:
    """foreign_keys=ON: a dangling reference raises IntegrityConflict."""
    with pytest.raises(IntegrityConflict):
        await store.transaction(
            lambda tx: tx.execute("INSERT INTO notes (item) VALUES (?)", ("x",)))


async def test_read_refuses_to_write(store: Store) -> None:
    """read() is read-only: a write through its Tx raises StoreError and changes nothing."""
    with pytest.raises(StoreError, match="readonly"):
        await store.read(put("a"))
    assert await store.read(count_items) == 0


async def test_executemany_and_fetchall(store: Store) -> None:
    """executemany inserts every parameter row inside one transaction."""
    await store.transaction(lambda tx: tx.executemany(
        "INSERT INTO items (key, value) VALUES (?, ?)", [(f"k{i}", str(i)) for i in range(5)]))
    assert await store.read(count_items) == 5


async def test_reads_run_while_a_write_is_open(file_store: Store) -> None:
    """A read completes during an open write and sees only the last committed state."""
    started, release = trio.Event(), threading.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(file_store.transaction, blocking_write(started, release, "a"))
            await started.wait()
            assert await file_store.read(count_items) == 0
            release.set()
        assert await file_store.read(count_items) == 1


SLOW_QUERY = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
              " WHERE i < 100000000) SELECT count(*) AS c FROM n")
"""Runs for seconds: far over the Trio-thread read budget (1 ms)."""


def abort_if_inline(tx: Tx) -> None:
    """In a read fn: on the Trio thread, run a query long enough to be aborted there, so
    the store runs the fn again on a reader thread."""
    if threading.current_thread() is threading.main_thread():
        tx.fetchone(SLOW_QUERY)


async def test_reads_run_concurrently(file_store: Store) -> None:
    """Two reads run at the same time (each waits at a barrier only the other can pass)."""
    barrier = threading.Barrier(2, timeout=5)

    def meet(tx: Tx) -> int:
        abort_if_inline(tx)  # the barrier would block the Trio thread: go to the threads
        barrier.wait()
        return count_items(tx)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(file_store.read, meet)
            nursery.start_soon(file_store.read, meet)


async def test_wal_synchronous_full_foreign_keys_and_busy_timeout(file_store: Store) -> None:
    """Writer and reader threads: WAL, synchronous=FULL (2), foreign keys on, 5 s busy
    timeout; the Trio thread's reader and write attempts the same but with no busy
    timeout (a write that meets a lock there goes to the writer thread)."""
    def pragmas(tx: Tx) -> list[Row | None]:
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return [tx.fetchone(f"PRAGMA {name}") for name in names]

    expected = [{"journal_mode": "wal"}, {"synchronous": 2}, {"foreign_keys": 1},
                {"timeout": 5000}]
    def pragmas_on_writer_thread(tx: Tx) -> list[Row | None]:
        if threading.current_thread() is threading.main_thread():
            raise RuntimeError("not on the Trio thread: the writer thread runs it again")
        return pragmas(tx)

    assert await file_store.transaction(pragmas_on_writer_thread) == expected
    assert await file_store.transaction(pragmas) == [*expected[:3], {"timeout": 0}]
    def pragmas_on_reader_thread(tx: Tx) -> list[Row | None]:
        abort_if_inline(tx)
        return pragmas(tx)

    assert await file_store.read(pragmas_on_reader_thread) == expected
    # the Trio thread's own read connection never waits for a lock (it hands off instead)
    assert await file_store.read(pragmas) == [*expected[:3], {"timeout": 0}]


async def test_cancel_during_write_still_commits_whole_transaction(store: Store) -> None:
    """A caller cancelled mid-write gets the full commit, then Cancelled at its next checkpoint."""
    started, release = trio.Event(), threading.Event()
    results: list[str] = []

    async def caller(scope: trio.CancelScope) -> None:
        with scope:
            results.append(await store.transaction(blocking_write(started, release, "a", "b")))
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
    assert scope.cancelled_caught
    assert await store.read(count_items) == 2


async def _write_in_scope(scope: trio.CancelScope, store: Store, fn: Callable[[Tx], T]) -> None:
    with scope:
        await store.transaction(fn)


def two_rows(prefix: str) -> Callable[[Tx], None]:
    return lambda tx: tx.executemany("INSERT INTO items (key, value) VALUES (?, ?)",
                                     [(f"{prefix}a", "v"), (f"{prefix}b", "v")])


def keys_like(prefix: str) -> Callable[[Tx], list[Row]]:
    return lambda tx: tx.fetchall("SELECT key FROM items WHERE key LIKE ?", (f"{prefix}%",))


async def test_cancel_at_any_point_leaves_old_or_new_state(store: Store) -> None:
    """Cancelling a two-row write after k checkpoints never leaves exactly one row."""
    outcomes: list[int] = []
    for k in range(25):
        scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write_in_scope, scope, store, two_rows(f"{k}-"))
            for _ in range(k):
                await trio.lowlevel.checkpoint()
            scope.cancel()
        outcomes.append(len(await store.read(keys_like(f"{k}-"))))
    assert set(outcomes) <= {0, 2}
    assert outcomes[0] == 0  # cancelled before the task started: fn never ran


async def test_cancel_while_waiting_for_the_writer_never_runs_fn(store: Store) -> None:
    """A write cancelled while queued behind another never runs and counts as failed."""
    started, release = trio.Event(), threading.Event()
    ran: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.transaction, blocking_write(started, release, "a"))
            await started.wait()
            with trio.move_on_after(0.05):
                await store.transaction(lambda tx: ran.append("queued"))
            release.set()
    assert ran == []
    assert store.statistics().transactions_failed == 1


async def test_statistics_count_committed_failed_and_in_flight(store: Store) -> None:
    """statistics() counts committed, failed and in-flight transactions."""
    base = store.statistics().transactions_committed
    started, release = trio.Event(), threading.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.transaction, blocking_write(started, release, "a"))
            await started.wait()
            assert store.statistics().transactions_in_flight == 1
            release.set()
    with pytest.raises(IntegrityConflict):
        await store.transaction(put("a"))
    statistics = store.statistics()
    assert statistics == StoreStatistics(
        transactions_committed=base + 1, transactions_failed=1, transactions_in_flight=0,
        commit_batches=statistics.commit_batches, inline_commits=statistics.inline_commits,
        inline_fallbacks=statistics.inline_fallbacks)
    assert statistics.commit_batches >= 1


async def test_ping_and_closed_store(tmp_path: Path) -> None:
    """ping() succeeds on an open store; once closed, every call raises StoreUnavailable."""
    async with open_store(f"sqlite:///{tmp_path}/db.sqlite") as store:
        await store.ping()
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.transaction(count_items)


async def test_close_waits_for_in_flight_write(file_store: Store) -> None:
    """close() lets a write already running commit before closing the connections."""
    started, release = trio.Event(), threading.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(file_store.transaction, blocking_write(started, release, "a"))
            await started.wait()
            nursery.start_soon(file_store.close)
            await trio.sleep(0.05)
            release.set()
    assert file_store.statistics().transactions_committed >= 1
    assert file_store.statistics().transactions_failed == 0


async def test_fn_may_not_end_the_transaction(store: Store) -> None:
    """fn committing on its own is refused: atomicity belongs to the store."""
    with pytest.raises(StoreError, match="ended the transaction"):
        await store.transaction(lambda tx: tx.execute("COMMIT"))
    await store.transaction(put("a"))


async def test_lock_held_by_another_process_is_store_unavailable(tmp_path: Path) -> None:
    """A write lock held elsewhere past busy_timeout raises StoreUnavailable (SQLITE_BUSY)."""
    path = tmp_path / "busy.db"
    store = await SqliteStore.open(path, busy_timeout=0.05)
    try:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="BUSY"):
                await store.transaction(lambda tx: tx.execute("CREATE TABLE t (x INTEGER)"))
        finally:
            other.close()
        await store.transaction(lambda tx: tx.execute("CREATE TABLE t (x INTEGER)"))
    finally:
        await store.close()


def test_split_script_respects_strings_comments_and_triggers() -> None:
    """split_script cuts only at statement ends found by SQLite's tokenizer."""
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x TEXT DEFAULT 'p;q');
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = 'r;s'; DELETE FROM a WHERE x = ';';
        END;
        INSERT INTO a (x) VALUES ('last')"""
    parts = split_script(script)
    assert len(parts) == 3
    assert parts[1].startswith("CREATE TRIGGER")
    assert parts[1].endswith("END;")
    assert parts[2] == "INSERT INTO a (x) VALUES ('last')"
    with closing(sqlite3.connect(":memory:")) as conn:
        for part in parts:
            conn.execute(part).close()
        assert conn.execute("SELECT x FROM a").fetchall() == [("r;s",)]


CHILD = """
import sys, trio
from lcx.store import open_store

async def main(url: str, key: str) -> None:
    async with open_store(url) as store:
        await store.transaction(lambda tx: tx.execute(
            "INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?)",
            (key, "{}", "2024-01-01T00:00:00Z")))
        print("committed", flush=True)
        await trio.sleep_forever()

trio.run(main, sys.argv[1], sys.argv[2])
"""
PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def _write_then_get_killed(url: str, key: str) -> None:
    """Run CHILD, SIGKILL it the moment it reports its commit."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-W", "error", "-c", CHILD, url, key], cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        output = b""
        while b"committed\n" not in output:
            chunk = await proc.stdout.receive_some()
            assert chunk, f"child {key} exited before committing: {output.decode()}"
            output += chunk
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proc.stdout.aclose()


@pytest.mark.slow
async def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    """Rows whose transaction returned survive a SIGKILL of the writing process."""
    url = f"sqlite:///{tmp_path}/crash.db"
    async with open_store(url):
        pass
    keys = [f"org-{i}" for i in range(20)]
    limiter = trio.CapacityLimiter(4)

    async def one(key: str) -> None:
        async with limiter:
            await _write_then_get_killed(url, key)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(one, key)
        async with open_store(url) as store:
            rows = await store.read(lambda tx: tx.fetchall("SELECT org_id FROM org_settings"))
    assert sorted(row["org_id"] for row in rows) == sorted(keys)


async def test_a_read_aborted_on_the_trio_thread_gives_the_same_answer_on_a_reader(
        tmp_path: Path) -> None:
    """A read over the Trio thread's budget is aborted there and run again on a reader
    thread; its caller gets the answer a plain read gives."""
    store = await SqliteStore.open(tmp_path / "lcx.db")
    try:
        await store.transaction(lambda tx: tx.execute(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
        await store.transaction(lambda tx: tx.executemany(
            "INSERT INTO t (k, v) VALUES (?, ?)", [(i, f"v{i}") for i in range(100)]))
        threads: list[bool] = []

        def answer(tx: Tx) -> list[Row]:
            threads.append(threading.current_thread() is threading.main_thread())
            abort_if_inline(tx)
            return tx.fetchall("SELECT k, v FROM t ORDER BY k")

        def plain(tx: Tx) -> list[Row]:
            return tx.fetchall("SELECT k, v FROM t ORDER BY k")

        expected = await store.read(plain)
        assert store.inline_reads == 1
        assert store.inline_fallbacks == 0
        assert await store.read(answer) == expected
        assert threads == [True, False]  # aborted on the Trio thread, re-run on a reader
        assert store.inline_fallbacks == 1
    finally:
        await store.close()
