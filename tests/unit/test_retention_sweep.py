"""Retention purges against a real SQLite store: files before rows, and the daily sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio
from support.waiting import eventually

from lcx.errors import Unavailable
from lcx.model import Context, Conversation, Subscriber, iso, utc_now
from lcx.org_settings import LivechatSettings, OrgSettings
from lcx.store import Store, Tx, open_store
from lcx.store.conversations import insert_conversation
from services.retention import RetentionSweep, purge_closed


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated SQLite store in ``tmp_path``."""
    async with open_store(f"sqlite:///{tmp_path}/lcx.db") as opened:
        yield opened


def days_ago(days: float) -> str:
    """The stored form of ``days`` days before now."""
    return iso(utc_now() - timedelta(days=days))


def ended(cid: str, org: str, at: str) -> Conversation:
    """A conversation of ``org`` that was created and ended at ``at``."""
    return Conversation(
        id=cid, request_id=f"r-{cid}", org_id=org, tenant_id=f"t-{org}", sub_handle=cid,
        user_group_id="g1", provider="helvia", channel="bot", status="ended",
        subscriber=Subscriber(), context=Context(), participants=[], flags={},
        created_at=at, queued_at=at, last_activity_at=at, ended_at=at)


async def seed(store: Store, *rows: Conversation, backend: str = "local") -> None:
    """Insert ``rows``, each with one attachment of ``backend`` keyed by its id."""
    def write(tx: Tx) -> None:
        for row in rows:
            insert_conversation(tx, row)
            tx.execute("INSERT INTO attachments (id, org_id, conversation_id, name, "
                       "content_type, size, backend, storage_key, uploaded_by, created_at) "
                       "VALUES (?, ?, ?, 'f', 'text/plain', 1, ?, ?, 'bot', ?)",
                       (f"a-{row.id}", row.org_id, row.id, backend, f"key-{row.id}",
                        row.created_at))

    await store.transaction(write)


async def conversation_ids(store: Store) -> set[str]:
    """Ids of every stored conversation."""
    rows = await store.read(lambda tx: tx.fetchall("SELECT id FROM conversations"))
    return {row["id"] for row in rows}


async def attachment_ids(store: Store) -> set[str]:
    """Ids of every stored attachment record."""
    rows = await store.read(lambda tx: tx.fetchall("SELECT id FROM attachments"))
    return {row["id"] for row in rows}


class FakeStorage:
    """An attachment storage that records deletions (and can be told to fail)."""

    backend = "local"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.deleted: list[str] = []
        self.records_at_delete: set[str] = set()
        self.failing = False
        self.malformed: set[str] = set()

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Not used by purges."""
        raise NotImplementedError

    async def url(self, key: str, *, attachment_id: str, name: str,
                  content_type: str) -> str:
        """Not used by purges."""
        raise NotImplementedError

    async def delete(self, keys: list[str]) -> int:
        """Record ``keys`` and which attachment records existed at that moment."""
        if self.failing:
            raise OSError("storage down")
        if self.malformed.intersection(keys):
            raise ValueError("not a storage key")
        self.records_at_delete |= await attachment_ids(self.store)
        self.deleted += keys
        return len(keys)


# --- purge_closed with an attachment storage -------------------------------------------------

async def test_files_are_deleted_before_their_records(store: Store) -> None:
    """The storage deletes the files of purged attachments while their records still exist,
    then the records go; files of another backend are left alone."""
    await seed(store, ended("old", "o1", days_ago(10)), ended("new", "o1", days_ago(1)),
               ended("other-org", "o2", days_ago(10)))
    await seed(store, ended("s3-old", "o1", days_ago(10)), backend="s3")
    storage = FakeStorage(store)
    purged = await purge_closed(store, "o1", before=days_ago(5), storage=storage)
    assert (purged.conversations, purged.attachments) == (2, 2)
    assert storage.deleted == ["key-old"]
    assert {"a-old", "a-s3-old"} <= storage.records_at_delete
    assert await conversation_ids(store) == {"new", "other-org"}
    assert await attachment_ids(store) == {"a-new", "a-other-org"}


async def test_storage_failure_keeps_the_batch_for_later(store: Store) -> None:
    """When the storage fails the purge is 503-unavailable and the batch's rows stay;
    the next purge deletes them."""
    await seed(store, ended("old", "o1", days_ago(10)))
    storage = FakeStorage(store)
    storage.failing = True
    with pytest.raises(Unavailable) as caught:
        await purge_closed(store, "o1", before=days_ago(5), storage=storage)
    assert caught.value.details == {"dependency": "attachments"}
    assert await conversation_ids(store) == {"old"}
    assert await attachment_ids(store) == {"a-old"}
    storage.failing = False
    purged = await purge_closed(store, "o1", before=days_ago(5), storage=storage)
    assert purged.conversations == 1
    assert await conversation_ids(store) == set()


async def test_a_malformed_key_does_not_block_the_others(store: Store) -> None:
    """A key the storage refuses as malformed is skipped; the other files and every record
    are deleted."""
    await seed(store, ended("bad", "o1", days_ago(10)), ended("good", "o1", days_ago(10)))
    storage = FakeStorage(store)
    storage.malformed = {"key-bad"}
    purged = await purge_closed(store, "o1", before=days_ago(5), storage=storage)
    assert (purged.conversations, purged.attachments) == (2, 2)
    assert storage.deleted == ["key-good"]
    assert await attachment_ids(store) == set()


async def test_without_storage_records_still_go(store: Store) -> None:
    """Without an attachment storage the records are purged (the files are left)."""
    await seed(store, ended("old", "o1", days_ago(10)))
    purged = await purge_closed(store, "o1", before=days_ago(5))
    assert (purged.conversations, purged.attachments) == (1, 1)
    assert await attachment_ids(store) == set()


# --- the sweep ---------------------------------------------------------------------------------

class Settings:
    """Organization settings by id; ``broken`` organizations fail to load."""

    def __init__(self, days: dict[str, int], broken: tuple[str, ...] = ()) -> None:
        self.days = days
        self.broken = broken

    async def get(self, org_id: str) -> LivechatSettings:
        """The organization's settings, or an error for a broken one."""
        if org_id in self.broken:
            raise RuntimeError(f"settings of {org_id} are unreadable")
        return LivechatSettings(retention_days=self.days.get(org_id, 365))


async def test_sweep_purges_each_org_with_its_retention(store: Store) -> None:
    """Soon after start, then every interval, each org is purged with its retentionDays."""
    await seed(store, ended("o1-20d", "o1", days_ago(20)), ended("o1-5d", "o1", days_ago(5)),
               ended("o2-20d", "o2", days_ago(20)), ended("o2-400d", "o2", days_ago(400)))
    settings = OrgSettings(lambda: store)
    await settings.put("o1", LivechatSettings(retention_days=10))
    sweep = RetentionSweep(lambda: store, settings, interval_seconds=0.05,
                           first_delay_seconds=0.01)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sweep.run)
            await eventually(lambda: sweep.sweeps >= 1, interval=0.005)
            assert await conversation_ids(store) == {"o1-5d", "o2-20d"}
            await seed(store, ended("o1-30d", "o1", days_ago(30)))
            done = sweep.sweeps
            await eventually(lambda: sweep.sweeps >= done + 2, interval=0.005)
            assert await conversation_ids(store) == {"o1-5d", "o2-20d"}
            sweep.request_stop()


async def test_sweep_goes_on_after_one_org_fails(store: Store) -> None:
    """An organization whose purge fails is skipped; the others are purged."""
    await seed(store, ended("a-old", "a-broken", days_ago(400)),
               ended("o1-old", "o1", days_ago(400)))
    sweep = RetentionSweep(lambda: store, Settings({}, broken=("a-broken",)))
    done = await sweep.sweep_once()
    assert set(done) == {"o1"}
    assert done["o1"].conversations == 1
    assert await conversation_ids(store) == {"a-old"}


async def test_sweep_survives_a_failed_sweep_and_stops_promptly(store: Store) -> None:
    """A sweep that cannot reach the store is retried next interval; stop is prompt even
    while it waits a long interval."""
    await seed(store, ended("old", "o1", days_ago(400)))
    calls = 0

    def flaky() -> Store:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("the store is not open")
        return store

    sweep = RetentionSweep(flaky, Settings({}), interval_seconds=0.02, first_delay_seconds=0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sweep.run)
            await eventually(lambda: sweep.sweeps >= 1, interval=0.005)
            assert await conversation_ids(store) == set()
            sweep.interval_seconds = 3600
            await eventually(lambda: sweep.sweeps >= 2, interval=0.005)
            sweep.request_stop()
