"""The PostgreSQL backend of :class:`~lcx.store.base.Store` (psycopg 3 and psycopg_pool).

psycopg's async API is asyncio-only. So a transaction runs on one of a few *inline*
connections when one is free: libpq driven from the Trio thread, ``fn`` in a greenlet that
is suspended while the server is slow (:mod:`lcx.store.postgres_inline`, about half the
CPU); otherwise, or when the inline run gives up before committing anything, it runs as
synchronous psycopg in a Trio worker thread (``trio.to_thread.run_sync``, never abandoned
on cancel): the *thread path* below, which raises the errors and makes the retries.

Connections
    Besides the inline connections (4 by default; one that breaks is replaced in the
    background), a ``psycopg_pool.ConnectionPool`` (1 to 10 connections by default) of autocommit
    connections: this module issues ``BEGIN``/``COMMIT``/``ROLLBACK`` itself. A call of
    :meth:`~PostgresStore.transaction` or :meth:`~PostgresStore.read` holds one connection
    for its whole duration; a ``trio.CapacityLimiter`` of the pool's size makes callers
    queue in Trio (where they can be cancelled), not in threads. A connection leaves the
    pool unchecked (an empty query per call would be one more round trip on every
    transaction); when its ``BEGIN`` finds it dead (a server restart, a terminated backend:
    nothing of ``fn`` has run), the call goes on with another connection, and a
    connection that broke is discarded when it returns. So after a restart the pool
    reconnects by itself: only a call that was running when its connection died fails,
    with :class:`~lcx.errors.StoreUnavailable`; later calls work (``/readyz`` recovers
    alone).

Isolation
    Writes run ``SERIALIZABLE``: their outcome is that of some serial order, as with
    SQLite's single writer, while writers still run concurrently. A serialization failure
    or a deadlock (SQLSTATE ``40001``/``40P01``) rolls back and runs ``fn`` again, up to
    ``retries`` times with jittered exponential backoff, then raises
    :class:`~lcx.errors.StoreUnavailable`. Reads run ``REPEATABLE READ READ ONLY``: one
    snapshot for the whole ``fn``.

Prepared statements
    psycopg prepares a statement on a connection from its fifth run. When another
    instance's migration alters a table, a prepared ``SELECT *`` of it fails ("cached plan
    must not change result type"): the pool then replaces every connection (``drain``)
    and the call runs again with fresh plans. Read-only transactions end with ``COMMIT``:
    psycopg forgets its prepared statements at a ``ROLLBACK``.

Durability
    ``COMMIT`` returns when the server's ``synchronous_commit`` says so; with its default
    (``on``) the commit record is flushed to disk (and to synchronous standbys when
    configured). The backend does not override the server's setting.

What the backend hides (so that :mod:`lcx.store.base`'s portable SQL runs unchanged)
    - ``?`` placeholders become ``%s`` and ``%`` becomes ``%%`` (:func:`translate_sql`,
      cached); scripts run by ``executescript`` are sent as they are, in one simple query.
    - Rows are dicts; ``fetchone``/``fetchall`` of a statement without a result answer
      ``None``/``[]``; Python ``bool`` parameters are sent as the integers 0 and 1.
    - A failed statement aborts a PostgreSQL transaction (SQLite undoes the statement
      only): if ``fn`` catches a database error and carries on, the transaction is not
      committed and the store raises that error when ``fn`` returns.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar, cast

import psycopg
import trio
from psycopg import pq
from psycopg.adapt import AdaptersMap, Buffer, Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from lcx.errors import IntegrityConflict, StoreError, StoreUnavailable
from lcx.store.base import CommitListener, CommitListeners, Row, StoreStatistics, Tx
from lcx.store.postgres_inline import InlineConnection, InlineFallback

log = logging.getLogger("lcx.store")

T = TypeVar("T")

_BEGIN_WRITE = "BEGIN ISOLATION LEVEL SERIALIZABLE"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_BEGIN_WRITE_BYTES = _BEGIN_WRITE.encode()
_BEGIN_READ_BYTES = _BEGIN_READ.encode()
_RECONNECT_FIRST, _RECONNECT_MOST = 1.0, 10.0
"""Seconds before an inline connection that was lost is opened again, doubling while
the attempts fail."""

_RETRY_STATES = frozenset({"40001", "40P01"})
"""serialization_failure, deadlock_detected: the transaction may succeed if run again."""
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58"})
"""SQLSTATE classes meaning "the server cannot serve now": connection exception,
insufficient resources, operator intervention (shutdown, cancel, statement timeout),
system error."""
_UNAVAILABLE_STATES = _RETRY_STATES | {"55P03", "XX001", "XX002"}
"""Retryable states still failing after the retries, lock_not_available, and corrupted
data or index (as SQLite's ``SQLITE_CORRUPT``)."""
_STALE_PLAN = "cached plan must not change result type"
"""The error of a prepared ``SELECT *`` whose table another instance altered since."""

_CONNINFO_DEFAULTS = {"connect_timeout": "5", "application_name": "lcx"}
"""libpq parameters set unless the URL sets them."""


class _BoolAsIntDumper(Dumper):
    """Sends Python ``bool`` as ``int4`` 0/1: booleans are stored as INTEGER (see base)."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: bool) -> Buffer:
        return b"1" if obj else b"0"


_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(bool, _BoolAsIntDumper)


@functools.lru_cache(maxsize=4096)
def translate_sql(sql: str) -> str:
    """Return ``sql`` with ``?`` placeholders as ``%s`` and every ``%`` doubled.

    Portable SQL never has a literal ``?`` (see :mod:`lcx.store.base`), so the translation
    needs no parsing; a literal ``%`` survives (psycopg reads ``%%`` back as ``%``).
    Cached: the same statements run again and again.
    """
    return sql.replace("%", "%%").replace("?", "%s")


def map_postgres_error(exc: Exception, *, broken: bool = False) -> StoreError:
    """Return the lcx error for a psycopg error (the caller raises it ``from exc``).

    Integrity violations (unique, foreign key, not null, check) give
    :class:`~lcx.errors.IntegrityConflict`; connection failures, a broken connection
    (``broken``), pool timeouts and the SQLSTATEs of :data:`_UNAVAILABLE_CLASSES` and
    :data:`_UNAVAILABLE_STATES` give :class:`~lcx.errors.StoreUnavailable`; anything else
    :class:`~lcx.errors.StoreError`.
    """
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    message = f"postgres {type(exc).__name__}{f' ({sqlstate})' if sqlstate else ''}: {exc}"
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityConflict(message)
    if broken or (sqlstate is None and isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError)):
        return StoreUnavailable(message)
    if sqlstate is not None and (sqlstate[:2] in _UNAVAILABLE_CLASSES
                                 or sqlstate in _UNAVAILABLE_STATES):
        return StoreUnavailable(message)
    return StoreError(message)


def _retryable(exc: BaseException | None) -> bool:
    return getattr(exc, "sqlstate", None) in _RETRY_STATES or _stale_plan(exc)


def _stale_plan(exc: BaseException | None) -> bool:
    return isinstance(exc, psycopg.errors.FeatureNotSupported) and _STALE_PLAN in str(exc)


def _backoff(attempt: int) -> float:
    """Seconds to wait before run ``attempt`` (1, 2, ...): full jitter, 10 ms doubling."""
    return random.uniform(0, min(0.5, 0.01 * 2 ** attempt))


def _conninfo(url: str) -> tuple[str, str]:
    """Return the libpq connection string for ``url`` and a password-free description."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError("malformed postgresql URL (expected postgresql://user@host/db)") \
            from exc
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/" \
            f"{params.get('dbname', '')}"
    extra = {k: v for k, v in _CONNINFO_DEFAULTS.items() if k not in params}
    return make_conninfo(url, **extra), where


class _PostgresTx:
    """:class:`~lcx.store.base.Tx` over one psycopg cursor; remembers the last failure."""

    __slots__ = ("_cursor", "announced", "failure")

    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor
        self.failure: psycopg.Error | None = None
        """The last database error raised through this handle (``fn`` may swallow it)."""
        self.announced: list[object] = []
        """What ``fn`` announced (see :meth:`~lcx.store.base.Tx.announce`)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._run(sql, params).rowcount

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = self._run(sql, params)
        return None if cursor.description is None else cursor.fetchone()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._run(sql, params)
        return [] if cursor.description is None else cursor.fetchall()

    def values(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._run(sql, params)
        if cursor.description is None:
            return []
        cursor.row_factory = tuple_row  # type: ignore[assignment]
        try:
            rows: list[tuple[Any, ...]] = cursor.fetchall()  # type: ignore[assignment]
        finally:
            cursor.row_factory = dict_row
        return rows

    def announce(self, item: object) -> None:
        self.announced.append(item)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        with self._recording():
            self._cursor.executemany(translate_sql(sql), seq_of_params)

    def executescript(self, script: str) -> None:
        # No parameters: psycopg sends the text as is, as one simple-protocol query, which
        # may hold several statements (never prepared: a prepared statement cannot).
        with self._recording():
            self._cursor.execute(script, prepare=False)

    def _run(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Row]:
        with self._recording():
            return self._cursor.execute(translate_sql(sql), params)

    @contextmanager
    def _recording(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            self.failure = exc
            raise


class _DeadConnection(Exception):
    """``BEGIN`` found the connection dead: nothing ran, another connection may serve."""


def _run_in_transaction(conn: psycopg.Connection[Row], begin: str, fn: Callable[[Tx], T],
                        end: str, announced: list[object] | None = None) -> T:
    """Worker thread: ``begin``, ``fn(tx)``, ``end``; roll back on any failure, re-raise.
    Once ``end`` succeeded, ``announced`` (if given) holds what ``fn`` announced.
    Raises :class:`_DeadConnection` when ``begin`` failed on a connection that broke."""
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute(begin, prepare=False)
            except psycopg.OperationalError as exc:
                if conn.closed:
                    raise _DeadConnection from exc
                raise
            tx = _PostgresTx(cursor)
            result = fn(tx)
            _check_still_open(conn, tx)
            cursor.execute(end, prepare=False)
            if announced is not None:
                announced[:] = tx.announced
            return result
    except BaseException as exc:
        _rollback_quietly(conn, exc)
        raise


def _check_still_open(conn: psycopg.Connection[Row], tx: _PostgresTx) -> None:
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.INERROR:
        failure = tx.failure or StoreError("the transaction was aborted by an error")
        failure.add_note("fn caught this error and went on, but PostgreSQL had aborted the "
                         "transaction: nothing was committed")
        raise failure
    if status == pq.TransactionStatus.IDLE:
        raise StoreError("the transaction function ended the transaction itself")


def _rollback_quietly(conn: psycopg.Connection[Row], exc: BaseException) -> None:
    if conn.closed or conn.info.transaction_status not in (
            pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        return
    try:
        conn.execute("ROLLBACK", prepare=False)
    except psycopg.Error as rollback_exc:
        exc.add_note(f"rollback also failed: {rollback_exc}")
        conn.close()  # the pool replaces it


def _open_pool(conninfo: str, where: str, *, min_size: int, max_size: int,
               acquire_timeout: float, open_timeout: float) -> ConnectionPool[Any]:
    """Worker thread: connect once (for libpq's own error message), then fill a pool."""
    try:
        psycopg.connect(conninfo).close()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to postgresql {where}: {exc}") from exc
    pool: ConnectionPool[Any] = ConnectionPool(
        conninfo, open=False, min_size=min_size, max_size=max_size, timeout=acquire_timeout,
        name=f"lcx-store {where}",
        kwargs={"autocommit": True, "row_factory": dict_row, "context": _ADAPTERS})
    try:
        pool.open(wait=True, timeout=open_timeout)
    except BaseException as exc:
        pool.close()
        if isinstance(exc, psycopg.Error):
            raise StoreUnavailable(f"cannot connect to postgresql {where}: {exc}") from exc
        raise
    return pool


def _ping(pool: ConnectionPool[Any], timeout: float) -> None:
    """Worker thread: ``SELECT 1`` on a pooled connection, waiting at most ``timeout``."""
    try:
        with pool.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1", prepare=False)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"postgresql ping failed: {exc}") from exc


class PostgresStore:
    """A :class:`~lcx.store.base.Store` on one PostgreSQL database.

    Create it with :meth:`open` (or :func:`open_postgres_store`); the store owns its pool
    and whoever opened it must :meth:`close` it.
    """

    def __init__(self, pool: ConnectionPool[Any], *, max_size: int, acquire_timeout: float,
                 retries: int, ping_timeout: float, conninfo: str = "",
                 inline: Sequence[InlineConnection] = ()) -> None:
        """Take ownership of an open pool and of the inline connections (use :meth:`open`);
        a lost inline connection is opened again with ``conninfo``."""
        self._pool = pool
        self._conninfo = conninfo
        self._inline_idle = list(inline)
        self._inline_wanted = len(inline)
        self._inline_open = len(inline)
        self._reconnecting = False
        self._reconnect_delay = _RECONNECT_FIRST
        self._inline_changed: trio.Event | None = None
        self.inline_commits = 0
        """Transactions committed on an inline connection (on the Trio thread)."""
        self.inline_fallbacks = 0
        """Inline transactions that gave up before committing and ran on the thread path."""
        self._max_size = max_size
        self._limiter = trio.CapacityLimiter(max_size)
        self._acquire_timeout = acquire_timeout
        self._retries = retries
        self._ping_timeout = ping_timeout
        self._committed = self._failed = self._in_flight = 0
        self._active = 0
        self._drained: trio.Event | None = None
        self._closed = self._pool_closed = False
        self._listeners = CommitListeners()

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10,
                   acquire_timeout: float = 5.0, open_timeout: float = 10.0,
                   retries: int = 5, ping_timeout: float = 2.0,
                   inline_connections: int = 4) -> PostgresStore:
        """Open a pool of ``min_size`` to ``max_size`` connections to ``url``, and
        ``inline_connections`` more that run transactions on the Trio thread
        (:mod:`lcx.store.postgres_inline`; 0: every transaction runs in a worker thread).

        ``acquire_timeout`` bounds the wait for a working connection (server down:
        :class:`~lcx.errors.StoreUnavailable` after it), ``retries`` the re-runs after a
        serialization failure or deadlock. Unless the URL says otherwise, libpq's
        ``connect_timeout`` is 5 s. Raises :class:`~lcx.errors.StoreError` for a malformed
        URL and :class:`~lcx.errors.StoreUnavailable` when the database cannot be reached.
        """
        conninfo, where = _conninfo(url)
        pool = await trio.to_thread.run_sync(functools.partial(
            _open_pool, conninfo, where, min_size=min_size, max_size=max_size,
            acquire_timeout=acquire_timeout, open_timeout=open_timeout))
        inline: list[InlineConnection] = []
        try:
            for _ in range(inline_connections):
                inline.append(await trio.to_thread.run_sync(
                    InlineConnection.connect, conninfo, _ADAPTERS))
        except BaseException as exc:
            for conn in inline:
                conn.close()
            await trio.to_thread.run_sync(pool.close)
            if isinstance(exc, psycopg.Error):
                raise StoreUnavailable(f"cannot connect to postgresql {where}: {exc}") \
                    from exc
            raise
        return cls(pool, max_size=max_size, acquire_timeout=acquire_timeout, retries=retries,
                   ping_timeout=ping_timeout, conninfo=conninfo, inline=inline)

    @property
    def dialect(self) -> str:
        """Always ``"postgres"``."""
        return "postgres"

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.transaction` (``SERIALIZABLE``, re-run on a
        serialization failure)."""
        with self._operation():
            self._in_flight += 1
            announced: list[object] = []
            try:
                ran, inline_result = await self._inline(_BEGIN_WRITE_BYTES, fn, announced)
                if ran:
                    result = cast(T, inline_result)
                else:
                    result = await trio.to_thread.run_sync(
                        self._run, _BEGIN_WRITE, fn, "COMMIT", announced,
                        limiter=self._limiter, abandon_on_cancel=False)
            except BaseException:
                self._failed += 1
                raise
            finally:
                self._in_flight -= 1
            self._committed += 1
            self._listeners.tell(announced)
            return result

    @property
    def inline_connections_open(self) -> int:
        """Inline connections open now (fewer than asked for while lost ones reopen)."""
        return self._inline_open

    async def inline_connections_restored(self) -> None:
        """Return once every inline connection asked for is open (again)."""
        while self._inline_open < self._inline_wanted and not self._closed:
            self._inline_changed = self._inline_changed or trio.Event()
            await self._inline_changed.wait()

    def inline_backend_pids(self) -> list[int]:
        """The server processes of the idle inline connections."""
        return [conn.backend_pid for conn in self._inline_idle]

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        """See :meth:`lcx.store.base.Store.on_commit`."""
        return self._listeners.add(listener)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """See :meth:`lcx.store.base.Store.read` (``REPEATABLE READ READ ONLY``)."""
        with self._operation():
            ran, result = await self._inline(_BEGIN_READ_BYTES, fn, None)
            if ran:
                return cast(T, result)
            return await trio.to_thread.run_sync(
                self._run, _BEGIN_READ, fn, "COMMIT", limiter=self._limiter,
                abandon_on_cancel=False)

    async def ping(self) -> None:
        """See :meth:`lcx.store.base.Store.ping`: ``SELECT 1`` within ``ping_timeout``.

        Answers within about twice ``ping_timeout`` even when the network hangs (the
        worker thread is then left to finish on its own).
        """
        with self._operation(), trio.move_on_after(2 * self._ping_timeout) as scope:
            await trio.to_thread.run_sync(_ping, self._pool, self._ping_timeout,
                                          abandon_on_cancel=True)
        if scope.cancelled_caught:
            raise StoreUnavailable("postgresql ping timed out")

    async def close(self) -> None:
        """Wait for in-flight reads and writes, then close the pool. Idempotent.

        Shielded from cancellation so that connections are never leaked; it waits only
        for work already started.
        """
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._active:
                self._drained = self._drained or trio.Event()
                await self._drained.wait()
            for conn in self._inline_idle:
                conn.close()
            self._inline_idle.clear()
            if self._inline_changed is not None:
                self._inline_changed.set()
            if not self._pool_closed:
                self._pool_closed = True
                await trio.to_thread.run_sync(self._pool.close)

    def statistics(self) -> StoreStatistics:
        """See :meth:`lcx.store.base.Store.statistics`."""
        return StoreStatistics(transactions_committed=self._committed,
                               transactions_failed=self._failed,
                               transactions_in_flight=self._in_flight,
                               commit_batches=self._committed,
                               inline_commits=self.inline_commits,
                               inline_fallbacks=self.inline_fallbacks)

    async def _inline(self, begin: bytes, fn: Callable[[Tx], T],
                      announced: list[object] | None) -> tuple[bool, T | None]:
        """Run ``fn`` on an idle inline connection if there is one: (True, its result), or
        (False, None) when it must run on the thread path (none idle, or it fell back)."""
        if not self._inline_idle:
            return False, None
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._inline_idle:
            return False, None
        conn = self._inline_idle.pop()
        try:
            result, told = await conn.run(begin, fn)
        except InlineFallback:
            self.inline_fallbacks += 1
            return False, None
        finally:
            self._give_back(conn)
        self.inline_commits += 1
        if announced is not None:
            announced[:] = told
        return True, result

    def _give_back(self, conn: InlineConnection) -> None:
        """Make ``conn`` idle again, or replace it (in the background) if it broke."""
        if not conn.broken and not self._closed:
            self._inline_idle.append(conn)
            return
        conn.close()
        self._inline_open -= 1
        if not self._closed and not self._reconnecting:
            self._reconnecting = True
            trio.lowlevel.spawn_system_task(self._reopen_inline)

    async def _reopen_inline(self) -> None:
        """Open inline connections again until as many as wanted are open, waiting
        longer after each failed attempt."""
        try:
            while not self._closed and self._inline_open < self._inline_wanted:
                await trio.sleep(self._reconnect_delay)
                if self._closed:
                    return
                try:
                    conn = await trio.to_thread.run_sync(
                        InlineConnection.connect, self._conninfo, _ADAPTERS)
                except psycopg.Error as exc:
                    log.warning("inline postgresql connection not reopened",
                                extra={"error": str(exc).strip()[:200],
                                       "retryInSeconds": self._reconnect_delay})
                    self._reconnect_delay = min(_RECONNECT_MOST, 2 * self._reconnect_delay)
                    continue
                self._reconnect_delay = _RECONNECT_FIRST
                if self._closed:
                    conn.close()
                    return
                self._inline_open += 1
                self._inline_idle.append(conn)
                if self._inline_changed is not None:
                    self._inline_changed.set()
                    self._inline_changed = None
        finally:
            self._reconnecting = False

    def _run(self, begin: str, fn: Callable[[Tx], T], end: str,
             announced: list[object] | None = None) -> T:
        """Worker thread: one transaction, re-run after a serialization failure."""
        attempt = 0
        while True:
            try:
                return self._attempt(begin, fn, end, announced)
            except StoreError as exc:
                if not _retryable(exc.__cause__):
                    raise
                if attempt >= self._retries:
                    exc.add_note(f"gave up after {attempt + 1} runs of the transaction")
                    raise
            attempt += 1
            time.sleep(_backoff(attempt))

    def _attempt(self, begin: str, fn: Callable[[Tx], T], end: str,
                 announced: list[object] | None) -> T:
        dead: BaseException | None = None
        for _ in range(self._max_size + 1):  # every pooled connection may have died at once
            try:
                conn = self._pool.getconn(timeout=self._acquire_timeout)
            except psycopg.Error as exc:  # PoolTimeout, PoolClosed
                raise StoreUnavailable(f"no postgresql connection: {exc}") from exc
            try:
                return _run_in_transaction(conn, begin, fn, end, announced)
            except _DeadConnection as exc:
                dead = exc.__cause__
                continue  # nothing ran: try a fresh connection
            except psycopg.Error as exc:
                if _stale_plan(exc):  # a migration changed a table: forget every plan
                    self._pool.drain()
                raise map_postgres_error(exc, broken=conn.closed) from exc
            finally:
                self._pool.putconn(conn)
        raise StoreUnavailable(f"postgresql connections keep dying: {dead}")

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
async def open_postgres_store(url: str, **options: Any) -> AsyncIterator[PostgresStore]:
    """Open the PostgreSQL store named by a ``postgresql://`` (or ``postgres://``) URL,
    yield it, and close it on exit. ``options`` go to :meth:`PostgresStore.open`.

    Raises :class:`~lcx.errors.StoreError` for a malformed URL and
    :class:`~lcx.errors.StoreUnavailable` when the database cannot be reached.
    """
    store = await PostgresStore.open(url, **options)
    try:
        yield store
    finally:
        await store.close()
