"""A file store commits on the Trio thread (no thread hop for a write): the write is on
disk when it returns; one that meets another connection's write lock does not block the
Trio thread but waits for the lock on the writer thread, and then commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import trio

from lcx.store import Tx
from lcx.store.sqlite import SqliteStore

SCHEMA = "CREATE TABLE items (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def put(key: str) -> Callable[[Tx], str]:
    def insert(tx: Tx) -> str:
        tx.execute("INSERT INTO items (key, value) VALUES (?, ?)", (key, "v"))
        return key
    return insert


def keys_on_disk(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM items")}


async def test_a_write_commits_on_the_trio_thread_and_is_on_disk_when_it_returns(
        tmp_path: Path) -> None:
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)
    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        before = store.inline_commits
        assert await store.transaction(put("a")) == "a"
        assert store.inline_commits == before + 1
        assert store.inline_write_fallbacks == 0
        assert keys_on_disk(path) == {"a"}
    finally:
        await store.close()


async def test_a_write_behind_another_connections_lock_waits_off_the_trio_thread(
        tmp_path: Path) -> None:
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        other.execute("INSERT INTO items (key, value) VALUES ('theirs', 'v')")
        done = trio.Event()
        ticks = 0

        async def write() -> None:
            await store.transaction(put("ours"))
            done.set()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                for _ in range(20):  # the Trio thread goes on meanwhile
                    await trio.sleep(0.01)
                    ticks += 1
                assert not done.is_set()
                other.execute("COMMIT")
                await done.wait()
        assert ticks == 20
        assert store.inline_write_fallbacks == 1
        assert keys_on_disk(path) == {"theirs", "ours"}
    finally:
        other.close()
        await store.close()


async def test_a_long_transaction_is_handed_to_the_writer_thread(tmp_path: Path) -> None:
    """Statements that outrun the write budget are aborted on the Trio thread and the
    transaction runs (once more, whole) on the writer thread: it still commits."""
    path = tmp_path / "lcx.db"
    store = await SqliteStore.open(path)

    def long(tx: Tx) -> int:
        tx.execute("INSERT INTO items (key, value) VALUES ('long', 'v')")
        row = tx.fetchone("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                          "WHERE x < 3000000) SELECT count(*) AS n FROM c")
        assert row is not None
        return int(row["n"])

    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        with trio.fail_after(30):
            assert await store.transaction(long) == 3000000
        assert store.inline_write_fallbacks == 1
        assert keys_on_disk(path) == {"long"}
        assert await store.transaction(put("after")) == "after"  # back on the Trio thread
        assert store.inline_write_fallbacks == 1
    finally:
        await store.close()
