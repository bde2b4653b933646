"""Versioned SQL migrations, applied in order at start, each in its own transaction.

Adding a migration
    Add ``lcx/store/migrations/NNNN_short_name.sql`` with the next free four-digit version,
    written in portable SQL (see :mod:`lcx.store.base`). Where the dialects must differ,
    add ``NNNN_short_name.sqlite.sql`` and/or ``NNNN_short_name.postgres.sql``: an override
    replaces the plain file for its dialect, and every dialect must end up with a file.
    A migration creating ``TEXT`` columns needs the PostgreSQL override that declares them
    ``COLLATE "C"`` (byte order, as on SQLite; see :mod:`lcx.store.base`).
    Never edit a file once it has been applied anywhere: write a new migration instead.
    A script may hold several statements; it runs through ``Tx.executescript`` inside the
    migration's transaction (SQLite and PostgreSQL both roll DDL back), so a failing
    migration leaves neither its tables nor its row in ``schema_migrations``.

What is checked (each failure raises :class:`~lcx.errors.MigrationError`)
    - file names match ``NNNN_name[.dialect].sql``; one name per version;
    - every applied version still has a file, with the same sha256 checksum;
    - the database is not at a version newer than the newest file (old code refuses a
      newer schema) and no pending file is older than the newest applied one.

Several processes may run :func:`apply_migrations` at once: every runner transaction first
takes the migration lock (SQLite: the database write lock taken by ``BEGIN IMMEDIATE``;
PostgreSQL: ``pg_advisory_xact_lock``, see :data:`_LOCK_SQL`) and then re-reads
``schema_migrations``, so each migration is applied exactly once. On PostgreSQL the lock
statement fixes the transaction's snapshot before it waits, so a runner that queued
behind another may read a ``schema_migrations`` without the other's row; it writes its
own row before running the script, and that write fails with a serialization failure
(the backend's write transactions are ``SERIALIZABLE``), which the backend retries with
a fresh snapshot that sees the migration applied.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from lcx.errors import MigrationError, StoreError

if TYPE_CHECKING:  # lcx.store.base imports this module at run time
    from lcx.store.base import Row, Store, Tx

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
"""The migrations shipped with lcx."""

DIALECTS = ("sqlite", "postgres")
"""Every dialect a migration must have a file for."""

_FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<dialect>[a-z]+))?\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""

_LOCK_KEY = 0x6C63786D6967  # "lcxmig": any constant shared by every lcx process
_LOCK_SQL: Mapping[str, str] = {"postgres": "SELECT pg_advisory_xact_lock(?)"}
"""Dialect -> statement taking the migration lock until commit. SQLite needs none: the
write lock of ``BEGIN IMMEDIATE`` already serializes every writer of the file."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration as it applies to one dialect."""

    version: int
    name: str
    """The short name, e.g. ``"org_settings"``."""
    filename: str
    """The file used for this dialect, e.g. ``"0001_org_settings.sql"``."""
    sql: str
    checksum: str
    """sha256 (hex) of the file's text."""


def load_migrations(directory: str | os.PathLike[str], dialect: str) -> list[Migration]:
    """Read and check the migration files of ``directory``; return ``dialect``'s, in order.

    Blocking file I/O. Raises :class:`~lcx.errors.MigrationError` for a missing directory,
    a malformed file name, two names for one version, an unknown dialect or a version
    without a file for some dialect.
    """
    if dialect not in DIALECTS:
        raise MigrationError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    variants = _scan(Path(directory))
    return [_read(variants[version], dialect, version) for version in sorted(variants)]


def _scan(directory: Path) -> dict[int, dict[str | None, Path]]:
    if not directory.is_dir():
        raise MigrationError(f"migration directory {directory} does not exist")
    variants: dict[int, dict[str | None, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None or match["dialect"] not in (None, *DIALECTS):
            raise MigrationError(f"{path.name} is not named NNNN_name.sql or "
                                 f"NNNN_name.<{'|'.join(DIALECTS)}>.sql")
        version, name = int(match["version"]), match["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"duplicate migration version {version:04d}: "
                                 f"{names[version]} and {name}")
        variants.setdefault(version, {})[match["dialect"]] = path
    for version, files in variants.items():
        missing = [d for d in DIALECTS if None not in files and d not in files]
        if missing:
            raise MigrationError(f"{version:04d}_{names[version]} has no file for "
                                 f"{', '.join(missing)}: add {version:04d}_{names[version]}.sql")
    return variants


def _read(files: Mapping[str | None, Path], dialect: str, version: int) -> Migration:
    path = files.get(dialect) or files[None]
    text = path.read_text(encoding="utf-8")
    match = _FILE_NAME.fullmatch(path.name)
    assert match is not None  # checked by _scan
    return Migration(version=version, name=match["name"], filename=path.name, sql=text,
                     checksum=hashlib.sha256(text.encode("utf-8")).hexdigest())


async def apply_migrations(store: Store,
                           directory: str | os.PathLike[str] | None = None) -> list[int]:
    """Bring ``store``'s schema up to date; return the versions applied by this call.

    Reads ``directory`` (default: :data:`MIGRATIONS_DIR`), creates ``schema_migrations`` if
    needed, checks what is applied, then applies each pending migration in version order
    in its own transaction, recording its checksum. Idempotent: a re-run applies nothing.
    Safe to run from several processes at once (see the module docstring).

    Raises :class:`~lcx.errors.MigrationError` (see the module docstring for the checks; a
    failing script's error names its file and chains the database error), or the store's
    own errors (:class:`~lcx.errors.StoreUnavailable`) while reading the applied versions.
    """
    known = await trio.to_thread.run_sync(
        load_migrations, directory if directory is not None else MIGRATIONS_DIR, store.dialect)
    applied = await store.transaction(partial(_prepare, dialect=store.dialect, known=known))
    done: list[int] = []
    for migration in known:
        if migration.version in applied:
            continue
        apply_one = partial(_apply_one, dialect=store.dialect, known=known, migration=migration)
        try:
            if await store.transaction(apply_one):
                done.append(migration.version)
        except MigrationError:
            raise
        except StoreError as exc:
            raise MigrationError(f"{migration.filename} failed and was rolled back: {exc}") \
                from exc
    return done


def _prepare(tx: Tx, *, dialect: str, known: Sequence[Migration]) -> set[int]:
    """Worker thread: lock, create ``schema_migrations``, check and return what is applied."""
    _lock(tx, dialect)
    tx.execute(_CREATE_TABLE)
    return _check_applied(tx, known)


def _apply_one(tx: Tx, *, dialect: str, known: Sequence[Migration],
               migration: Migration) -> bool:
    """Worker thread: apply ``migration`` unless another process did; say if it was applied."""
    _lock(tx, dialect)
    applied = _check_applied(tx, known)
    if migration.version in applied:
        return False
    newest = max(applied, default=0)
    if newest > migration.version:
        raise MigrationError(f"{migration.filename} is older than the newest applied "
                             f"migration {newest:04d}: give it a version above {newest:04d}")
    # The row goes in before the script runs. On PostgreSQL a runner whose snapshot
    # predates another runner's commit of this migration (it queued on the lock) then
    # fails on this row with a serialization failure, which the backend retries with a
    # fresh snapshot, instead of running the script a second time.
    tx.execute("INSERT INTO schema_migrations (version, name, checksum, applied_at) "
               "VALUES (?, ?, ?, ?)",
               (migration.version, migration.filename, migration.checksum, _now()))
    tx.executescript(migration.sql)
    return True


def _lock(tx: Tx, dialect: str) -> None:
    """Take the migration lock for the rest of this transaction (see :data:`_LOCK_SQL`)."""
    if sql := _LOCK_SQL.get(dialect):
        tx.execute(sql, (_LOCK_KEY,))


def _check_applied(tx: Tx, known: Sequence[Migration]) -> set[int]:
    rows = tx.fetchall("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    by_version = {m.version: m for m in known}
    newest_known = max(by_version, default=0)
    if rows and rows[-1]["version"] > newest_known:
        raise MigrationError(
            f"the database schema is at version {rows[-1]['version']:04d} but this code knows "
            f"migrations up to {newest_known:04d} only: refusing to run on a newer schema")
    for row in rows:
        _check_row(row, by_version.get(row["version"]))
    return {row["version"] for row in rows}


def _check_row(row: Row, migration: Migration | None) -> None:
    if migration is None:
        raise MigrationError(f"applied migration {row['name']} has no file any more")
    if migration.checksum != row["checksum"]:
        raise MigrationError(f"{migration.filename} was modified after being applied")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


__all__ = ["DIALECTS", "MIGRATIONS_DIR", "Migration", "apply_migrations", "load_migrations"]
