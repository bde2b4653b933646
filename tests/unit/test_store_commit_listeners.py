"""``Tx.announce`` / ``Store.on_commit`` and ``Tx.values``, on every backend: listeners hear
what a transaction announced once it committed, never what was rolled back, and only once
when a group commit ran ``fn`` again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

import pytest
import trio
from support.waiting import eventually

from lcx.errors import IntegrityConflict
from lcx.store import Store, Tx
from lcx.store.sqlite import SqliteStore

pytest_plugins = ["support.stores"]

SCHEMA = "CREATE TABLE heard_items (key TEXT PRIMARY KEY, n INTEGER NOT NULL)"


def put(key: str, n: int = 0) -> Callable[[Tx], str]:
    def insert(tx: Tx) -> str:
        tx.execute("INSERT INTO heard_items (key, n) VALUES (?, ?)", (key, n))
        tx.announce(key)
        tx.announce(f"{key}-again")
        return key
    return insert


class Heard:
    """A listener that records what each commit announced."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []

    def __call__(self, announced: Sequence[object]) -> None:
        self.batches.append(list(announced))


async def test_listeners_hear_a_commit_before_it_returns(any_store: Store) -> None:
    """The announcements of one transaction, in order, once it committed; the listener
    is called before ``transaction`` returns."""
    await any_store.transaction(lambda tx: tx.execute(SCHEMA))
    heard = Heard()
    remove = any_store.on_commit(heard)
    await any_store.transaction(put("a"))
    assert heard.batches == [["a", "a-again"]]
    await any_store.transaction(lambda tx: tx.execute("UPDATE heard_items SET n = 1"))
    assert heard.batches == [["a", "a-again"]]  # nothing announced: nothing told
    remove()
    await any_store.transaction(put("b"))
    assert heard.batches == [["a", "a-again"]]


async def test_a_rolled_back_transaction_tells_nothing(any_store: Store) -> None:
    """fn raises after announcing, or the commit fails: listeners hear nothing."""
    await any_store.transaction(lambda tx: tx.execute(SCHEMA))
    heard = Heard()
    any_store.on_commit(heard)

    def announce_then_fail(tx: Tx) -> None:
        put("x")(tx)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await any_store.transaction(announce_then_fail)
    await any_store.transaction(put("taken"))
    with pytest.raises(IntegrityConflict):
        await any_store.transaction(put("taken"))
    assert heard.batches == [["taken", "taken-again"]]


async def test_a_failing_listener_does_not_fail_the_commit(any_store: Store) -> None:
    """The commit stands and its caller hears so, whatever a listener does."""
    await any_store.transaction(lambda tx: tx.execute(SCHEMA))

    def broken(announced: Sequence[object]) -> None:
        raise RuntimeError("listener bug")

    any_store.on_commit(broken)
    assert await any_store.transaction(put("a")) == "a"


async def test_reads_announce_nothing(any_store: Store) -> None:
    await any_store.transaction(lambda tx: tx.execute(SCHEMA))
    heard = Heard()
    any_store.on_commit(heard)
    await any_store.read(lambda tx: tx.announce("read"))
    assert heard.batches == []


async def test_values_are_tuples_in_column_order(any_store: Store) -> None:
    await any_store.transaction(lambda tx: tx.execute(SCHEMA))
    await any_store.transaction(put("a", 1))
    await any_store.transaction(put("b", 2))
    rows = await any_store.read(lambda tx: tx.values(
        "SELECT n, key FROM heard_items ORDER BY key"))
    assert rows == [(1, "a"), (2, "b")]
    assert await any_store.read(lambda tx: tx.values(
        "SELECT n, key FROM heard_items WHERE key = ?", ("none",))) == []
    assert await any_store.read(lambda tx: tx.fetchall(
        "SELECT n, key FROM heard_items ORDER BY key")) == [{"n": 1, "key": "a"},
                                                             {"n": 2, "key": "b"}]


async def test_a_group_commit_run_again_tells_each_commit_once(tmp_path: Path) -> None:
    """SQLite: a batch with a failing job is run again with savepoints; the jobs that
    commit are heard once each, with what their committed run announced."""
    store = await SqliteStore.open(tmp_path / "lcx.db")
    try:
        await store.transaction(lambda tx: tx.execute(SCHEMA))
        await store.transaction(put("taken"))
        heard = Heard()
        store.on_commit(heard)
        started, release = trio.Event(), threading.Event()
        token = trio.lowlevel.current_trio_token()

        def hold(tx: Tx) -> None:
            trio.from_thread.run_sync(started.set, trio_token=token)
            release.wait(timeout=10)

        async def quietly(fn: Callable[[Tx], str]) -> None:
            with suppress(Exception):
                await store.transaction(fn)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.transaction, hold)
                await started.wait()
                for fn in (put("a"), put("taken"), put("b")):
                    nursery.start_soon(quietly, fn)
                await eventually(lambda: store.statistics().transactions_in_flight == 4)
                release.set()
        assert store.savepoint_batches == 1
        assert sorted(map(tuple, heard.batches)) == [("a", "a-again"), ("b", "b-again")]
    finally:
        await store.close()
