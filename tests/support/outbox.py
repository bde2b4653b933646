"""Outbox rows for delivery tests: committed as lcx commits them (announced to the
store's commit listeners) or as another writer would (another instance, a previous run:
in the store only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

import trio

from lcx.store import Store, Tx
from lcx.store.base import CommitListener
from lcx.store.outbox import OutboxEvent, enqueue, mark_all_delivered, pending_in_lanes

T = TypeVar("T")


class Counting:
    """A store that counts delivery's lane reads and the batches of its delivery marks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lane_reads = 0
        self.mark_batches: list[int] = []

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        if isinstance(fn, partial) and fn.func is mark_all_delivered:
            self.mark_batches.append(len(fn.keywords["marks"]))
        return await self.store.transaction(fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        if isinstance(fn, partial) and fn.func is pending_in_lanes:
            self.lane_reads += 1
        return await self.store.read(fn)

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        return self.store.on_commit(listener)

    def as_store(self) -> Store:
        """This wrapper where a :class:`~lcx.store.Store` is expected."""
        return cast(Store, self)


class _Unannounced:
    """A :class:`~lcx.store.base.Tx` that writes through and announces nothing."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._tx.execute(sql, params)

    def announce(self, item: object) -> None:
        """Another writer's commit: this process's listeners never hear of it."""


async def add(store: Store, events: Iterable[OutboxEvent]) -> list[OutboxEvent]:
    """Commit ``events`` in one transaction, announced as lcx's own commits are."""
    listed = list(events)

    def insert(tx: Tx) -> None:
        for event in listed:
            enqueue(tx, event)

    await store.transaction(insert)
    return listed


async def add_unannounced(store: Store, events: Iterable[OutboxEvent]) -> list[OutboxEvent]:
    """Commit ``events`` in one transaction that no listener hears of (another writer)."""
    listed = list(events)

    def insert(tx: Tx) -> None:
        for event in listed:
            enqueue(cast(Tx, _Unannounced(tx)), event)

    await store.transaction(insert)
    return listed


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll ``check`` (a store query: the store has no change notification to wait on)."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.01)
