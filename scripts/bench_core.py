"""Store micro-benchmark: the embedded SQLite store alone, without HTTP or websockets.

Figures (each µs per operation, wall and process CPU, all threads counted):

* ``point_read``: ``store.read(load_conversation)`` of one conversation by id;
* ``post_C``: the store part of posting a message into one of C open conversations
  (one transaction: ``append_message`` then ``save_conversation`` guarded by the counters),
  one post at a time, for C = 20 and 1,000;
* ``post_keyed``: a post that also stores its idempotency key (a bot message with an
  ``id``), 20 open: ``claim`` where the tree has it, else look-up then insert;
* ``batch_N``: N concurrent writers each committing small posts; with group commit many
  share one fsync (the figure is per transaction).

Run it against another tree for side-by-side figures (the script itself may come from this
tree; the ``lcx`` it measures is the first one on ``PYTHONPATH``)::

    .venv/bin/python scripts/bench_core.py --json new.json
    PYTHONPATH=/tmp/lcx-base .venv/bin/python scripts/bench_core.py --json base.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

import lcx
from lcx.model import Author, Context, Conversation, Message, Subscriber
from lcx.store import Store, Tx, open_store
from lcx.store import conversations as conversations_module
from lcx.store.conversations import (
    append_message,
    insert_conversation,
    load_conversation,
    remember,
    remembered,
    save_conversation,
)

AT = "2026-11-22T00:00:00.000Z"


def conversation(n: int) -> Conversation:
    """An accepted conversation numbered ``n``."""
    return Conversation(id=f"c{n}", request_id=f"r{n}", org_id="o1", tenant_id="t1",
                        sub_handle=f"u{n}", user_group_id="g1", provider="helvia",
                        channel="bot", status="active", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[], flags={}, created_at=AT,
                        queued_at=AT, last_activity_at=AT, agent_id="alice")


def post(state: dict[str, Conversation], cid: str) -> Callable[[Tx], None]:
    """The store part of one user message into conversation ``cid``."""
    def fn(tx: Tx) -> None:
        before = state[cid]
        seq = before.last_seq + 1
        after = msgspec_replace(before, seq)
        append_message(tx, Message(conversation_id=cid, seq=seq, message_id=f"{cid}-{seq}",
                                   author=Author(type="subscriber"), type="text", at=AT,
                                   text="hello"), org_id="o1", client_id=None)
        save_conversation(tx, after, expected=before)
        state[cid] = after
    return fn


def keyed_post(state: dict[str, Conversation], cid: str, key: str) -> Callable[[Tx], None]:
    """A post that stores its idempotency key, the way the tree under test does it."""
    plain = post(state, cid)
    claim = getattr(conversations_module, "claim", None)

    def fn(tx: Tx) -> None:
        if claim is not None:
            if claim(tx, "bot:o1", key, b'{"seq":1}', AT) is not None:
                return
            plain(tx)
            return
        if remembered(tx, "bot:o1", key) is not None:
            return
        plain(tx)
        remember(tx, "bot:o1", key, b'{"seq":1}', AT)
    return fn


def msgspec_replace(conv: Conversation, seq: int) -> Conversation:
    """``conv`` with a new last seq and activity time (what a post changes)."""
    return msgspec.structs.replace(conv, last_seq=seq, last_activity_at=AT)


async def timed(count: int, op: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    """Run ``op(i)`` ``count`` times one after another; µs per op, wall and CPU."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        await op(i)
    return {"wall_us": (time.perf_counter() - wall) / count * 1e6,
            "cpu_us": (time.process_time() - cpu) / count * 1e6}


async def setup(store: Store, conversations: int) -> dict[str, Conversation]:
    """Insert ``conversations`` open conversations; their states by id."""
    convs = [conversation(n) for n in range(conversations)]

    def fn(tx: Tx) -> None:
        for conv in convs:
            insert_conversation(tx, conv)
    await store.transaction(fn)
    return {conv.id: conv for conv in convs}


async def post_figures(store: Store, open_count: int, reads: int, posts: int
                       ) -> dict[str, Any]:
    """Point reads (with 20 open) and posts, one at a time, among ``open_count`` open."""
    state = await setup(store, open_count)
    ids = list(state)
    figures: dict[str, Any] = {}
    if open_count == 20:
        figures["point_read"] = await timed(
            reads, lambda i: store.read(lambda tx: load_conversation(tx, ids[i % 20])))
    figures[f"post_{open_count}"] = await timed(
        posts, lambda i: store.transaction(post(state, ids[i % len(ids)])))
    if open_count == 20:
        figures["post_keyed"] = await timed(
            posts, lambda i: store.transaction(keyed_post(state, ids[i % 20], f"m{i}")))
    return figures


async def bench(directory: Path, reads: int, posts: int, writers: int) -> dict[str, Any]:
    """Every figure, each on a fresh store file."""
    figures: dict[str, Any] = {}
    for open_count in (20, 1000):
        async with open_store(f"sqlite:///{directory}/post{open_count}.db") as store:
            figures.update(await post_figures(store, open_count, reads, posts))
    async with open_store(f"sqlite:///{directory}/batch.db") as store:
        state = await setup(store, writers)
        ids = list(state)
        per_writer = max(1, posts // writers)

        async def writer(cid: str) -> None:
            for _ in range(per_writer):
                await store.transaction(post(state, cid))

        wall, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for cid in ids:
                nursery.start_soon(writer, cid)
        done = per_writer * writers
        figures[f"batch_{writers}"] = {
            "wall_us": (time.perf_counter() - wall) / done * 1e6,
            "cpu_us": (time.process_time() - cpu) / done * 1e6}
    return figures


def main() -> None:
    """Parse arguments, run, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--label", default="", help="stored in the JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        figures = trio.run(bench, Path(directory), args.reads, args.posts, args.writers)
    print(f"lcx from {Path(lcx.__file__).parent.parent}")
    for name, figure in figures.items():
        print(f"{name:12} {figure['wall_us']:9.1f} µs/op wall {figure['cpu_us']:9.1f} µs/op cpu")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"label": args.label, "lcx": str(Path(lcx.__file__).parent.parent),
             "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
