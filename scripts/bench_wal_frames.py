"""WAL frames per commit of a message pair's store writes: deterministic, no timing.

Each page a SQLite commit changes is one frame appended to the WAL (24-byte header and the
page: two ``pwrite64``), and the commit fsyncs them. This drives the store writes of
message pairs on a fresh file store, C open conversations picked at random (seeded):

* ``user``: a bot message (its idempotency key claimed, the message appended, the
  conversation's counters saved);
* ``agent``: an agent's answer (the message, the counters, its ``MESSAGE`` event to the
  bot in the outbox);
* ``mark``: a batch of ``--batch`` delivery marks (the delivery service's 2xx answers).

and counts the frames each commit appended (the WAL's growth; it is checkpointed, away
from the measured commits, before it reaches SQLite's autocheckpoint), over the second half
of the run. ``--pages`` also names the B-trees each kind of commit wrote (``dbstat``).

Run it against another tree for a side-by-side figure (the ``lcx`` measured is the first
one on ``PYTHONPATH``)::

    .venv/bin/python scripts/bench_wal_frames.py --pages
    PYTHONPATH=/tmp/lcx-base .venv/bin/python scripts/bench_wal_frames.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

import lcx
from lcx.ids import new_id
from lcx.model import Author, Context, Conversation, Message, Subscriber, iso, utc_now
from lcx.store import Tx, open_store
from lcx.store import outbox as ob
from lcx.store.conversations import (
    append_message,
    claim,
    insert_conversation,
    save_conversation,
)

FRAME = 24 + 4096
"""A WAL frame's size: its header and a page (SQLite's default page size)."""
CHECKPOINT_AT = 800
"""Frames after which the WAL is checkpointed (SQLite's own autocheckpoint is at 1,000)."""
MARK_BY_KEY = hasattr(ob, "EventKey")
"""Whether this tree's delivery marks take an event's lane position (else its id)."""


def conversation(n: int, at: str) -> Conversation:
    """An accepted conversation numbered ``n``."""
    return Conversation(id=new_id(), request_id=new_id(), org_id="o1", tenant_id="t1",
                        sub_handle=f"u{n}", user_group_id="g1", provider="helvia",
                        channel="bot", status="active", subscriber=Subscriber(name="Ada"),
                        context=Context(), participants=[], flags={}, created_at=at,
                        queued_at=at, last_activity_at=at, agent_id="alice")


class Wal:
    """The WAL file of a store: frames in it, and the pages they hold."""

    def __init__(self, path: str) -> None:
        self.path = path + "-wal"
        self.side = sqlite3.connect(path)

    def frames(self) -> int:
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        return max(0, (size - 32) // FRAME)

    def pages(self, start: int, end: int) -> list[int]:
        """The page numbers of frames ``start`` to ``end``."""
        with open(self.path, "rb") as wal:
            found = []
            for frame in range(start, end):
                wal.seek(32 + frame * FRAME)
                found.append(int.from_bytes(wal.read(4), "big"))
        return found

    def restart(self) -> None:
        self.side.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()

    def names(self) -> dict[int, str]:
        """Page number -> the table or index it belongs to (page 1: the header)."""
        rows = self.side.execute("SELECT pageno, name FROM dbstat").fetchall()
        return {**dict(rows), 1: "(database header)"}


def message_pair(state: dict[str, Conversation], cid: str, text: str
                 ) -> tuple[list[tuple[str, Callable[[Tx], None]]], ob.OutboxEvent]:
    """The two commits of one pair in conversation ``cid``, and the event the second
    enqueues."""
    at = iso(utc_now())
    base = state[cid]
    user = msgspec.structs.replace(base, last_seq=base.last_seq + 1, last_activity_at=at)
    agent = msgspec.structs.replace(user, last_seq=user.last_seq + 1,
                                    last_event_no=user.last_event_no + 1)
    state[cid] = agent
    user_message = Message(conversation_id=cid, seq=user.last_seq, message_id=new_id(),
                           author=Author(type="subscriber"), type="text", at=at, text=text)
    agent_message = Message(conversation_id=cid, seq=agent.last_seq, message_id=new_id(),
                            author=Author(type="agent", id="alice", name="Alice"),
                            type="text", at=at, text=text)
    body = msgspec.json.encode({
        "id": new_id(), "type": "MESSAGE", "tenantId": "t1", "organizationId": "o1",
        "subHandle": base.sub_handle, "requestId": base.request_id, "conversationId": cid,
        "seq": agent.last_seq, "at": at, "data": {"message": msgspec.to_builtins(
            agent_message)}})
    event = ob.OutboxEvent(new_id(), "o1", "t1", cid, agent.last_event_no, ob.TARGET_BOT,
                           "http://127.0.0.1:9000/livechat-events", "MESSAGE", body, at)
    answer = msgspec.json.encode({"seq": user.last_seq, "messageId": user_message.message_id})

    def user_commit(tx: Tx) -> None:
        claim(tx, "bot:t1", new_id(), answer, at)
        save_conversation(tx, user, expected=base)
        append_message(tx, user_message, org_id="o1", client_id=None)

    def agent_commit(tx: Tx) -> None:
        save_conversation(tx, agent, expected=user)
        append_message(tx, agent_message, org_id="o1", client_id=None)
        ob.enqueue(tx, event)

    return [("user", user_commit), ("agent", agent_commit)], event


def mark_batch(events: list[ob.OutboxEvent]) -> Callable[[Tx], None]:
    """One batch of delivery marks, as this tree's delivery service writes it."""
    at = iso(utc_now())
    marks: list[Any] = [(e.key if MARK_BY_KEY else e.id, 1, at) for e in events]
    return lambda tx: ob.mark_all_delivered(tx, marks)


async def run(path: str, conversations: int, pairs: int, batch: int, text: str,
              seed: int) -> dict[str, Any]:
    """Every commit's frames (and pages) by kind, over the second half of the run."""
    rng = random.Random(seed)
    frames: dict[str, list[int]] = defaultdict(list)
    pages: dict[str, Counter[int]] = defaultdict(Counter)
    async with open_store(f"sqlite:///{path}") as store:
        at = iso(utc_now())
        convs = [conversation(n, at) for n in range(conversations)]
        state = {c.id: c for c in convs}

        def setup(tx: Tx) -> None:
            for c in convs:
                insert_conversation(tx, c)
        await store.transaction(setup)
        wal = Wal(path)
        wal.restart()
        unmarked: list[ob.OutboxEvent] = []
        ids = list(state)
        for number in range(pairs):
            measured = number >= pairs // 2
            commits, event = message_pair(state, rng.choice(ids), text)
            unmarked.append(event)
            if len(unmarked) >= batch:
                commits.append(("mark", mark_batch(unmarked)))
                unmarked = []
            for kind, fn in commits:
                start = wal.frames()
                await store.transaction(fn)
                end = wal.frames()
                if measured:
                    frames[kind].append(end - start)
                    pages[kind].update(wal.pages(start, end))
            if wal.frames() > CHECKPOINT_AT:
                wal.restart()
        names = wal.names()
    measured_pairs = pairs - pairs // 2
    figures: dict[str, Any] = {
        kind: {"commits": len(counts), "frames_mean": statistics.mean(counts),
               "frames_median": statistics.median(counts),
               "btrees": _by_btree(pages[kind], names, len(counts))}
        for kind, counts in frames.items()}
    figures["per_pair"] = sum(sum(counts) for counts in frames.values()) / measured_pairs
    return figures


def _by_btree(pages: Counter[int], names: dict[int, str], commits: int) -> dict[str, float]:
    """Frames per commit, by the table or index they belong to."""
    by_name: Counter[str] = Counter()
    for page, count in pages.items():
        by_name[names.get(page, "(freed since)")] += count
    return {name: round(count / commits, 2) for name, count in by_name.most_common()}


def main() -> None:
    """Parse arguments, run, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", "-C", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=10, help="delivery marks per commit")
    parser.add_argument("--text", type=int, default=40, help="characters per message")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pages", action="store_true", help="print the B-trees written")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--label", default="", help="stored in the JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        figures = trio.run(run, str(Path(directory) / "frames.db"), args.conversations,
                           args.pairs, args.batch, "x" * args.text, args.seed)
    print(f"lcx from {Path(lcx.__file__).parent.parent}")
    for kind in ("user", "agent", "mark"):
        figure = figures[kind]
        print(f"{kind:6} {figure['frames_mean']:6.2f} frames/commit (median "
              f"{figure['frames_median']}, {figure['commits']} commits)")
        if args.pages:
            print("       " + ", ".join(f"{n} {v}" for n, v in figure["btrees"].items()))
    print(f"per pair {figures['per_pair']:.2f} frames ({args.batch} marks per mark commit)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "label": args.label, "lcx": str(Path(lcx.__file__).parent.parent),
            "args": vars(args), "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
