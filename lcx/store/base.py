"""The store port: the :class:`Tx` and :class:`Store` protocols and :func:`open_store`.

Callers depend on these protocols only; :func:`open_store` is the one place that turns a
URL into a concrete backend, through :data:`_OPENERS` (adding a backend is one line there).

Threading model
    Database work is plain synchronous code, ``fn(tx)``, that a backend runs in a worker
    thread (``trio.to_thread.run_sync``, never abandoned on cancel) or on the Trio thread
    itself (SQLite's group commit; PostgreSQL's inline connections, ``fn`` in a greenlet).
    ``fn`` must not call Trio, must not keep ``tx`` after it returns, and should have no
    side effects other than through ``tx``: both backends may run it again (after a
    serialization failure, or on a worker thread after an attempt on the Trio thread
    gave up without committing).

Durability
    ``await store.transaction(fn)`` returns only after the transaction is committed and
    flushed to stable storage (PostgreSQL: as the server's ``synchronous_commit`` says; its
    default, ``on``, flushes). A caller cancelled while its write runs gets the write either
    fully committed or fully rolled back; the cancellation is delivered at its next
    checkpoint.

Portable SQL (write it once, run it on SQLite and PostgreSQL)
    - ``?`` placeholders only. PostgreSQL backends translate ``?`` to ``%s`` and ``%`` to
      ``%%``, so never write a literal ``?`` or ``%`` in SQL text: pass it as a parameter.
    - ``INSERT ... ON CONFLICT (cols) DO NOTHING`` / ``DO UPDATE SET c = excluded.c`` and
      ``RETURNING`` are fine; ``INSERT OR REPLACE``, ``AUTOINCREMENT``, ``SERIAL``, ``ILIKE``
      and ``DATETIME('now')`` are not.
    - Types: ``TEXT``, ``INTEGER``, ``BIGINT``, ``REAL``; booleans as ``INTEGER`` 0/1;
      timestamps as ISO-8601 UTC ``TEXT``; JSON documents as ``TEXT``.
    - Lower-case snake_case identifiers (PostgreSQL folds unquoted names); alias every
      computed column (``count(*) AS n``), since the two engines name them differently.
    - Text compares by bytes on SQLite (``"B" < "Z" < "a"``) and by the column's collation
      on PostgreSQL (a locale's: ``"a" < "B" < "Z"``, punctuation weighed last). Ids and
      timestamps are compared and ordered as text, so the PostgreSQL migrations declare
      every ``TEXT`` column ``COLLATE "C"``: a new migration with ``TEXT`` columns needs a
      ``.postgres.sql`` override doing the same (a PostgreSQL test checks every column).
    - ``ORDER BY`` puts NULLs first on SQLite and last on PostgreSQL (ascending): order
      by a nullable column only with ``NULLS FIRST``/``NULLS LAST`` (both accept it).
    - ``LIKE`` ignores ASCII case on SQLite and not on PostgreSQL, and only PostgreSQL has
      a default escape (backslash): give ``ESCAPE ?`` whenever the pattern is built from
      data, and check case-sensitive matches in Python (see :mod:`lcx.store.listings`).
    - PostgreSQL text cannot hold the NUL character (U+0000): such a value fails there
      with :class:`~lcx.errors.StoreError`; refuse it where it enters.
    - A failed statement aborts a PostgreSQL transaction: do not catch a database error
      inside ``fn`` to carry on (the store raises it when ``fn`` returns).
    - Where a dialect really differs, write a per-dialect migration override (see
      :mod:`lcx.store.migrate`), not a branch in Python.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from lcx.errors import StoreError
from lcx.store.migrate import apply_migrations

log = logging.getLogger("lcx.store")

T = TypeVar("T")

Row = dict[str, Any]
"""One result row: column name (or alias) to value."""


class Tx(Protocol):
    """A transaction handle, valid only inside the function it was given to.

    Every method takes SQL written once with ``?`` placeholders, portable between SQLite
    and PostgreSQL (see the module docstring). Database failures raise the backend's own
    exceptions here; the enclosing :meth:`Store.transaction` / :meth:`Store.read` maps them
    to :class:`~lcx.errors.StoreError` subclasses after rolling back.
    """

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return its rowcount (-1 when the engine does not say)."""
        ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run one query and return its first row, or ``None`` when there is none."""
        ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one query and return all its rows."""
        ...

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter sequence."""
        ...

    def executescript(self, script: str) -> None:
        """Run a multi-statement script without parameters, inside this transaction.

        Meant for migrations. Unlike ``sqlite3.Connection.executescript`` it never commits:
        the SQLite backend splits the script on statement boundaries found by SQLite's own
        tokenizer (``sqlite3.complete_statement``, so ``;`` inside strings, comments and
        trigger bodies is safe); a PostgreSQL backend sends the script as one simple query.
        """
        ...

    def values(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows as tuples, in the order of its columns (no
        dict per row: for hot readers that know their ``SELECT``)."""
        ...

    def announce(self, item: object) -> None:
        """Hand ``item`` to the store's commit listeners once this transaction is durable
        (see :meth:`Store.on_commit`); dropped if it rolls back. Only the run of ``fn``
        that committed counts (a re-run starts with nothing announced)."""
        ...


CommitListener = Callable[[Sequence[object]], None]
"""Told what one committed transaction announced (:meth:`Store.on_commit`)."""


class CommitListeners:
    """The commit listeners of one store (the part of :meth:`Store.on_commit` every
    backend shares)."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[CommitListener] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def add(self, listener: CommitListener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it (idempotent)."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def tell(self, announced: Sequence[object]) -> None:
        """Trio thread, after a commit: hand ``announced`` (if any) to every listener.

        Never raises: the transaction committed whatever a listener does, and its caller
        must hear so (a listener's bug is logged)."""
        if announced:
            for listener in tuple(self._listeners):
                try:
                    listener(announced)
                except Exception:
                    log.exception("a commit listener failed (the commit stands)")


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counters of :meth:`Store.transaction` calls since the store was opened."""

    transactions_committed: int
    """Calls that committed."""
    transactions_failed: int
    """Calls that raised (rolled back, or cancelled before they started)."""
    transactions_in_flight: int
    """Calls started and not yet finished, including those waiting for the writer."""
    commit_batches: int = 0
    """Commits made for them (one fsync each): fewer than the transactions when the store
    commits several together (SQLite's group commit); as many on PostgreSQL."""
    inline_commits: int = 0
    """Transactions committed on the Trio thread itself (SQLite's group commit, the
    PostgreSQL store's inline connections)."""
    inline_fallbacks: int = 0
    """Attempts on the Trio thread that gave up without committing and ran again on a
    worker thread (an error, a lock, a transaction function that may not run there)."""


class Store(Protocol):
    """The durable store: transactions of synchronous ``fn(tx)`` (see "Threading model").

    The store owns its connections; whoever opened it (normally :func:`open_store`) closes
    it. All methods raise :class:`~lcx.errors.StoreUnavailable` once the store is closed.
    """

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgres"``: selects per-dialect migration overrides."""
        ...

    async def transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` inside one read-write transaction.

        Commits durably before returning ``fn``'s result. If ``fn`` or the commit raises,
        the transaction is rolled back and the error re-raised: uniqueness and foreign-key
        violations as :class:`~lcx.errors.IntegrityConflict`, connection and I/O failures
        (including a lock wait that timed out) as :class:`~lcx.errors.StoreUnavailable`,
        other database errors as :class:`~lcx.errors.StoreError` (always ``from`` the
        original); exceptions raised by ``fn`` itself propagate unchanged.
        Writers are serializable: the outcome is that of running them one at a time.
        SQLite runs them one at a time, and ``fn`` again only when a group commit it was
        part of had to be redone (see :mod:`lcx.store.sqlite`); PostgreSQL runs them
        concurrently (``SERIALIZABLE``) and may run ``fn`` again after a serialization
        failure or deadlock (see :mod:`lcx.store.postgres`).
        """
        ...

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener`` with what each committed transaction announced (in the order
        of :meth:`Tx.announce`), on the Trio thread, once the commit is durable and before
        :meth:`transaction` returns; returns the function that removes it. A listener must
        not block and must not raise. Transactions that announced nothing cost nothing."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` inside one read-only transaction (a snapshot).

        May run concurrently with other reads and with a write; sees only committed data.
        Writing through ``tx`` fails with :class:`~lcx.errors.StoreError`. Errors are
        mapped as for :meth:`transaction`. ``fn`` may run more than once (SQLite first
        tries it on the Trio thread and re-runs a slow one on a reader thread), so it must
        have no side effects beyond its reads.
        """
        ...

    async def ping(self) -> None:
        """Check that the database answers; raise :class:`~lcx.errors.StoreUnavailable`."""
        ...

    async def close(self) -> None:
        """Wait for in-flight work, then close every connection. Idempotent."""
        ...

    def statistics(self) -> StoreStatistics:
        """Return a snapshot of the transaction counters."""
        ...


Opener = Callable[[str, str, int], AbstractAsyncContextManager[Store]]
"""``opener(url, sqlite_synchronous, postgres_inline_connections)``."""


def _open_sqlite(url: str, sqlite_synchronous: str,
                 postgres_inline_connections: int) -> AbstractAsyncContextManager[Store]:
    # Imported lazily: a backend's module (and its driver) loads only when it is used.
    from lcx.store.sqlite import open_sqlite_store

    return open_sqlite_store(url, synchronous=sqlite_synchronous)


def _open_postgres(url: str, sqlite_synchronous: str,
                   postgres_inline_connections: int) -> AbstractAsyncContextManager[Store]:
    from lcx.store.postgres import open_postgres_store

    return open_postgres_store(url, inline_connections=postgres_inline_connections)


_OPENERS: dict[str, Opener] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}
"""URL scheme -> backend opener. Adding a backend is one line here."""


def _opener_for(url: str) -> Opener:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError("store URL has no scheme (expected sqlite:// or postgresql://)")
    try:
        return _OPENERS[scheme.lower()]
    except KeyError:
        known = ", ".join(sorted(_OPENERS))
        raise StoreError(f"unknown store URL scheme {scheme!r} (known: {known})") from None


@asynccontextmanager
async def open_store(url: str, *, migrations: bool = True, sqlite_synchronous: str = "full",
                     postgres_inline_connections: int = 4) -> AsyncIterator[Store]:
    """Open the store named by ``url``, apply pending migrations, yield it, close it.

    URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``sqlite://:memory:`` (one private in-memory database per store) and
    ``postgresql://user[:password]@host[:port]/db[?libpq-parameters]`` (or
    ``postgres://``). Error messages name the scheme or host and database, never the
    whole URL (it may carry a password).

    Raises :class:`~lcx.errors.StoreError` for an unknown scheme or an unavailable
    backend, :class:`~lcx.errors.StoreUnavailable` when the database cannot be opened and
    :class:`~lcx.errors.MigrationError` when the schema cannot be brought up to date.
    The context manager owns the store and closes it on exit, even when cancelled.
    ``sqlite_synchronous`` (``"full"`` or ``"normal"``) applies to SQLite only,
    ``postgres_inline_connections`` to PostgreSQL only.
    """
    opener = _opener_for(url)
    async with opener(url, sqlite_synchronous, postgres_inline_connections) as store:
        if migrations:
            await apply_migrations(store)
        yield store
