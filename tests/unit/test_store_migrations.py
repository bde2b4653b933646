"""The migration runner: order, idempotence, overrides, and every refusal."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from lcx.errors import MigrationError, StoreError
from lcx.store import Row, Store, Tx, apply_migrations, open_store
from lcx.store.migrate import MIGRATIONS_DIR, load_migrations

PG_ONLY = "CREATE EXTENSION IF NOT EXISTS pgcrypto;"  # a syntax error for SQLite


@pytest.fixture
def mig_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path}/lcx.db", migrations=False) as opened:
        yield opened


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql, encoding="utf-8")


def tables(tx: Tx) -> list[str]:
    rows = tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [row["name"] for row in rows]


def applied(tx: Tx) -> list[Row]:
    return tx.fetchall("SELECT version, name, checksum, applied_at FROM schema_migrations "
                       "ORDER BY version")


async def test_pending_migrations_apply_in_version_order(store: Store, mig_dir: Path) -> None:
    """Files apply by version, not by listing order, and each is recorded with its checksum."""
    write(mig_dir, "0010_c.sql", "INSERT INTO a (x) SELECT x + 10 FROM b;")
    write(mig_dir, "0002_b.sql", "CREATE TABLE b (x INTEGER);\nINSERT INTO b (x) VALUES (1);")
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    assert await apply_migrations(store, mig_dir) == [1, 2, 10]
    rows = await store.read(applied)
    assert [(r["version"], r["name"]) for r in rows] == [
        (1, "0001_a.sql"), (2, "0002_b.sql"), (10, "0010_c.sql")]
    text = (mig_dir / "0002_b.sql").read_text(encoding="utf-8")
    assert rows[1]["checksum"] == hashlib.sha256(text.encode()).hexdigest()
    assert await store.read(lambda tx: tx.fetchall("SELECT x FROM a")) == [{"x": 11}]


async def test_rerun_is_a_no_op(store: Store, mig_dir: Path) -> None:
    """A second run applies nothing and leaves schema_migrations untouched."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    await apply_migrations(store, mig_dir)
    before = await store.read(applied)
    assert await apply_migrations(store, mig_dir) == []
    assert await store.read(applied) == before


async def test_only_new_files_apply_later(store: Store, mig_dir: Path) -> None:
    """A file added after a run is applied alone by the next run."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    await apply_migrations(store, mig_dir)
    write(mig_dir, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
    assert await apply_migrations(store, mig_dir) == [2]


async def test_dialect_override_wins(store: Store, mig_dir: Path) -> None:
    """NNNN_name.sqlite.sql replaces NNNN_name.sql on SQLite; the postgres file is ignored."""
    write(mig_dir, "0001_t.sql", "CREATE TABLE plain (x INTEGER);")
    write(mig_dir, "0001_t.sqlite.sql", "CREATE TABLE from_sqlite (x INTEGER);")
    write(mig_dir, "0001_t.postgres.sql", PG_ONLY)
    write(mig_dir, "0002_u.postgres.sql", PG_ONLY)
    write(mig_dir, "0002_u.sql", "CREATE TABLE shared (x INTEGER);")
    assert await apply_migrations(store, mig_dir) == [1, 2]
    assert await store.read(tables) == ["from_sqlite", "schema_migrations", "shared"]
    assert [r["name"] for r in await store.read(applied)] == ["0001_t.sqlite.sql", "0002_u.sql"]
    postgres = load_migrations(mig_dir, "postgres")
    assert [m.filename for m in postgres] == ["0001_t.postgres.sql", "0002_u.postgres.sql"]


async def test_override_only_for_some_dialects_is_refused(store: Store, mig_dir: Path) -> None:
    """A version with only a sqlite override and no plain file lacks a postgres file."""
    write(mig_dir, "0001_t.sqlite.sql", "CREATE TABLE t (x INTEGER);")
    with pytest.raises(MigrationError, match="0001_t has no file for postgres"):
        await apply_migrations(store, mig_dir)


async def test_modified_applied_migration_is_refused(store: Store, mig_dir: Path) -> None:
    """Editing a file after it was applied is detected by its checksum."""
    write(mig_dir, "0001_init.sql", "CREATE TABLE a (x INTEGER);")
    await apply_migrations(store, mig_dir)
    write(mig_dir, "0001_init.sql", "CREATE TABLE a (x INTEGER, y TEXT);")
    with pytest.raises(MigrationError, match=r"0001_init\.sql was modified after being applied"):
        await apply_migrations(store, mig_dir)


async def test_newer_database_version_is_refused(store: Store, mig_dir: Path) -> None:
    """Code that knows fewer migrations than the database has applied refuses to run."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(mig_dir, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
    await apply_migrations(store, mig_dir)
    (mig_dir / "0002_b.sql").unlink()
    with pytest.raises(MigrationError, match=r"at version 0002 .* up to 0001 only"):
        await apply_migrations(store, mig_dir)


async def test_applied_migration_without_file_is_refused(store: Store, mig_dir: Path) -> None:
    """An applied version whose file disappeared (below the newest one) is refused."""
    for version in (1, 2, 3):
        write(mig_dir, f"000{version}_m.sql", f"CREATE TABLE t{version} (x INTEGER);")
    await apply_migrations(store, mig_dir)
    (mig_dir / "0002_m.sql").unlink()
    with pytest.raises(MigrationError, match=r"0002_m\.sql has no file any more"):
        await apply_migrations(store, mig_dir)


async def test_failing_migration_is_rolled_back(store: Store, mig_dir: Path) -> None:
    """A failing script names its file, leaves no table and no version, and can be fixed."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(mig_dir, "0002_bad.sql", "CREATE TABLE b (x INTEGER);\nINSERT INTO missing VALUES (1);")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed .*no such table") as info:
        await apply_migrations(store, mig_dir)
    assert isinstance(info.value.__cause__, StoreError)
    assert await store.read(tables) == ["a", "schema_migrations"]
    assert [r["version"] for r in await store.read(applied)] == [1]
    write(mig_dir, "0002_bad.sql", "CREATE TABLE b (x INTEGER);")
    assert await apply_migrations(store, mig_dir) == [2]


async def test_duplicate_versions_are_refused(store: Store, mig_dir: Path) -> None:
    """Two names for one version number are refused before anything is applied."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(mig_dir, "0001_b.sql", "CREATE TABLE b (x INTEGER);")
    with pytest.raises(MigrationError, match="duplicate migration version 0001: a and b"):
        await apply_migrations(store, mig_dir)
    assert await store.read(tables) == []


@pytest.mark.parametrize("name", ["1_init.sql", "0001-init.sql", "0001_init.mysql.sql"])
async def test_malformed_file_names_are_refused(store: Store, mig_dir: Path, name: str) -> None:
    """A .sql file that is not NNNN_name[.dialect].sql is an error, not silently skipped."""
    write(mig_dir, name, "CREATE TABLE a (x INTEGER);")
    with pytest.raises(MigrationError, match="is not named"):
        await apply_migrations(store, mig_dir)


async def test_pending_file_older_than_applied_is_refused(store: Store, mig_dir: Path) -> None:
    """A new file numbered below the newest applied version must be renumbered."""
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(mig_dir, "0003_c.sql", "CREATE TABLE c (x INTEGER);")
    await apply_migrations(store, mig_dir)
    write(mig_dir, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
    with pytest.raises(MigrationError, match=r"0002_b\.sql is older than .* 0003"):
        await apply_migrations(store, mig_dir)


async def test_missing_directory_is_refused(store: Store, tmp_path: Path) -> None:
    """A migration directory that does not exist is a MigrationError."""
    with pytest.raises(MigrationError, match="does not exist"):
        await apply_migrations(store, tmp_path / "nope")


async def test_script_with_trigger_and_semicolons_in_strings(store: Store, mig_dir: Path) -> None:
    """A multi-statement script with ; in strings, comments and a trigger body applies whole."""
    write(mig_dir, "0001_t.sql", """
        -- counts; inserts
        CREATE TABLE a (x TEXT NOT NULL DEFAULT 'a;b');
        CREATE TABLE n (k INTEGER NOT NULL);
        INSERT INTO n (k) VALUES (0);
        CREATE TRIGGER bump AFTER INSERT ON a BEGIN
            UPDATE n SET k = k + 1; UPDATE n SET k = k + 1;
        END;
        INSERT INTO a (x) VALUES (';')""")
    await apply_migrations(store, mig_dir)
    assert await store.read(lambda tx: tx.fetchone("SELECT k FROM n")) == {"k": 2}


async def test_concurrent_runners_apply_each_migration_once(tmp_path: Path,
                                                            mig_dir: Path) -> None:
    """Several stores on one file migrating at once apply every version exactly once."""
    for version in range(1, 6):
        write(mig_dir, f"000{version}_m.sql", f"CREATE TABLE t{version} (x INTEGER);")
    url = f"sqlite:///{tmp_path}/shared.db"
    results: list[list[int]] = []

    async def run() -> None:
        async with open_store(url, migrations=False) as store:
            results.append(await apply_migrations(store, mig_dir))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(run)
    assert sorted(v for result in results for v in result) == [1, 2, 3, 4, 5]


async def test_shipped_migrations_apply_and_cover_every_dialect() -> None:
    """The package's own migrations create org_settings and have a file for each dialect."""
    async with open_store("sqlite://:memory:") as store:
        columns = await store.read(lambda tx: tx.fetchall("PRAGMA table_info(org_settings)"))
        assert [c["name"] for c in columns] == ["org_id", "body", "updated_at"]
        assert await apply_migrations(store) == []
    assert [m.version for m in load_migrations(MIGRATIONS_DIR, "postgres")] == list(
        range(1, len(load_migrations(MIGRATIONS_DIR, "sqlite")) + 1))
