"""The SQLite backend of :class:`~lcx.store.base.Store` (stdlib ``sqlite3``, WAL mode).

Connections
    One writer connection, serialized by a ``trio.CapacityLimiter(1)``; every write is a
    ``BEGIN IMMEDIATE`` transaction, so it takes SQLite's write lock up front and two
    processes sharing a file queue on ``busy_timeout`` instead of failing at ``COMMIT``.
    A pool of reader connections (``PRAGMA query_only``) serves :meth:`SqliteStore.read`;
    in WAL mode readers see the last committed snapshot and never block the writer.
    Connections are opened with ``check_same_thread=False`` (each is used by one worker
    thread at a time) and ``isolation_level=None`` (this module issues ``BEGIN``/``COMMIT``
    itself; the ``sqlite3`` module's implicit transactions are off).

Durability
    ``journal_mode=WAL`` with ``synchronous=FULL``: the WAL is fsynced at every ``COMMIT``,
    so a transaction that returned survives a process kill and a power cut.

In memory
    ``sqlite://:memory:`` opens a single private connection that serves reads and writes
    (reads take the writer's turn, with ``query_only`` set for their duration). Several
    connections to one shared-cache memory database would not do: shared-cache readers
    fail at once with ``SQLITE_LOCKED`` while a write is open (``busy_timeout`` does not
    apply there), and WAL does not exist in memory.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from lcx.errors import IntegrityConflict, StoreError, StoreUnavailable
from lcx.store.base import Row, StoreStatistics, Tx

T = TypeVar("T")

_UNAVAILABLE_CODES = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB,
})
"""Primary result codes meaning "the database cannot serve now", not "the SQL is wrong"."""

_URL_FORMS = "sqlite:///relative/path, sqlite:////absolute/path or sqlite://:memory:"


def parse_sqlite_url(url: str) -> str | None:
    """Return the database path of a ``sqlite://`` URL, or ``None`` for ``:memory:``.

    Raises :class:`~lcx.errors.StoreError` when the URL is not one of the three forms.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite":
        raise StoreError(f"not a sqlite URL (scheme {scheme!r})")
    if rest in (":memory:", "/:memory:"):
        return None
    if not rest.startswith("/") or rest == "/":
        raise StoreError(f"malformed sqlite URL; expected {_URL_FORMS}")
    return rest[1:]


def map_sqlite_error(exc: sqlite3.Error) -> StoreError:
    """Return the lcx error for a ``sqlite3`` error (the caller raises it ``from exc``)."""
    message = f"sqlite {getattr(exc, 'sqlite_errorname', type(exc).__name__)}: {exc}"
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityConflict(message)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(message)
    return StoreError(message)


def split_script(script: str) -> list[str]:
    """Split a SQL script into single statements using SQLite's own tokenizer.

    ``;`` inside string literals, comments and ``CREATE TRIGGER ... BEGIN ... END`` bodies
    does not end a statement. A trailing statement without ``;`` is kept.
    """
    statements: list[str] = []
    start = cut = 0
    while (end := script.find(";", cut)) != -1:
        cut = end + 1
        if sqlite3.complete_statement(script[start:cut]):
            statements.append(script[start:cut].strip())
            start = cut
    if tail := script[start:].strip():
        statements.append(tail)
    return statements


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


class _SqliteTx:
    """:class:`~lcx.store.base.Tx` over one ``sqlite3`` connection; cursors never outlive a call."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with closing(self._conn.execute(sql, params)) as cursor:
            return cursor.rowcount

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with closing(self._conn.execute(sql, params)) as cursor:
            row: Row | None = cursor.fetchone()
            return row

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with closing(self._conn.execute(sql, params)) as cursor:
            rows: list[Row] = cursor.fetchall()
            return rows

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, seq_of_params).close()

    def executescript(self, script: str) -> None:
        for statement in split_script(script):
            self._conn.execute(statement).close()


def _run_in_transaction(conn: sqlite3.Connection, begin: str, fn: Callable[[Tx], T],
                        end: str) -> T:
    """Worker thread: ``begin``, ``fn(tx)``, ``end``; roll back and map errors on failure."""
    try:
        if conn.in_transaction:  # left open by a failed rollback: start clean
            conn.execute("ROLLBACK")
        conn.execute(begin)
        result = fn(_SqliteTx(conn))
        if not conn.in_transaction:
            raise StoreError("the transaction function ended the transaction itself")
        conn.execute(end)
        return result
    except sqlite3.Error as exc:
        _rollback_quietly(conn, exc)
        raise map_sqlite_error(exc) from exc
    except BaseException as exc:
        _rollback_quietly(conn, exc)
        raise


def _rollback_quietly(conn: sqlite3.Connection, exc: BaseException) -> None:
    if not conn.in_transaction:  # never begun, or SQLite already rolled back
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as rollback_exc:
        exc.add_note(f"rollback also failed: {rollback_exc}")


def _connect(target: str, *, busy_timeout: float, query_only: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.row_factory = _dict_row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_all(path: str | None, readers: int,
                 busy_timeout: float) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
    """Worker thread: open the writer (switching the file to WAL), then the readers."""
    opened: list[sqlite3.Connection] = []
    try:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(path or ":memory:", busy_timeout=busy_timeout, query_only=False)
        opened.append(writer)
        if path is None:
            return writer, []
        mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()["journal_mode"]
        if mode != "wal":
            raise StoreError(f"sqlite refused WAL mode (journal_mode={mode})")
        for _ in range(readers):
            opened.append(_connect(path, busy_timeout=busy_timeout, query_only=True))
        return writer, opened[1:]
    except (sqlite3.Error, OSError) as exc:
        _close_all(opened)
        raise StoreUnavailable(f"cannot open sqlite database {path}: {exc}") from exc
    except BaseException:
        _close_all(opened)
        raise


def _close_all(conns: Iterable[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()


def _ping(tx: Tx) -> None:
    tx.fetchone("SELECT count(*) AS n FROM sqlite_master")


class SqliteStore:
    """A :class:`~lcx.store.base.Store` on one SQLite database file (or one in-memory db).

    Create it with :meth:`open` (or :func:`open_sqlite_store`); the store owns its
    connections and whoever opened it must :meth:`close` it.
    """

    def __init__(self, writer: sqlite3.Connection, readers: list[sqlite3.Connection]) -> None:
        """Take ownership of already configured connections (use :meth:`open`)."""
        self._writer = writer
        self._reads_on_writer = not readers
        self._owned = (*readers, writer)
        self._idle_readers = list(readers)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(max(1, len(readers)))
        self._committed = self._failed = self._in_flight = 0
        self._active = 0
        self._drained: trio.Event | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str] | None, *, readers: int = 4,
                   busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating it and its parent directories if needed) the database at ``path``.

        ``path=None`` opens a private in-memory database. ``busy_timeout`` (seconds) bounds
        the wait for another process's write lock. Raises
        :class:`~lcx.errors.StoreUnavailable` when the file cannot be opened.
        """
        target = None if path is None else os.fspath(path)
        writer, reader_conns = await trio.to_thread.run_sync(
            _connect_all, target, readers, busy_timeout)
        return cls(writer, reader_conns)

    @property
    def dialect(self) -> str:
        """Always ``"sqlite"``."""
        return "sqlite"

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.transaction`."""
        with self._operation():
            self._in_flight += 1
            try:
                result = await trio.to_thread.run_sync(
                    _run_in_transaction, self._writer, "BEGIN IMMEDIATE", fn, "COMMIT",
                    limiter=self._write_limiter, abandon_on_cancel=False)
            except BaseException:
                self._failed += 1
                raise
            finally:
                self._in_flight -= 1
            self._committed += 1
            return result

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.read`."""
        with self._operation():
            if self._reads_on_writer:
                return await trio.to_thread.run_sync(
                    self._read_on_writer, fn, limiter=self._write_limiter,
                    abandon_on_cancel=False)
            async with self._read_limiter:
                conn = self._idle_readers.pop()
                try:
                    return await trio.to_thread.run_sync(
                        _run_in_transaction, conn, "BEGIN", fn, "ROLLBACK",
                        abandon_on_cancel=False)
                finally:
                    self._idle_readers.append(conn)

    def _read_on_writer(self, fn: Callable[[Tx], T]) -> T:
        """Worker thread, in-memory store: a read-only transaction on the only connection."""
        try:
            self._writer.execute("PRAGMA query_only = ON")
            try:
                return _run_in_transaction(self._writer, "BEGIN", fn, "ROLLBACK")
            finally:
                self._writer.execute("PRAGMA query_only = OFF")
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    async def ping(self) -> None:
        """See :meth:`lcx.store.base.Store.ping`."""
        try:
            await self.read(_ping)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(f"sqlite ping failed: {exc}") from exc

    async def close(self) -> None:
        """Wait for in-flight reads and writes, then close every connection. Idempotent.

        Shielded from cancellation so that connections are never leaked; it waits only
        for work already started.
        """
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._active:
                self._drained = self._drained or trio.Event()
                await self._drained.wait()
            conns, self._owned = self._owned, ()
            await trio.to_thread.run_sync(_close_all, conns)

    def statistics(self) -> StoreStatistics:
        """See :meth:`lcx.store.base.Store.statistics`."""
        return StoreStatistics(transactions_committed=self._committed,
                               transactions_failed=self._failed,
                               transactions_in_flight=self._in_flight)

    @contextmanager
    def _operation(self) -> Iterator[None]:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if not self._active and self._drained is not None:
                self._drained.set()


@asynccontextmanager
async def open_sqlite_store(url: str, *, readers: int = 4,
                            busy_timeout: float = 5.0) -> AsyncIterator[SqliteStore]:
    """Open the SQLite store named by a ``sqlite://`` URL, yield it, and close it on exit.

    Raises :class:`~lcx.errors.StoreError` for a malformed URL and
    :class:`~lcx.errors.StoreUnavailable` when the database cannot be opened.
    """
    store = await SqliteStore.open(parse_sqlite_url(url), readers=readers,
                                   busy_timeout=busy_timeout)
    try:
        yield store
    finally:
        await store.close()
