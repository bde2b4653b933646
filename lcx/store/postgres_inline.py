"""PostgreSQL transactions run on the Trio thread, over libpq without psycopg's cursor.

Why
    The thread path of :mod:`lcx.store.postgres` hands every transaction to a worker
    thread and runs each statement through a psycopg cursor. Measured on a 2-core machine
    (a transaction of ``BEGIN``, three small writes and ``COMMIT`` on a local server), the
    hand-over and the threads' fight for the GIL cost ~240 µs of CPU per transaction, the
    cursor ~25 µs per statement: ~500 µs per transaction where libpq's own calls need
    ~125. So a store keeps a few connections of its own that it drives from the Trio
    thread, and uses one when it is free; the thread path serves everything else.

How a transaction runs
    ``fn`` is synchronous, so it runs in a greenlet of its own: each statement is sent,
    and its answer waited for at most :data:`SPIN_SECONDS` on the Trio thread (a
    statement of a small transaction takes tens of microseconds on the server, less than
    handing the thread back to Trio and being woken again costs); an answer that takes
    longer (a lock held by another transaction, a busy server, ``COMMIT``'s flush to
    disk) is awaited in Trio, the greenlet suspended meanwhile, so the thread serves
    everyone else. The waits of a transaction never outlast :data:`WAIT_TIMEOUT_SECONDS`
    together, and are shielded from cancellation as the thread path's is (a transaction
    is never abandoned halfway).
    Statements are prepared on first use and their parameters sent as text: ``int`` as
    ``int4`` when it fits, else ``int8`` (a function taking ``integer`` finds no
    ``bigint`` variant), ``bool`` as ``int4`` 0/1 (as the thread path sends them), ``str``
    and ``None`` untyped (the server infers the type, as psycopg lets it). Rows are read with
    psycopg's own loaders: the same Python types as on the thread path.

When it gives up
    Anything out of the ordinary before ``COMMIT`` is sent (an error from the server, an
    exception of ``fn``, a parameter of another type, a string holding NUL, a broken or
    silent connection) rolls back and raises :class:`InlineFallback`: nothing was
    committed, and the caller runs ``fn`` again on the thread path, which raises the
    usual errors and makes the usual retries. A connection that broke or went silent is
    closed. Once ``COMMIT`` is sent the outcome is the server's: a refusal (a
    serialization failure found at commit) falls back too; a connection lost before the
    answer raises :class:`~lcx.errors.StoreUnavailable`, as on the thread path (the write
    may or may not have committed; it was not acknowledged).
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import select
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import greenlet
import psycopg
import trio
from psycopg import pq
from psycopg.abc import AdaptContext
from psycopg.adapt import Transformer

from lcx.errors import StoreError, StoreUnavailable
from lcx.store.base import Row

T = TypeVar("T")

SPIN_SECONDS = 0.0003
"""How long a statement's answer is waited for while holding the Trio thread (most come
within ~100 µs; interleaved runs of one instance at 200 pairs/s had 1 ms hold the thread
too long when the machine was busy, and 0, a Trio wake-up per statement, cost more CPU
and no better p99)."""
WAIT_TIMEOUT_SECONDS = 30.0
"""The longest a transaction waits for the server in all: past it the connection is
given up."""
MAX_PREPARED = 256
"""Statements prepared per connection; past it, new statements run unprepared."""

_OK = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK,
                 pq.ExecStatus.EMPTY_QUERY})
_INT8, _INT4, _FLOAT8 = 20, 23, 701
_INT4_LIMIT, _INT8_LIMIT = 1 << 31, 1 << 63
_SELECT_LIMIT = 1024
"""``select`` takes descriptors below FD_SETSIZE only (its timeout is in µs, ``poll``'s in
ms): a connection on a higher descriptor spins whole milliseconds."""
_TIMED_OUT = object()
"""Sent into a suspended transaction whose wait timed out."""


class InlineFallback(BaseException):
    """An inline transaction gave up before anything was committed: run ``fn`` on the
    thread path. A ``BaseException`` so that ``fn``'s own ``except Exception`` cannot
    swallow it and carry on."""


class _ConnectionLost(Exception):
    """The connection broke or went silent (it is closed)."""


@functools.lru_cache(maxsize=4096)
def numbered_placeholders(sql: str) -> bytes:
    """``sql`` with its ``?`` placeholders numbered as libpq wants them (``$1``, ``$2``...),
    encoded. Portable SQL holds no literal ``?`` (see :mod:`lcx.store.base`)."""
    numbers = iter(range(1, 1 << 16))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql).encode()


def _dump(value: Any) -> tuple[int, bytes | None]:
    """The (type oid, text) libpq is sent for one parameter; falls back for any other
    type and for what libpq's text parameters cannot carry."""
    if value is None:
        return 0, None
    kind = type(value)
    if kind is str:
        if "\x00" in value:  # libpq would cut it there; the thread path refuses it
            raise InlineFallback
        return 0, value.encode()
    if kind is int:  # int4 when it fits, as a literal would be: substr(text, int4, int4)
        if -_INT4_LIMIT <= value < _INT4_LIMIT:
            return _INT4, str(value).encode()
        if -_INT8_LIMIT <= value < _INT8_LIMIT:
            return _INT8, str(value).encode()
        raise InlineFallback
    if kind is bool:
        return _INT4, b"1" if value else b"0"
    if kind is float and math.isfinite(value):
        return _FLOAT8, repr(value).encode()
    raise InlineFallback


class InlineConnection:
    """One libpq connection driven from the Trio thread; one transaction at a time.

    Open it with :meth:`connect` (in a worker thread); :meth:`close` it on the Trio thread.
    """

    def __init__(self, pgconn: pq.abc.PGconn, context: AdaptContext) -> None:
        """Take an open, idle, nonblocking connection (use :meth:`connect`)."""
        self._pg = pgconn
        self._fd = pgconn.socket
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._loader = Transformer(context)
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.broken = False
        """Closed: the store drops it."""

    @classmethod
    def connect(cls, conninfo: str, context: AdaptContext) -> InlineConnection:
        """Worker thread: open a connection for inline transactions. Raises
        ``psycopg.OperationalError`` when it cannot."""
        pgconn = pq.PGconn.connect(conninfo.encode())
        if pgconn.status != pq.ConnStatus.OK:
            message = pgconn.get_error_message()
            pgconn.finish()
            raise psycopg.OperationalError(message)
        result = pgconn.exec_(b"SET client_encoding = 'UTF8'")
        if result.status != pq.ExecStatus.COMMAND_OK:
            pgconn.finish()
            raise psycopg.OperationalError(result.get_error_message())
        pgconn.nonblocking = 1
        return cls(pgconn, context)

    @property
    def backend_pid(self) -> int:
        """The server process serving this connection."""
        return self._pg.backend_pid

    @property
    def in_transaction(self) -> bool:
        """Open, inside a transaction that has not failed."""
        return not self.broken and \
            self._pg.transaction_status == pq.TransactionStatus.INTRANS

    async def run(self, begin: bytes, fn: Callable[[Any], T]) -> tuple[T, list[object]]:
        """Run ``fn`` in a transaction opened by ``begin`` and commit it; answer its result
        and what it announced.

        Raises :class:`InlineFallback` when nothing was committed and ``fn`` is to run on
        the thread path, :class:`~lcx.errors.StoreUnavailable` when the connection was
        lost waiting for ``COMMIT``, and :class:`~lcx.errors.StoreError` when ``fn`` ended
        the transaction itself.
        """
        body = greenlet.greenlet(self._transaction)
        body.gr_context = contextvars.copy_context()
        request = body.switch(begin, fn)
        if not body.dead:
            # one scope for all the waits (each scope costs ~5 µs): shielded, and its
            # deadline bounds them together
            with trio.CancelScope(shield=True,
                                  deadline=trio.current_time() + WAIT_TIMEOUT_SECONDS):
                while not body.dead:
                    if request == select.POLLIN:
                        await trio.lowlevel.wait_readable(self._fd)
                    else:
                        await trio.lowlevel.wait_writable(self._fd)
                    request = body.switch(None)
            while not body.dead:  # past the deadline: the transaction gives up
                request = body.switch(_TIMED_OUT)
        done: tuple[T, list[object]] = request
        return done

    def close(self) -> None:
        """Close the connection (Trio thread; idempotent)."""
        self.broken = True
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            self._fd = -1
            self._pg.finish()

    # --- inside the transaction's greenlet ----------------------------------------------

    def _transaction(self, begin: bytes, fn: Callable[[Any], T]) -> tuple[T, list[object]]:
        tx = InlineTx(self)
        try:
            if self.call(begin, None).status not in _OK:
                raise InlineFallback
            result = fn(tx)
            if tx.gave_up or self.broken:  # fn swallowed a fallback and went on
                raise InlineFallback
            if self._pg.transaction_status == pq.TransactionStatus.IDLE:
                raise StoreError("the transaction function ended the transaction itself")
            if not self.in_transaction:
                raise InlineFallback
        except StoreError:
            self._roll_back()
            raise
        except greenlet.GreenletExit:  # never resumed (its caller is gone): no more I/O
            self.close()
            raise
        except BaseException:
            # fn's own errors too: the thread path runs it again and raises them there
            # (with the driver's errors, retries and notes); a fn that may not run on the
            # Trio thread (it waits for another thread) fails here and runs there
            self._roll_back()
            if tx.stale_plan:
                self._forget_plans()
            raise InlineFallback from None
        self._commit()
        return result, tx.announced

    def call(self, sql: bytes, params: Sequence[Any] | None) -> pq.abc.PGresult:
        """Run one statement and answer its result (checked by the caller); prepares a
        statement with parameters on its first run. Raises :class:`_ConnectionLost`."""
        pg = self._pg
        if params is None:
            self._send(pg.send_query, sql)
            return self._result()
        dumped = [_dump(value) for value in params]
        types = tuple(oid for oid, _ in dumped)
        values = [text for _, text in dumped]
        key = (sql, types)
        name = self._prepared.get(key)
        if name is None:
            if len(self._prepared) >= MAX_PREPARED:
                self._send(pg.send_query_params, sql, values, types)
                return self._result()
            name = b"lcx_inline_%d" % len(self._prepared)
            self._send(pg.send_prepare, name, sql, types)
            prepared = self._result()
            if prepared.status not in _OK:
                return prepared
            self._prepared[key] = name
        self._send(pg.send_query_prepared, name, values)
        return self._result()

    def script(self, script: bytes) -> pq.abc.PGresult:
        """Run a multi-statement script without parameters (one simple query); answer
        its first failure, else its last result."""
        self._send(self._pg.send_query, script)
        return self._result()

    def load(self, result: pq.abc.PGresult, make_row: Callable[[Sequence[Any]], Any]) \
            -> list[Any]:
        """The rows of a ``TUPLES_OK`` result, each made by ``make_row`` from its values."""
        self._loader.set_pgresult(result)
        return self._loader.load_rows(0, result.ntuples, make_row)

    def _send(self, send: Callable[..., None], *args: Any) -> None:
        if self.broken:
            raise _ConnectionLost
        try:
            send(*args)
            while self._pg.flush():  # nonblocking: the rest did not fit in the socket
                self._wait(select.POLLOUT, SPIN_SECONDS)
        except psycopg.OperationalError:
            self.close()
            raise _ConnectionLost from None

    def _result(self, spin: float = SPIN_SECONDS) -> pq.abc.PGresult:
        """Read every result of what was sent; answer the first failure, else the last."""
        pg = self._pg
        answer: pq.abc.PGresult | None = None
        try:
            while True:
                while pg.is_busy():
                    self._wait(select.POLLIN, spin)
                    pg.consume_input()
                result = pg.get_result()
                if result is None:
                    break
                if answer is None or answer.status in _OK:
                    answer = result
        except psycopg.OperationalError:
            self.close()
            raise _ConnectionLost from None
        if answer is None:
            self.close()
            raise _ConnectionLost
        return answer

    def _wait(self, events: int, spin: float) -> None:
        """Until the socket is ready for ``events``: up to ``spin`` seconds on this thread,
        then in Trio (the greenlet suspended). Raises :class:`_ConnectionLost` after the
        timeout."""
        if spin > 0:
            if self._fd < _SELECT_LIMIT:
                fds = (self._fd,)
                ready = bool(select.select(fds, (), (), spin)[0] if events == select.POLLIN
                             else select.select((), fds, (), spin)[1])
            else:
                self._poll.modify(self._fd, events)
                ready = bool(self._poll.poll(math.ceil(spin * 1000)))
            if ready:
                return
        trio_side = greenlet.getcurrent().parent
        if trio_side is None or trio_side.switch(events) is _TIMED_OUT:
            self.close()
            raise _ConnectionLost

    def _roll_back(self) -> None:
        """After a failure before ``COMMIT``: end the transaction, or close the connection."""
        if self.broken:
            return
        try:
            if self._pg.transaction_status != pq.TransactionStatus.IDLE:
                self._send(self._pg.send_query, b"ROLLBACK")
                self._result()
        except _ConnectionLost:
            return
        if self._pg.transaction_status != pq.TransactionStatus.IDLE:
            self.close()

    def _forget_plans(self) -> None:
        """Drop this connection's prepared statements (a migration of another instance
        changed a table they read), or the connection when that fails."""
        self._prepared.clear()
        try:
            if self.call(b"DEALLOCATE ALL", None).status not in _OK:
                self.close()
        except _ConnectionLost:
            pass

    def _commit(self) -> None:
        """Send ``COMMIT`` and wait for its answer (in Trio: the server flushes to disk)."""
        try:
            self._send(self._pg.send_query, b"COMMIT")
            answer = self._result(spin=0.0)
        except _ConnectionLost:
            raise StoreUnavailable("postgresql connection lost during COMMIT") from None
        if answer.status not in _OK or \
                self._pg.transaction_status != pq.TransactionStatus.IDLE:
            self._roll_back()
            raise InlineFallback  # refused at commit: nothing was committed


class InlineTx:
    """:class:`~lcx.store.base.Tx` of an inline transaction (see the module docstring)."""

    __slots__ = ("_conn", "announced", "gave_up", "stale_plan")

    def __init__(self, conn: InlineConnection) -> None:
        self._conn = conn
        self.announced: list[object] = []
        """What ``fn`` announced (see :meth:`~lcx.store.base.Tx.announce`)."""
        self.gave_up = False
        """A statement fell back: the transaction must not commit, whatever ``fn`` does."""
        self.stale_plan = False
        """The server refused a prepared statement whose table changed since."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        tuples = self._run(sql, params).command_tuples
        return -1 if tuples is None else tuples

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        result = self._run(sql, params)
        if result.status != pq.ExecStatus.TUPLES_OK:
            return []
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        return self._conn.load(result, lambda values: dict(zip(names, values, strict=True)))

    def values(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = self._run(sql, params)
        if result.status != pq.ExecStatus.TUPLES_OK:
            return []
        return self._conn.load(result, tuple)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        for params in seq_of_params:
            self._run(sql, params)

    def executescript(self, script: str) -> None:
        if self.gave_up or "\x00" in script:
            self._give_up()
        try:
            result = self._conn.script(script.encode())
        except _ConnectionLost:
            self._give_up()
        if result.status not in _OK or not self._conn.in_transaction:
            self._give_up()  # a statement failed, or the script ended the transaction

    def announce(self, item: object) -> None:
        self.announced.append(item)

    def _run(self, sql: str, params: Sequence[Any]) -> pq.abc.PGresult:
        if self.gave_up:
            self._give_up()
        try:
            result = self._conn.call(numbered_placeholders(sql), params)
        except (_ConnectionLost, InlineFallback):
            self._give_up()
        if result.status not in _OK:
            self.stale_plan = result.error_field(pq.DiagnosticField.SQLSTATE) == b"0A000"
            self._give_up()
        return result

    def _give_up(self) -> Any:
        self.gave_up = True
        raise InlineFallback
