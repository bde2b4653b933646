"""The PostgreSQL store beyond the shared contract: SQL translation, pool, reconnection,
serialization retries, concurrent migration runners, and the schema's collation."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql
from support import postgres

from lcx.errors import IntegrityConflict, StoreError, StoreUnavailable
from lcx.store import Row, Store, Tx, open_store
from lcx.store.postgres import PostgresStore, open_postgres_store, translate_sql

pytest_plugins = ["support.stores"]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[Store]:
    async with open_store(postgres_url) as opened:
        await opened.transaction(lambda tx: tx.executescript(
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call INTEGER NOT NULL);"
            "INSERT INTO doctors VALUES ('alice', 1), ('bob', 1);"))
        yield opened


def admin(url: str, statement: str, *params: Any) -> list[Row]:
    """Run one statement on a separate connection to ``url`` (outside any store)."""
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def terminate_store_connections(url: str) -> int:
    """Kill every server process serving the store of ``url``; answer how many."""
    rows = admin(url, "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity "
                      "WHERE application_name = %s AND pid <> pg_backend_pid()",
                 postgres.schema_of(url))
    return len(rows)


def test_translate_sql_placeholders_and_percent() -> None:
    """? becomes %s and % becomes %%, once per distinct SQL text (cached)."""
    assert translate_sql("SELECT ? AS a, '5%' AS b WHERE x LIKE ?") == \
        "SELECT %s AS a, '5%%' AS b WHERE x LIKE %s"
    before = translate_sql.cache_info().hits
    translate_sql("SELECT ? AS a, '5%' AS b WHERE x LIKE ?")
    assert translate_sql.cache_info().hits == before + 1


async def test_percent_in_sql_text_and_in_parameters(store: Store) -> None:
    """A % written in the SQL text survives translation with and without parameters, and
    parameters holding %s or ? are values, not placeholders."""
    row = await store.read(lambda tx: tx.fetchone("SELECT '5%' AS p"))
    assert row == {"p": "5%"}
    row = await store.read(lambda tx: tx.fetchone(
        "SELECT '5%' AS p, ? AS q, ? AS r", ("%s", "?")))
    assert row == {"p": "5%", "q": "%s", "r": "?"}


async def test_error_mapping_keeps_the_driver_error(store: Store) -> None:
    """A unique violation is IntegrityConflict from UniqueViolation; a write in read() is
    a StoreError from ReadOnlySqlTransaction."""
    with pytest.raises(IntegrityConflict, match="23505") as conflict:
        await store.transaction(lambda tx: tx.execute(
            "INSERT INTO doctors VALUES (?, ?)", ("alice", 0)))
    assert isinstance(conflict.value.__cause__, psycopg.errors.UniqueViolation)
    with pytest.raises(StoreError, match="read-only") as readonly:
        await store.read(lambda tx: tx.execute("DELETE FROM doctors"))
    assert isinstance(readonly.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)


async def test_an_error_caught_inside_fn_still_aborts(store: Store) -> None:
    """PostgreSQL aborts the transaction at a failed statement: fn catching the error and
    going on gets the error raised at the end, and nothing is committed (SQLite would
    only undo the statement)."""
    def swallow(tx: Tx) -> None:
        tx.execute("UPDATE doctors SET on_call = ?", (0,))
        with contextlib.suppress(psycopg.Error):
            tx.execute("INSERT INTO doctors VALUES (?, ?)", ("alice", 0))

    with pytest.raises(IntegrityConflict) as info:
        await store.transaction(swallow)
    assert "PostgreSQL had aborted the transaction" in str(info.value.__cause__.__notes__)
    rows = await store.read(lambda tx: tx.fetchall("SELECT on_call FROM doctors"))
    assert rows == [{"on_call": 1}, {"on_call": 1}]


async def test_executescript_is_never_prepared(store: Store) -> None:
    """The same multi-statement script runs many times (psycopg prepares a statement
    from its 5th run, and a prepared statement cannot hold several)."""
    script = "UPDATE doctors SET on_call = 1; UPDATE doctors SET on_call = 1;"
    for _ in range(8):
        await store.transaction(lambda tx: tx.executescript(script))


def going_off_call(name: str, both_read: threading.Barrier,
                   calls: list[str]) -> Callable[[Tx], None]:
    """Write skew: leave the rota if someone else is on call. Two of these at once are
    not serializable; the first run of each waits until both have read."""
    def fn(tx: Tx) -> None:
        calls.append(name)
        row = tx.fetchone("SELECT count(*) AS n FROM doctors WHERE on_call = ?", (1,))
        if calls.count(name) == 1:
            both_read.wait(timeout=5)
        if row is not None and row["n"] >= 2:
            tx.execute("UPDATE doctors SET on_call = ? WHERE name = ?", (0, name))
    return fn


@pytest.fixture
async def thread_store(postgres_url: str) -> AsyncIterator[Store]:
    """A store whose transactions all run in worker threads (no inline connection): its
    ``fn`` may block, here to make two transactions overlap."""
    async with open_postgres_store(postgres_url, inline_connections=0) as opened:
        await opened.transaction(lambda tx: tx.executescript(
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call INTEGER NOT NULL);"
            "INSERT INTO doctors VALUES ('alice', 1), ('bob', 1);"))
        yield opened


async def test_serialization_failure_is_retried(thread_store: Store) -> None:
    """Two write-skewed transactions both commit: one fails to serialize and runs again,
    and the result is that of a serial order (exactly one doctor left on call)."""
    store = thread_store
    both_read, calls = threading.Barrier(2), []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for name in ("alice", "bob"):
                nursery.start_soon(store.transaction, going_off_call(name, both_read, calls))
    assert len(calls) == 3
    rows = await store.read(lambda tx: tx.fetchall("SELECT name FROM doctors WHERE on_call = 1"))
    assert len(rows) == 1
    assert store.statistics().transactions_failed == 0


async def test_serialization_failure_after_the_retries_is_unavailable(
        postgres_url: str) -> None:
    """With no retry left, a serialization failure is StoreUnavailable from
    SerializationFailure, and the other transaction commits."""
    async with open_postgres_store(postgres_url, retries=0, inline_connections=0) as store:
        await store.transaction(lambda tx: tx.executescript(
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call INTEGER NOT NULL);"
            "INSERT INTO doctors VALUES ('alice', 1), ('bob', 1);"))
        both_read, calls = threading.Barrier(2), []
        failures: list[BaseException] = []

        async def one(name: str) -> None:
            try:
                await store.transaction(going_off_call(name, both_read, calls))
            except StoreUnavailable as exc:
                failures.append(exc)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, "alice")
                nursery.start_soon(one, "bob")
    assert len(failures) == 1
    assert isinstance(failures[0].__cause__, psycopg.errors.SerializationFailure)


async def test_concurrent_runners_apply_each_migration_once(postgres_url: str) -> None:
    """Six instances opening one empty database together apply every migration once
    (the advisory lock, and a retry for runners whose snapshot was older)."""
    async def start() -> None:
        async with open_store(postgres_url):
            pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(start)
    rows = admin(postgres_url, "SELECT version, count(*) AS n FROM schema_migrations "
                               "GROUP BY version ORDER BY version")
    assert rows
    assert {row["n"] for row in rows} == {1}


async def test_reconnects_after_its_connections_are_killed(postgres_url: str) -> None:
    """Killing the pool's server processes fails at most the work running on them: ping
    and transactions work again without reopening the store."""
    async with open_store(postgres_url) as store:
        await store.ping()
        assert terminate_store_connections(postgres_url) >= 1
        with trio.fail_after(10):
            while True:
                try:
                    await store.ping()
                    break
                except StoreUnavailable:
                    await trio.sleep(0.05)
        assert await store.read(lambda tx: tx.fetchone("SELECT 1 AS one")) == {"one": 1}


async def test_connections_that_died_idle_are_replaced_without_failing_a_call(
        postgres_url: str) -> None:
    """Connections leave the pool unchecked: when every pooled one died while idle, the
    next transaction and read find out at their BEGIN (nothing ran) and go on with fresh
    connections: no call fails."""
    async with open_postgres_store(postgres_url, min_size=3, max_size=3,
                                   inline_connections=0) as store:
        async def hold() -> None:
            await store.read(lambda tx: tx.fetchone("SELECT pg_sleep(0.1) AS slept"))

        async with trio.open_nursery() as nursery:  # all three connections in use once
            for _ in range(3):
                nursery.start_soon(hold)
        assert terminate_store_connections(postgres_url) == 3
        with trio.fail_after(10):
            assert await store.transaction(lambda tx: tx.fetchone("SELECT 1 AS one")) == {
                "one": 1}
            assert await store.read(lambda tx: tx.fetchone("SELECT 2 AS two")) == {"two": 2}


async def test_connection_killed_mid_transaction(postgres_url: str) -> None:
    """A transaction whose server process dies is StoreUnavailable (and not retried);
    the next one runs on a fresh connection."""
    async with open_store(postgres_url) as store:
        with pytest.raises(StoreUnavailable):
            await store.transaction(lambda tx: tx.fetchone(
                "SELECT pg_terminate_backend(pg_backend_pid()) AS killed"))
        row = await store.transaction(lambda tx: tx.fetchone("SELECT 2 AS two"))
        assert row == {"two": 2}


@pytest.fixture
def own_database() -> Iterator[str]:
    """A store URL for a database of its own (its connections can be refused)."""
    postgres.require_postgres()
    try:
        name = postgres.create_database("lcx_test_own")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("the test role may not create databases")
    try:
        yield postgres.database_url(name, application_name=name)
    finally:
        postgres.drop_database(name)


def allow_connections(url: str, name: str, allow: bool) -> None:
    statement = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.Literal(allow))
    with psycopg.connect(postgres.admin_url(), autocommit=True) as conn:
        conn.execute(statement)
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s", (name,))


async def test_ping_fails_while_the_database_is_down_then_recovers(own_database: str) -> None:
    """While the database refuses connections ping() raises StoreUnavailable within its
    timeout; once it accepts them again ping() and transactions recover by themselves."""
    name = postgres.schema_of(own_database)
    async with open_postgres_store(own_database, ping_timeout=0.5,
                                   acquire_timeout=0.5) as store:
        await store.ping()
        allow_connections(own_database, name, False)
        try:
            with trio.fail_after(5):
                with pytest.raises(StoreUnavailable):
                    await store.ping()
                with pytest.raises(StoreUnavailable):
                    await store.read(lambda tx: tx.fetchone("SELECT 1 AS one"))
        finally:
            allow_connections(own_database, name, True)
        with trio.fail_after(10):
            while True:
                try:
                    await store.ping()
                    break
                except StoreUnavailable:
                    await trio.sleep(0.1)
        assert await store.transaction(lambda tx: tx.fetchone("SELECT 1 AS one")) == {"one": 1}


async def test_unreachable_server_and_malformed_url() -> None:
    """Opening a server that does not answer is StoreUnavailable naming host and database
    but not the password; a malformed URL is a StoreError."""
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1/nodb") as info:
        async with open_store("postgresql://u:secret@127.0.0.1:1/nodb?connect_timeout=2"):
            pass
    assert "secret" not in str(info.value)
    with pytest.raises(StoreError, match="malformed postgresql URL"):
        async with open_store("postgresql://host/db?no_such_option=1"):
            pass


async def test_more_callers_than_connections(postgres_url: str) -> None:
    """Callers beyond the pool's size queue for a connection instead of failing, and
    reads run concurrently on separate connections."""
    async with open_postgres_store(postgres_url, max_size=2, inline_connections=0) as store:
        barrier = threading.Barrier(2, timeout=5)

        def meet(tx: Tx) -> Row | None:
            barrier.wait()
            return tx.fetchone("SELECT pg_backend_pid() AS pid")

        results: list[Row | None] = []

        async def one(fn: Callable[[Tx], Row | None]) -> None:
            results.append(await store.read(fn))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, meet)
                nursery.start_soon(one, meet)
            assert len({row["pid"] for row in results if row}) == 2
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(store.transaction, lambda tx: tx.fetchone("SELECT 1 AS x"))
        assert store.statistics().transactions_committed == 20


async def test_cancel_while_waiting_for_a_connection_never_runs_fn(postgres_url: str) -> None:
    """A call cancelled while every connection is busy never runs and counts as failed."""
    async with open_postgres_store(postgres_url, max_size=1, inline_connections=0) as store:
        started, release = trio.Event(), threading.Event()
        ran: list[str] = []

        def hold(tx: Tx) -> None:
            trio.from_thread.run_sync(started.set)
            release.wait(timeout=10)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.transaction, hold)
                await started.wait()
                with trio.move_on_after(0.05):
                    await store.transaction(lambda tx: ran.append("queued"))
                release.set()
        assert ran == []
        assert store.statistics().transactions_failed == 1


async def test_every_text_column_compares_bytewise(store: Store) -> None:
    """Every TEXT column of the shipped schema is COLLATE "C" (a new migration needs a
    .postgres.sql override saying so), since ids and timestamps compare as text."""
    rows = await store.read(lambda tx: tx.fetchall(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type = ? "
        "AND table_name NOT IN (?, ?)", ("text", "schema_migrations", "doctors")))
    assert rows
    assert [r for r in rows if r["collation_name"] != "C"] == []


async def test_dialect_and_type(store: Store) -> None:
    """open_store picks the PostgreSQL backend for postgresql:// URLs."""
    assert store.dialect == "postgres"
    assert isinstance(store, PostgresStore)


async def test_prepared_select_star_survives_an_altered_table(store: Store,
                                                              postgres_url: str) -> None:
    """After another connection adds a column, a prepared SELECT * is run again on fresh
    connections instead of failing ("cached plan must not change result type")."""
    def everyone(tx: Tx) -> list[Row]:
        return tx.fetchall("SELECT * FROM doctors ORDER BY name")

    for _ in range(8):
        assert len(await store.read(everyone)) == 2
    admin(postgres_url, "ALTER TABLE doctors ADD COLUMN shift TEXT")
    rows = await store.read(everyone)
    assert rows[0] == {"name": "alice", "on_call": 1, "shift": None}
