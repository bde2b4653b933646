"""The SQLite backend of :class:`~lcx.store.base.Store` (stdlib ``sqlite3``, WAL mode).

Threads and connections
    Each connection belongs to one long-lived thread of the store, fed through a queue (no
    ``trio.to_thread`` hop per call): one writer thread owns the write connection (a file
    store's Trio thread uses it too, see "Writes on the Trio thread"), one
    thread per reader connection (``PRAGMA query_only``) serves :meth:`SqliteStore.read`;
    in WAL mode readers see the last committed snapshot and never block the writer. A
    thread hands outcomes back with one ``TrioToken.run_sync_soon`` per batch. Every write
    is a ``BEGIN IMMEDIATE`` transaction, so it takes SQLite's write lock up front and two
    processes sharing a file queue on ``busy_timeout`` instead of failing at ``COMMIT``.
    Connections are opened with ``check_same_thread=False`` (opened and closed from other
    threads) and ``isolation_level=None`` (this module issues ``BEGIN``/``COMMIT`` itself;
    the ``sqlite3`` module's implicit transactions are off).

Writes on the Trio thread
    A file store commits on the Trio thread itself: handing a transaction to the writer
    thread and its outcome back (two thread wake-ups, the GIL passed back and forth)
    cost more CPU than the transaction and its fsync together (~300 µs against ~150 µs
    for a lone one-row write on the 2-core dev machine). The first caller that finds no
    batch running leads one: it yields once (shielded), so that every transaction
    submitted meanwhile joins, then runs them all in one ``BEGIN IMMEDIATE`` ... one
    ``COMMIT`` without yielding, and wakes their waiters; callers that come while it
    runs queue for the next batch. The Trio thread never waits for a lock there (its
    ``busy_timeout`` is 0): a batch that meets another connection's lock, or fails in
    any way (a job that raises, a failed ``COMMIT``), is rolled back and run again by the
    writer thread as described below (which waits up to ``busy_timeout``), its leader
    waiting for it shielded. So does a batch whose statements run for longer than
    ``write_budget`` (5 ms; a progress handler aborts them, never the ``COMMIT``): a
    large sweep does not hold the event loop. The price: the event loop stands still
    for the length of a commit, its fsync included (~0.2-0.4 ms here; a slow disk makes
    it longer).

Group commit
    While the writer runs (and fsyncs) one batch, new transactions wait in its queue; it
    then takes all of them (up to ``max_batch``) as the next batch: one ``BEGIN
    IMMEDIATE``, every transaction's ``fn`` in turn, one ``COMMIT`` (one fsync), and
    every waiter is woken after it. Only if one of them raises is the whole batch rolled
    back and run again with each transaction inside its own ``SAVEPOINT`` (so the common
    case pays no savepoint per job): a transaction that raises is then rolled back to its
    savepoint and fails alone; the others commit. If the batch as a whole fails
    (``BEGIN``/``COMMIT`` fails, or an error makes SQLite abandon the transaction), none of
    it was committed and each transaction is run again on its own, so every caller gets
    the outcome it would have had alone (``fn`` may run twice then, as the store protocol
    allows). An idle writer commits a lone transaction at once: batching adds no wait.

Durability
    ``journal_mode=WAL`` with ``synchronous=FULL``: the WAL is fsynced at every ``COMMIT``,
    so a transaction that returned survives a process kill and a power cut. The opt-in
    ``synchronous="normal"`` (``store.sqlite_synchronous``) fsyncs only at checkpoints: a
    returned transaction still survives a kill of lcx, but not an OS crash or power cut.

Reads on the Trio thread
    A file store also opens one more read connection for the Trio thread itself:
    :meth:`SqliteStore.read` first runs ``fn`` there, with no thread hop (a point lookup
    costs ~15 µs; handing it to a reader thread and back costs ~70-90 µs more). A progress
    handler aborts that attempt once it has run for ``inline_budget`` seconds (default
    1 ms), and the connection never waits for a lock (``busy_timeout`` 0); an aborted or
    locked attempt is rolled back and ``fn`` runs again on a reader thread. So a read
    ``fn`` may run twice and must have no side effects beyond its reads.

In memory
    ``sqlite://:memory:`` opens a single private connection that serves reads and writes
    (reads take the writer's turn, with ``query_only`` set for their duration). Several
    connections to one shared-cache memory database would not do: shared-cache readers
    fail at once with ``SQLITE_LOCKED`` while a write is open (``busy_timeout`` does not
    apply there), and WAL does not exist in memory.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import outcome
import trio

from lcx.errors import IntegrityConflict, StoreError, StoreUnavailable
from lcx.store.base import CommitListener, CommitListeners, Row, StoreStatistics, Tx

T = TypeVar("T")

_UNAVAILABLE_CODES = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB,
})
"""Primary result codes meaning "the database cannot serve now", not "the SQL is wrong"."""

_URL_FORMS = "sqlite:///relative/path, sqlite:////absolute/path or sqlite://:memory:"

SYNCHRONOUS_MODES = {"full": "FULL", "normal": "NORMAL"}
"""``store.sqlite_synchronous`` values and the ``PRAGMA synchronous`` each sets."""


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


def _names(cursor: sqlite3.Cursor) -> list[str]:
    """The column names of a query (once per statement, not once per row)."""
    return [column[0] for column in cursor.description]


class _SqliteTx:
    """:class:`~lcx.store.base.Tx` over one ``sqlite3`` connection; cursors never outlive a call.

    Connections have no row factory: rows come back as tuples, and :meth:`fetchone` /
    :meth:`fetchall` zip them with the column names read once per statement.
    """

    __slots__ = ("_conn", "announced")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.announced: list[object] = []
        """What ``fn`` announced (see :meth:`~lcx.store.base.Tx.announce`)."""

    # try/finally rather than contextlib.closing: these run for every statement
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = self._conn.execute(sql, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = self._conn.execute(sql, params)
        try:
            row = cursor.fetchone()
            return None if row is None else dict(zip(_names(cursor), row, strict=True))
        finally:
            cursor.close()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._conn.execute(sql, params)
        try:
            rows = cursor.fetchall()
            if not rows:
                return []
            names = _names(cursor)
            return [dict(zip(names, row, strict=True)) for row in rows]
        finally:
            cursor.close()

    def values(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql, params)
        try:
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows
        finally:
            cursor.close()

    def announce(self, item: object) -> None:
        self.announced.append(item)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, seq_of_params).close()

    def executescript(self, script: str) -> None:
        for statement in split_script(script):
            self._conn.execute(statement).close()


def _run_in_transaction(conn: sqlite3.Connection, begin: str, fn: Callable[[Tx], T],
                        end: str, job: _Job | None = None) -> T:
    """Worker thread: ``begin``, ``fn(tx)``, ``end``; roll back and map errors on failure.
    ``job``: whose announcements ``fn``'s are."""
    try:
        if conn.in_transaction:  # left open by a failed rollback: start clean
            conn.execute(_ROLLBACK)
        conn.execute(begin)
        result = _call(fn, conn, job)
        if not conn.in_transaction:
            raise StoreError(_ENDED_ITSELF)
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
        conn.execute(_ROLLBACK)
    except sqlite3.Error as rollback_exc:
        exc.add_note(f"rollback also failed: {rollback_exc}")


def _connect(target: str, *, busy_timeout: float, query_only: bool,
             synchronous: str = "full") -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_MODES[synchronous]}")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_all(path: str | None, readers: int, busy_timeout: float, synchronous: str = "full"
                 ) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
    """Worker thread: open the writer (switching the file to WAL), then the readers; for a
    file, the last reader is the Trio thread's own (it never waits for a lock)."""
    opened: list[sqlite3.Connection] = []
    try:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(path or ":memory:", busy_timeout=busy_timeout, query_only=False,
                          synchronous=synchronous)
        opened.append(writer)
        if path is None:
            return writer, []
        mode = _switch_to_wal(writer, busy_timeout)
        if mode != "wal":
            raise StoreError(f"sqlite refused WAL mode (journal_mode={mode})")
        for _ in range(readers):
            opened.append(_connect(path, busy_timeout=busy_timeout, query_only=True))
        opened.append(_connect(path, busy_timeout=0.0, query_only=True))
        return writer, opened[1:]
    except (sqlite3.Error, OSError) as exc:
        _close_all(opened)
        raise StoreUnavailable(f"cannot open sqlite database {path}: {exc}") from exc
    except BaseException:
        _close_all(opened)
        raise


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Put the file in WAL mode and return the journal mode it ends up in.

    Switching takes an exclusive lock, and SQLite answers "database is locked" at once,
    without calling the busy handler, when another process opens the same file at the same
    moment; so the switch is retried until ``busy_timeout`` passes.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode == "wal":
                return mode
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _close_all(conns: Iterable[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()


def _ping(tx: Tx) -> None:
    tx.fetchone("SELECT count(*) AS n FROM sqlite_master")


class _Job:
    """One transaction or read handed to a store thread, and the slot of its outcome."""

    __slots__ = ("_done", "announced", "finished", "fn", "outcome", "read", "state")

    def __init__(self, fn: Callable[[Tx], Any], *, read: bool) -> None:
        self.fn = fn
        self.read = read
        self.outcome: outcome.Outcome[Any] | None = None
        self.announced: list[object] = []
        """What the last run of ``fn`` announced (the one that counts once committed)."""
        self.finished = False
        """The outcome is there and the waiter may take it (set on the Trio thread)."""
        self._done: trio.Event | None = None
        """Made only when someone waits: the leader of a batch on the Trio thread never
        does for its own job."""
        self.state = _QUEUED

    async def wait(self) -> None:
        """Wait until :attr:`finished` (a checkpoint either way)."""
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def finish(self) -> None:
        """Trio thread: the outcome is there; wake the waiter, if one waits."""
        self.finished = True
        if self._done is not None:
            self._done.set()


_QUEUED, _TAKEN, _WITHDRAWN = range(3)
_claims = threading.Lock()
"""Guards the queued -> taken / withdrawn step of every job (a thread takes a job, or
its cancelled caller withdraws it, never both)."""


def _take(job: _Job) -> bool:
    """Store thread: claim ``job`` to run it; False when its caller withdrew it."""
    with _claims:
        if job.state == _WITHDRAWN:
            return False
        job.state = _TAKEN
        return True


async def _finished(job: _Job) -> None:
    """Wait until ``job`` ran. A cancelled caller withdraws it if it still waits in its
    queue (then it never runs); once taken, it runs to its end and the caller waits for
    it, shielded, and sees the cancellation at its next checkpoint."""
    try:
        await job.wait()
    except trio.Cancelled:
        if _withdraw(job):
            raise
        with trio.CancelScope(shield=True):
            await job.wait()


def _withdraw(job: _Job) -> bool:
    """Trio thread: take back a job not yet started; False once a thread took it."""
    with _claims:
        if job.state == _TAKEN:
            return False
        job.state = _WITHDRAWN
        return True


def _wake(jobs: list[_Job]) -> None:
    """Trio thread: tell every waiter of ``jobs`` that its outcome is there."""
    for job in jobs:
        job.finish()


def _failure(exc: BaseException) -> outcome.Error:
    """The outcome of a job that raised: a ``sqlite3`` error mapped, anything else as is."""
    if isinstance(exc, sqlite3.Error):
        mapped = map_sqlite_error(exc)
        mapped.__cause__ = exc
        return outcome.Error(mapped)
    return outcome.Error(exc)


_ENDED_ITSELF = "the transaction function ended the transaction itself"

_PROGRESS_STEPS = 1000
"""SQLite VM steps between two calls of the inline connection's progress handler."""

# The store's own transaction statements. Their text is the store's alone (the comment):
# sqlite3 caches prepared statements by text and the authorizer sees a statement only
# when it is prepared, so a "COMMIT" written by fn is prepared afresh, and refused.
_BEGIN_WRITE = "BEGIN IMMEDIATE /* lcx store */"
_BEGIN_READ = "BEGIN /* lcx store */"
_COMMIT = "COMMIT /* lcx store */"
_ROLLBACK = "ROLLBACK /* lcx store */"
_SAVEPOINT = "SAVEPOINT lcx_job /* lcx store */"
_ROLLBACK_TO = "ROLLBACK TO lcx_job /* lcx store */"
_RELEASE = "RELEASE lcx_job /* lcx store */"


class _FnGuard(threading.local):
    """Per thread: whether ``fn`` runs now, and whether it tried to control the
    transaction (which the writer's authorizer refuses)."""

    running = False
    refused = False


_guard = _FnGuard()


def _refuse_transaction_control(action: int, *_: object) -> int:
    """Writer's authorizer: ``fn`` may not BEGIN/COMMIT/ROLLBACK/SAVEPOINT (in a group, a
    ``COMMIT`` from one ``fn`` would commit its neighbours' work half-way); only the
    store's own statements, prepared outside ``fn``, may."""
    if _guard.running and action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
        _guard.refused = True
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _call(fn: Callable[[Tx], T], conn: sqlite3.Connection, job: _Job | None = None) -> T:
    """Run ``fn`` on ``conn``; an attempt to control the transaction is a StoreError.
    ``job``: records what this run announced (a re-run starts afresh)."""
    _guard.running, _guard.refused = True, False
    tx = _SqliteTx(conn)
    if job is not None:
        job.announced = tx.announced
    try:
        return fn(tx)
    except sqlite3.DatabaseError as exc:
        if _guard.refused:
            raise StoreError(_ENDED_ITSELF) from exc
        raise
    finally:
        _guard.running = False


class _BatchBroken(Exception):
    """The group transaction itself failed: its jobs are run again one by one."""


def _nothing() -> None:
    pass


def _commit_plain(conn: sqlite3.Connection, jobs: list[_Job],
                  before_commit: Callable[[], None] = _nothing) -> bool:
    """Run ``jobs`` in one transaction without savepoints and commit once: the batch body
    of the writer thread and of the Trio thread alike.

    The common case (every job succeeds) then costs no ``SAVEPOINT``/``RELEASE`` per job.
    Returns False, with nothing committed and every outcome cleared, as soon as one job
    raises or the transaction fails (on the Trio thread: a budget overrun or a lock in the
    way included); the caller then runs the batch again on the writer thread with
    savepoints, so a failing job still fails alone (its neighbours' ``fn`` run a second
    time then). ``before_commit`` runs just before ``COMMIT`` (the Trio thread lifts its
    budget there, so that a commit is never interrupted). A ``BaseException`` that is not
    an ``Exception`` is re-raised after the rollback.
    """
    try:
        if conn.in_transaction:  # left open by a failed rollback: start clean
            conn.execute(_ROLLBACK)
        conn.execute(_BEGIN_WRITE)
        for job in jobs:
            job.outcome = outcome.Value(_call(job.fn, conn, job))
        if not conn.in_transaction:
            raise StoreError(_ENDED_ITSELF)
        before_commit()
        conn.execute(_COMMIT)
        return True
    except BaseException as exc:  # any failure: the batch is run again with savepoints
        _rollback_quietly(conn, exc)
        for job in jobs:
            job.outcome = None
        if not isinstance(exc, Exception):
            raise
        return False


def _run_group(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Writer thread: run ``jobs`` in one transaction, each inside its own savepoint, and
    commit once (one fsync for all). A job that raises is rolled back to its savepoint and
    fails alone. Raises :class:`_BatchBroken` when the transaction as a whole failed (BEGIN,
    COMMIT, or an error that made SQLite abandon it); nothing of it was committed then."""
    try:
        if conn.in_transaction:  # left open by a failed rollback: start clean
            conn.execute(_ROLLBACK)
        conn.execute(_BEGIN_WRITE)
        for job in jobs:
            conn.execute(_SAVEPOINT)
            try:
                job.outcome = outcome.Value(_call(job.fn, conn, job))
            except BaseException as exc:  # the job's own failure, handed to its waiter
                if not conn.in_transaction:
                    raise _BatchBroken from exc
                conn.execute(_ROLLBACK_TO)
                job.outcome = _failure(exc)
            conn.execute(_RELEASE)
        conn.execute(_COMMIT)
    except (sqlite3.Error, _BatchBroken) as exc:
        _rollback_quietly(conn, exc)
        raise _BatchBroken from exc


class _StoreThreads:
    """The threads of one store: one writer that owns the write connection (group commit)
    and one thread per reader connection. Jobs come in through queues; outcomes go back to
    the Trio thread with one ``run_sync_soon`` per batch."""

    def __init__(self, writer: sqlite3.Connection, readers: list[sqlite3.Connection],
                 token: trio.lowlevel.TrioToken, max_batch: int,
                 busy_timeout_ms: int | None = None) -> None:
        self._token = token
        self._max_batch = max_batch
        self._busy_timeout_ms = busy_timeout_ms
        """Set on the writer for the length of a batch (the Trio thread's attempts run
        with none), or None to leave the connection's own."""
        self._writes: queue.SimpleQueue[_Job | list[_Job] | None] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.batches = 0
        self.savepoint_batches = 0
        writer.set_authorizer(_refuse_transaction_control)  # before any write, any thread
        self._threads = [threading.Thread(target=self._write_loop, args=(writer,),
                                          name="lcx-sqlite-writer", daemon=True)]
        self._threads += [threading.Thread(target=self._read_loop, args=(conn,),
                                           name=f"lcx-sqlite-reader-{n}", daemon=True)
                          for n, conn in enumerate(readers)]
        for thread in self._threads:
            thread.start()

    def write(self, job: _Job) -> None:
        """Queue a transaction (or, for an in-memory store, a read) for the writer."""
        self._writes.put(job)

    def write_all(self, jobs: list[_Job]) -> None:
        """Queue transactions for the writer, to be taken together (one batch)."""
        self._writes.put(jobs)

    def read(self, job: _Job) -> None:
        """Queue a read for the first free reader."""
        self._reads.put(job)

    def stop(self) -> None:
        """Blocking: let every thread finish what it has and exit."""
        self._writes.put(None)
        for _ in self._threads[1:]:
            self._reads.put(None)
        for thread in self._threads:
            thread.join()

    def _hand_back(self, jobs: list[_Job]) -> None:
        with suppress(trio.RunFinishedError):  # nobody is waiting any more
            self._token.run_sync_soon(_wake, jobs)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._writes.get()
            if first is None:
                return
            batch = [job for job in _listed(first) if _take(job)]
            # everything submitted while the previous batch ran joins this one
            while len(batch) < self._max_batch:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch += [job for job in _listed(item) if _take(job)]
            if not batch:
                continue
            if self._busy_timeout_ms is None:
                self._run_writes(conn, batch)
            else:
                with _busy_timeout(conn, self._busy_timeout_ms):
                    self._run_writes(conn, batch)
            self._hand_back(batch)

    def _run_writes(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        group: list[_Job] = []
        for job in batch:
            if job.read:  # in-memory store: reads share the only connection
                self._commit(conn, group)
                group = []
                job.outcome = outcome.capture(_read_on_writer, conn, job.fn)
            else:
                group.append(job)
        self._commit(conn, group)

    def _commit(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        if not group:
            return
        self.batches += 1
        if len(group) > 1:
            try:
                if _commit_plain(conn, group):
                    return
            except BaseException:  # a savepoint run hands it to its job's waiter
                pass
            self.savepoint_batches += 1
            try:
                _run_group(conn, group)
                return
            except _BatchBroken:
                pass  # nothing was committed: run each job alone, in its own transaction
        for job in group:
            job.outcome = outcome.capture(_run_in_transaction, conn, _BEGIN_WRITE,
                                          job.fn, _COMMIT, job)

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            job = self._reads.get()
            if job is None:
                return
            if not _take(job):
                continue
            job.outcome = outcome.capture(_run_in_transaction, conn, _BEGIN_READ, job.fn,
                                          _ROLLBACK)
            self._hand_back([job])


def _listed(item: _Job | list[_Job]) -> list[_Job]:
    return item if isinstance(item, list) else [item]


@contextmanager
def _busy_timeout(conn: sqlite3.Connection, milliseconds: int) -> Iterator[None]:
    """Writer thread: wait up to ``milliseconds`` for another connection's lock, then go
    back to not waiting (what the Trio thread's attempts need)."""
    conn.execute(f"PRAGMA busy_timeout = {milliseconds:d}").close()
    try:
        yield
    finally:
        conn.execute("PRAGMA busy_timeout = 0").close()


def _read_on_writer(conn: sqlite3.Connection, fn: Callable[[Tx], T]) -> T:
    """Writer thread, in-memory store: a read-only transaction on the only connection."""
    try:
        conn.execute("PRAGMA query_only = ON")
        try:
            return _run_in_transaction(conn, _BEGIN_READ, fn, _ROLLBACK)
        finally:
            conn.execute("PRAGMA query_only = OFF")
    except sqlite3.Error as exc:
        raise map_sqlite_error(exc) from exc


class SqliteStore:
    """A :class:`~lcx.store.base.Store` on one SQLite database file (or one in-memory db).

    Create it with :meth:`open` (or :func:`open_sqlite_store`); the store owns its
    connections and threads, and whoever opened it must :meth:`close` it.
    """

    def __init__(self, writer: sqlite3.Connection, readers: list[sqlite3.Connection], *,
                 inline: sqlite3.Connection | None = None, max_batch: int = 256,
                 inline_budget: float = 0.001, busy_timeout: float = 5.0,
                 write_budget: float = 0.005) -> None:
        """Take ownership of already configured connections (use :meth:`open`); must be
        called from the Trio thread that will use the store. ``inline`` is the read
        connection of the Trio thread itself (see the module docstring), whose attempts
        are aborted after ``inline_budget`` seconds; with it, transactions are committed
        on the Trio thread too (a batch whose statements run longer than
        ``write_budget`` seconds is handed to the writer thread), and ``busy_timeout`` is
        how long the writer thread waits for another process's lock when an attempt
        there found one."""
        self._reads_on_writer = not readers
        self._writer = writer
        self._writes_inline = inline is not None
        self._leading = False
        """A task of the Trio thread is committing a batch (the others queue behind it)."""
        self._pending: list[_Job] = []
        """Transactions waiting for the current batch to end."""
        self.inline_commits = self.inline_write_fallbacks = 0
        self._write_budget = write_budget
        self._write_deadline = float("inf")
        busy_ms = round(busy_timeout * 1000) if self._writes_inline else None
        if busy_ms is not None:
            writer.execute("PRAGMA busy_timeout = 0").close()
            writer.set_progress_handler(self._write_progress, _PROGRESS_STEPS)
        self._owned = (*readers, writer) if inline is None else (*readers, writer, inline)
        self._inline = inline
        self._inline_budget = inline_budget
        self._inline_deadline = 0.0
        self._inline_aborted = False
        self.inline_reads = self.inline_fallbacks = 0
        if inline is not None:
            inline.set_progress_handler(self._inline_progress, _PROGRESS_STEPS)
        self._threads = _StoreThreads(writer, readers, trio.lowlevel.current_trio_token(),
                                      max_batch, busy_ms)
        self._max_batch = max_batch
        self._committed = self._failed = self._in_flight = 0
        self._active = 0
        self._drained: trio.Event | None = None
        self._closed = False
        self._listeners = CommitListeners()

    @classmethod
    async def open(cls, path: str | os.PathLike[str] | None, *, readers: int = 4,
                   busy_timeout: float = 5.0, synchronous: str = "full") -> SqliteStore:
        """Open (creating it and its parent directories if needed) the database at ``path``.

        ``path=None`` opens a private in-memory database. ``busy_timeout`` (seconds) bounds
        the wait for another process's write lock. ``synchronous`` is ``"full"`` (every
        commit fsynced: what lcx promises) or ``"normal"`` (see the module docstring).
        Raises :class:`~lcx.errors.StoreUnavailable` when the file cannot be opened.
        """
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreError(f"sqlite synchronous must be one of {sorted(SYNCHRONOUS_MODES)}")
        target = None if path is None else os.fspath(path)
        writer, reader_conns = await trio.to_thread.run_sync(
            _connect_all, target, readers, busy_timeout, synchronous)
        inline = reader_conns.pop() if reader_conns else None
        return cls(writer, reader_conns, inline=inline, busy_timeout=busy_timeout)

    @property
    def dialect(self) -> str:
        """Always ``"sqlite"``."""
        return "sqlite"

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.transaction`.

        Transactions submitted while the writer is busy are committed together (group
        commit); each still succeeds or fails on its own.
        """
        self._begin_operation()
        try:
            self._in_flight += 1
            try:
                job = _Job(fn, read=False)
                if self._writes_inline:
                    result: T = await self._commit_on_trio_thread(job)
                else:
                    result = await self._submit(job, self._threads.write)
            except BaseException:
                self._failed += 1
                raise
            finally:
                self._in_flight -= 1
            self._committed += 1
            self._listeners.tell(job.announced)
            return result
        finally:
            self._end_operation()

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        """See :meth:`lcx.store.base.Store.on_commit`."""
        return self._listeners.add(listener)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.read`.

        A file store first runs ``fn`` on the Trio thread and, if that attempt is aborted
        (over ``inline_budget``, or a lock in the way), again on a reader thread: ``fn``
        may run twice, so it must be free of side effects.
        """
        self._begin_operation()
        try:
            if self._inline is not None:
                await trio.lowlevel.checkpoint()
                if (done := self._read_inline(fn)) is not None:
                    inline_result: T = done.unwrap()
                    return inline_result
            job = _Job(fn, read=True)
            if self._reads_on_writer:
                result: T = await self._submit(job, self._threads.write)
            else:
                result = await self._submit(job, self._threads.read)
            return result
        finally:
            self._end_operation()

    async def _commit_on_trio_thread(self, job: _Job) -> Any:
        """Group commit on the Trio thread: the first caller leads a batch of every job
        queued by the time it runs again, commits it (one fsync) and wakes the others.

        The leader yields once (shielded) so that the transactions of the same moment
        join its batch, then runs it without yielding; a batch that fails in any way is
        run again by the writer thread (savepoints, one by one, waiting for locks), the
        leader waiting for it shielded while newcomers queue for the next batch. A
        follower cancelled while its job still waits withdraws it.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._pending.append(job)
        if self._leading:
            await _finished(job)
        else:
            self._leading = True
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
                while self._pending:
                    await self._run_batch()
            finally:
                self._leading = False
        assert job.outcome is not None
        return job.outcome.unwrap()

    async def _run_batch(self) -> None:
        """Take up to ``max_batch`` queued jobs, commit them, wake their waiters."""
        batch: list[_Job] = []
        taken = 0
        for taken, queued in enumerate(self._pending, 1):  # noqa: B007
            if _take(queued):
                batch.append(queued)
            if len(batch) >= self._max_batch:
                break
        del self._pending[:taken]
        if not batch:
            return
        self._write_deadline = time.perf_counter() + self._write_budget
        try:
            committed = _commit_plain(self._writer, batch, self._lift_write_budget)
        finally:
            self._lift_write_budget()
        if committed:
            self._threads.batches += 1
            self.inline_commits += 1
            _wake(batch)
            return
        self.inline_write_fallbacks += 1
        for queued in batch:
            queued.state = _QUEUED
        with trio.CancelScope(shield=True):
            self._threads.write_all(batch)
            for queued in batch:
                await queued.wait()

    def _write_progress(self) -> int:
        """SQLite progress handler of the writer: non-zero aborts a statement of a batch
        on the Trio thread that ran past its budget (never on the writer thread, never
        during ``COMMIT``: the deadline is lifted then)."""
        return 1 if time.perf_counter() > self._write_deadline else 0

    def _lift_write_budget(self) -> None:
        self._write_deadline = float("inf")

    def _inline_progress(self) -> int:
        """SQLite progress handler of the inline connection: non-zero aborts the statement."""
        if time.perf_counter() > self._inline_deadline:
            self._inline_aborted = True
            return 1
        return 0

    def _read_inline(self, fn: Callable[[Tx], T]) -> outcome.Outcome[T] | None:
        """Trio thread: one bounded attempt at ``fn`` on the inline connection; ``None``
        when it must be run again on a reader thread (aborted, or a lock in the way)."""
        assert self._inline is not None
        self._inline_aborted = False
        self._inline_deadline = time.perf_counter() + self._inline_budget
        try:
            result = _run_in_transaction(self._inline, _BEGIN_READ, fn, _ROLLBACK)
        except StoreUnavailable:
            self.inline_fallbacks += 1
            return None
        except Exception as exc:
            if self._inline_aborted:
                self.inline_fallbacks += 1
                return None
            return outcome.Error(exc)
        self.inline_reads += 1
        return outcome.Value(result)

    @staticmethod
    async def _submit(job: _Job, queue_job: Callable[[_Job], None]) -> Any:
        """Hand ``job`` to a thread and wait for its outcome.

        A caller cancelled while its job still waits in the queue withdraws it (it never
        runs). Once a thread took it, it runs to its end: the caller gets its outcome
        (committed or rolled back) and the cancellation at its next checkpoint, as with
        ``trio.to_thread.run_sync(abandon_on_cancel=False)``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        queue_job(job)
        await _finished(job)
        assert job.outcome is not None
        return job.outcome.unwrap()

    async def ping(self) -> None:
        """See :meth:`lcx.store.base.Store.ping`."""
        try:
            await self.read(_ping)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(f"sqlite ping failed: {exc}") from exc

    async def close(self) -> None:
        """Wait for in-flight reads and writes, then stop the threads and close every
        connection. Idempotent.

        Shielded from cancellation so that connections are never leaked; it waits only
        for work already started.
        """
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._active:
                self._drained = self._drained or trio.Event()
                await self._drained.wait()
            conns, self._owned = self._owned, ()
            if conns:
                await trio.to_thread.run_sync(self._threads.stop)
                await trio.to_thread.run_sync(_close_all, conns)

    def statistics(self) -> StoreStatistics:
        """See :meth:`lcx.store.base.Store.statistics`."""
        return StoreStatistics(transactions_committed=self._committed,
                               transactions_failed=self._failed,
                               transactions_in_flight=self._in_flight,
                               commit_batches=self._threads.batches,
                               inline_commits=self.inline_commits,
                               inline_fallbacks=self.inline_write_fallbacks)

    @property
    def commit_batches(self) -> int:
        """How many commits the writer made (fewer than transactions: group commit)."""
        return self._threads.batches

    @property
    def savepoint_batches(self) -> int:
        """How many groups failed without savepoints and were run again with them."""
        return self._threads.savepoint_batches

    def _begin_operation(self) -> None:
        """Count a read or transaction in (``close`` waits for them); refused once closed.
        A pair of calls rather than a context manager: it runs for every statement."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._active += 1

    def _end_operation(self) -> None:
        self._active -= 1
        if not self._active and self._drained is not None:
            self._drained.set()


@asynccontextmanager
async def open_sqlite_store(url: str, *, readers: int = 4, busy_timeout: float = 5.0,
                            synchronous: str = "full") -> AsyncIterator[SqliteStore]:
    """Open the SQLite store named by a ``sqlite://`` URL, yield it, and close it on exit.

    Raises :class:`~lcx.errors.StoreError` for a malformed URL and
    :class:`~lcx.errors.StoreUnavailable` when the database cannot be opened.
    """
    store = await SqliteStore.open(parse_sqlite_url(url), readers=readers,
                                   busy_timeout=busy_timeout, synchronous=synchronous)
    try:
        yield store
    finally:
        await store.close()
