"""The local attachment storage and the attachment records of the store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.attachments import LocalAttachmentStorage, open_attachment_storage, signing_secret
from lcx.attachments import FileDownload, UrlSigner
from lcx.config import AttachmentsConfig, AuthConfig
from lcx.errors import NotFound, StoreUnavailable
from lcx.store import Store, open_store
from lcx.store.attachments import (
    AttachmentKey,
    AttachmentRecord,
    delete_rows,
    get_attachment,
    insert_attachment,
    keys_for_org,
)

KEY = "2026/11/21/0193a6b2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"


def local(tmp_path: Path) -> LocalAttachmentStorage:
    return LocalAttachmentStorage(tmp_path / "files", public_url="http://lcx.example",
                                  signer=UrlSigner.from_secret("s"), ttl_seconds=60)


async def test_put_writes_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """``put`` creates the directories and the file, with nothing else left behind."""
    storage = local(tmp_path)
    await storage.put(KEY, b"hello", "text/plain")
    assert storage.path_of(KEY).read_bytes() == b"hello"
    assert os.listdir(storage.path_of(KEY).parent) == [KEY.rsplit("/", 1)[1]]
    how = await storage.download(KEY, attachment_id="x", name="a", content_type="text/plain")
    assert how == FileDownload(storage.path_of(KEY))


async def test_delete_counts_ignores_missing_and_prunes_dirs(tmp_path: Path) -> None:
    """``delete`` removes files, ignores missing ones and removes emptied directories."""
    storage = local(tmp_path)
    await storage.put(KEY, b"1", "text/plain")
    assert await storage.delete([KEY, "2026/01/01/gone"]) == 1
    assert not (tmp_path / "files" / "2026").exists()
    assert (tmp_path / "files").is_dir()
    with pytest.raises(NotFound):
        await storage.download(KEY, attachment_id="x", name="a", content_type="text/plain")


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", "a//b", ""])
async def test_keys_that_are_not_plain_paths_are_refused(tmp_path: Path, key: str) -> None:
    """A key can never name a file outside the directory."""
    with pytest.raises(ValueError, match="storage key"):
        await local(tmp_path).put(key, b"1", "text/plain")


async def test_write_failures_are_store_unavailable(tmp_path: Path) -> None:
    """An OSError (here: the directory is a file) becomes StoreUnavailable."""
    (tmp_path / "files").write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        await local(tmp_path).put(KEY, b"1", "text/plain")


async def test_local_url_is_signed_under_the_public_url(tmp_path: Path) -> None:
    """The local URL is ``{public_url}/livechat-attachments/{id}`` and verifies."""
    storage = local(tmp_path)
    url = await storage.url(KEY, attachment_id="abc", name="a", content_type="text/plain")
    assert url.startswith("http://lcx.example/livechat-attachments/abc?expires=")
    query = dict(pair.split("=") for pair in url.split("?")[1].split("&"))
    assert storage.signer.verify("abc", query["expires"], query["signature"])


def test_open_picks_the_backend_and_derives_the_key(tmp_path: Path) -> None:
    """The factory builds the local backend; its key is derived from the given secret."""
    storage = open_attachment_storage(AttachmentsConfig(dir=str(tmp_path)), "http://x", "k")
    assert storage.backend == "local"
    signature = UrlSigner.from_secret("k").signature("id", 2_000_000_000)
    assert storage.signer.signature("id", 2_000_000_000) == signature
    assert signing_secret(AuthConfig(jwt_secret="jwt"), tmp_path) == "jwt"


# --- records ---------------------------------------------------------------------------------

@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/lcx.db") as opened:
        yield opened


def record(n: int, *, org: str = "o1", conversation: str | None = "c1") -> AttachmentRecord:
    return AttachmentRecord(
        id=f"a{n:03d}", org_id=org, conversation_id=conversation, name=f"f{n}.txt",
        content_type="text/plain", size=n, backend="local", storage_key=f"2026/11/21/a{n:03d}",
        uploaded_by="alice", created_at=f"2026-11-21T10:00:{n:02d}.000Z")


async def test_records_round_trip_and_filters(store: Store) -> None:
    """Records are read back; ``keys_for_org`` filters by conversation, time and orphans."""
    records = [record(1), record(2, conversation="c2"), record(3, conversation=None),
               record(4, org="o2")]
    for each in records:
        await store.transaction(lambda tx, r=each: insert_attachment(tx, r))
    assert await store.read(lambda tx: get_attachment(tx, "a002")) == records[1]
    assert await store.read(lambda tx: get_attachment(tx, "nope")) is None

    async def ids(conversation_ids: list[str] | None = None, before: str | None = None,
                  unattached: bool = False) -> list[str]:
        keys = await store.read(lambda tx: keys_for_org(
            tx, "o1", conversation_ids=conversation_ids, before=before, unattached=unattached))
        return [key.id for key in keys]

    assert await ids() == ["a001", "a002", "a003"]
    assert await ids(conversation_ids=["c2", "c9"]) == ["a002"]
    assert await ids(conversation_ids=[]) == []
    assert await ids(before="2026-11-21T10:00:02.000Z") == ["a001"]
    assert await ids(unattached=True) == ["a003"]
    assert await ids(conversation_ids=["c1"], before="2026-11-21T10:00:01.000Z") == []
    keys = await store.read(lambda tx: keys_for_org(tx, "o2"))
    assert keys == [AttachmentKey("a004", "local", "2026/11/21/a004")]


async def test_delete_rows_in_chunks(store: Store) -> None:
    """``delete_rows`` deletes any number of ids (chunked), ignoring unknown ones."""
    for n in range(1, 8):
        await store.transaction(lambda tx, n=n: insert_attachment(tx, record(n)))
    many = [f"a{n:03d}" for n in range(1, 5)] + [f"x{n}" for n in range(1200)]
    assert await store.transaction(lambda tx: delete_rows(tx, many)) == 4
    left = await store.read(lambda tx: keys_for_org(tx, "o1"))
    assert [key.id for key in left] == ["a005", "a006", "a007"]
    assert await store.transaction(lambda tx: delete_rows(tx, [])) == 0
