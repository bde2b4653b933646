"""SQLite group commit: transactions submitted while the writer is busy commit together
(one fsync), every one of them is durable, and a failing one fails only its own caller."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from support.waiting import eventually

from lcx.config import load_settings
from lcx.errors import ConfigError, IntegrityConflict, StoreError
from lcx.store import Tx, open_store
from lcx.store.sqlite import SqliteStore

SCHEMA = "CREATE TABLE items (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def put(key: str) -> Callable[[Tx], str]:
    def insert(tx: Tx) -> str:
        tx.execute("INSERT INTO items (key, value) VALUES (?, ?)", (key, "v"))
        return key
    return insert


def hold(started: trio.Event, release: threading.Event) -> Callable[[Tx], None]:
    """A write that signals it runs, then keeps the writer busy until ``release``."""
    token = trio.lowlevel.current_trio_token()

    def fn(tx: Tx) -> None:
        put("held")(tx)
        trio.from_thread.run_sync(started.set, trio_token=token)
        release.wait(timeout=10)
    return fn


def keys_on_disk(path: Path) -> set[str]:
    """The keys a fresh connection (another reader of the file) sees."""
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM items")}


async def run_behind_a_held_writer(store: SqliteStore, jobs: list[Callable[[Tx], Any]]
                                   ) -> list[Any]:
    """Queue ``jobs`` while the writer is busy, release it; each job's result or error."""
    started, release = trio.Event(), threading.Event()
    outcomes: list[Any] = [None] * len(jobs)

    async def one(index: int) -> None:
        try:
            outcomes[index] = await store.transaction(jobs[index])
        except Exception as exc:
            outcomes[index] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.transaction, hold(started, release))
            await started.wait()
            for index in range(len(jobs)):
                nursery.start_soon(one, index)
            await eventually(
                lambda: store.statistics().transactions_in_flight == len(jobs) + 1)
            release.set()
    return outcomes


async def test_concurrent_transactions_commit_together_and_are_all_durable(
        tmp_path: Path) -> None:
    """50 transactions queued behind a busy writer commit in one batch; all are on disk."""
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)
    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        batches = store.commit_batches
        keys = [f"k{i}" for i in range(50)]
        outcomes = await run_behind_a_held_writer(store, [put(key) for key in keys])
        assert outcomes == keys
        assert store.commit_batches - batches == 2  # the held write, then all 50 at once
        assert store.savepoint_batches == 0  # all succeeded: no savepoint per job
    finally:
        await store.close()
    assert keys_on_disk(path) == {*keys, "held"}


async def test_a_failing_transaction_fails_only_its_own_caller(tmp_path: Path) -> None:
    """In one batch: a duplicate key and an exception raised by fn fail their callers with
    their own errors; the others commit (the batch is run again, each job in a savepoint)."""
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)

    def broken(tx: Tx) -> None:
        put("broken")(tx)
        raise ValueError("fn failed")

    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        await store.transaction(put("taken"))
        batches = store.commit_batches
        outcomes = await run_behind_a_held_writer(
            store, [put("a"), put("taken"), put("b"), broken, put("c")])
        assert store.commit_batches - batches == 2
        assert store.savepoint_batches == 1  # the plain try failed; redone with savepoints
    finally:
        await store.close()
    assert outcomes[0] == "a"
    assert isinstance(outcomes[1], IntegrityConflict)
    assert isinstance(outcomes[1].__cause__, sqlite3.IntegrityError)
    assert outcomes[2] == "b"
    assert isinstance(outcomes[3], ValueError)
    assert outcomes[4] == "c"
    assert keys_on_disk(path) == {"held", "taken", "a", "b", "c"}


async def test_a_transaction_that_breaks_the_batch_is_isolated(tmp_path: Path) -> None:
    """A fn that ends the group's transaction itself makes the batch run one by one: it
    fails as it would alone, and the others still commit exactly once."""
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)

    def commits_itself(tx: Tx) -> None:
        tx.execute("COMMIT")

    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        outcomes = await run_behind_a_held_writer(
            store, [put("a"), commits_itself, put("b")])
        assert outcomes[0] == "a"
        assert isinstance(outcomes[1], StoreError)
        assert outcomes[2] == "b"
    finally:
        await store.close()
    assert keys_on_disk(path) == {"held", "a", "b"}


@pytest.mark.parametrize("mode", ["full", "normal"])
async def test_synchronous_mode_is_applied(tmp_path: Path, mode: str) -> None:
    """``synchronous`` sets the writer's PRAGMA (FULL = 2 by default, NORMAL = 1 opt-in)."""
    store = await SqliteStore.open(tmp_path / "lcx.db", synchronous=mode)
    try:
        row = await store.transaction(lambda tx: tx.fetchone("PRAGMA synchronous"))
    finally:
        await store.close()
    assert row is not None
    assert row["synchronous"] == {"full": 2, "normal": 1}[mode]


async def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    """Only full and normal exist."""
    with pytest.raises(StoreError, match="synchronous"):
        await SqliteStore.open(tmp_path / "lcx.db", synchronous="off")


async def test_the_config_key_reaches_the_store(tmp_path: Path) -> None:
    """``store.sqlite_synchronous = "normal"`` opens the store with NORMAL; "off" is refused
    when the configuration loads."""
    config = tmp_path / "lcx.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/lcx.db"\n'
                      'sqlite_synchronous = "normal"\n')
    settings = load_settings(config, environ={})
    async with open_store(settings.store.url,
                          sqlite_synchronous=settings.store.sqlite_synchronous) as store:
        row = await store.transaction(lambda tx: tx.fetchone("PRAGMA synchronous"))
    assert row is not None
    assert row["synchronous"] == 1
    config.write_text('[store]\nsqlite_synchronous = "off"\n')
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        load_settings(config, environ={})
