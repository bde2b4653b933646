"""`lcx dlq list|replay|drop` as real processes against a prepared SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from fakes.bot import outbox_event
from support.lcx_process import basic_config

from lcx.store import Store, Tx, open_store
from lcx.store.outbox import OutboxEvent, dead_count, enqueue, list_dead, mark_dead, next_in_lane

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    tenants = "".join(f'[[tenants]]\nid = "{tenant}"\norganization_id = "o1"\n'
                      for tenant in ("t1", "t2"))
    (tmp_path / "lcx.toml").write_text(basic_config(tmp_path, extra=tenants))
    async with open_store(f"sqlite:///{tmp_path}/lcx.db") as opened:
        yield opened


async def bury(store: Store, *events: OutboxEvent) -> list[str]:
    def insert(tx: Tx) -> None:
        for event in events:
            enqueue(tx, event)
            mark_dead(tx, event.id, 8, f"HTTP 503 for {event.conversation_id}")

    await store.transaction(insert)
    return [event.id for event in events]


async def lcx(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LCX_CONFIG"}
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "lcx", "dlq", *args, "--config", "lcx.toml"], cwd=cwd,
            env=env, capture_stdout=True, capture_stderr=True, check=False)


async def test_list_prints_a_table_of_dead_events(store: Store, tmp_path: Path) -> None:
    """list prints id, tenant, conversation, type, attempts, last error, created."""
    ids = await bury(store, outbox_event("c1", 1), outbox_event("c2", 1, tenant_id="t2"))
    done = await lcx(tmp_path, "list")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.decode().splitlines()
    assert header.split() == ["ID", "TENANT", "CONVERSATION", "TYPE", "ATTEMPTS", "LAST",
                              "ERROR", "CREATED"]
    assert [line.split()[:5] for line in lines] == [[ids[0], "t1", "c1", "MESSAGE", "8"],
                                                   [ids[1], "t2", "c2", "MESSAGE", "8"]]
    assert "HTTP 503 for c1" in lines[0]
    only_t2 = await lcx(tmp_path, "list", "--tenant", "t2")
    assert [line.split()[0] for line in only_t2.stdout.decode().splitlines()[1:]] == [ids[1]]


async def test_list_of_one_event_shows_its_whole_last_error(store: Store,
                                                            tmp_path: Path) -> None:
    """The table cuts LAST ERROR to 60 characters, except for the events asked for by id."""
    event = outbox_event("c1", 1)
    error = "HTTP 503 from the bot: " + "upstream connect error or disconnect " * 4

    def insert(tx: Tx) -> None:
        enqueue(tx, event)
        mark_dead(tx, event.id, 8, error)

    await store.transaction(insert)
    table = (await lcx(tmp_path, "list")).stdout.decode()
    assert error.strip() not in table
    assert "..." in table
    one = await lcx(tmp_path, "list", "--id", event.id)
    assert one.returncode == 0, one.stderr
    assert error.strip() in one.stdout.decode()


async def test_an_unknown_tenant_is_an_error(store: Store, tmp_path: Path) -> None:
    """--tenant naming no configured tenant (and none with dead events) exits 2."""
    await bury(store, outbox_event("c1", 1))
    for action in (["list"], ["replay", "--all"], ["drop", "--all"]):
        done = await lcx(tmp_path, *action, "--tenant", "t9")
        assert done.returncode == 2
        assert done.stdout == b""
        assert b"unknown tenant 't9' (configured: t1, t2)" in done.stderr
    assert await store.read(lambda tx: dead_count(tx)) == 1


async def test_a_removed_tenant_with_dead_events_can_still_be_listed(
        store: Store, tmp_path: Path) -> None:
    """Dead events of a tenant no longer configured stay reachable."""
    ids = await bury(store, outbox_event("c1", 1, tenant_id="t-old"))
    done = await lcx(tmp_path, "list", "--tenant", "t-old")
    assert done.returncode == 0, done.stderr
    assert ids[0] in done.stdout.decode()


async def test_replay_needs_ids_or_all(store: Store, tmp_path: Path) -> None:
    """replay and drop without --id or --all change nothing and exit 2."""
    await bury(store, outbox_event("c1", 1))
    for action in ("replay", "drop"):
        done = await lcx(tmp_path, action)
        assert done.returncode == 2
        assert b"--all" in done.stderr
    assert await store.read(lambda tx: dead_count(tx)) == 1


async def test_replay_by_id_makes_the_event_pending(store: Store, tmp_path: Path) -> None:
    """replay --id puts that event back to pending with 0 attempts, and only that one."""
    ids = await bury(store, outbox_event("c1", 1), outbox_event("c2", 1))
    done = await lcx(tmp_path, "replay", "--id", ids[0])
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "replayed 1 dead event(s)"
    assert b"replay: 1/1" in done.stderr
    row = await store.read(lambda tx: next_in_lane(tx, "c1", "bot"))
    assert row is not None
    assert (row.id, row.attempts) == (ids[0], 0)
    assert [r.id for r in await store.read(lambda tx: list_dead(tx))] == [ids[1]]


async def test_drop_all_of_a_tenant_deletes_only_those(store: Store, tmp_path: Path) -> None:
    """drop --all --tenant deletes that tenant's dead events and reports the count."""
    await bury(store, *(outbox_event(f"c{i}", 1, tenant_id="t2") for i in range(3)),
               outbox_event("k", 1))
    done = await lcx(tmp_path, "drop", "--all", "--tenant", "t2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "dropped 3 dead event(s)"
    assert [r.tenant_id for r in await store.read(lambda tx: list_dead(tx))] == ["t1"]
    empty = await lcx(tmp_path, "list", "--tenant", "t2")
    assert empty.stdout.decode().strip() == "no dead events"


async def test_fake_bot_runs_as_a_process() -> None:
    """`python -m tests.fakes.bot --port 0` prints its URL and lists what it received."""
    command = [sys.executable, "-m", "tests.fakes.bot", "--port", "0", "--secret", "k"]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(partial(
                trio.run_process, command, cwd=ROOT, stdout=subprocess.PIPE, check=False))
            try:
                assert process.stdout is not None
                line = (await process.stdout.receive_some(4096)).decode()
                url = line.removeprefix("fake bot listening on ").strip()
                async with httpx.AsyncClient(base_url=url) as client:
                    posted = await client.post("/livechat-events", content=b'{"id":"e1"}')
                    listed = (await client.get("/_fake/received")).json()
            finally:
                process.kill()
    assert posted.status_code == 200
    assert [(r["body"], r["signatureValid"]) for r in listed] == [('{"id":"e1"}', False)]
    assert json.loads(listed[0]["body"]) == {"id": "e1"}
