"""The durable store: one :class:`Store` protocol, with SQLite and PostgreSQL backends.

Open it with :func:`open_store` (which applies migrations); do database work as plain
synchronous functions of a :class:`Tx`, passed to :meth:`Store.transaction` (read-write,
durable before it returns) or :meth:`Store.read` (read-only snapshot). The rules for
threads, durability and portable SQL are in :mod:`lcx.store.base`; how to add a migration
is in :mod:`lcx.store.migrate`.
"""

from lcx.store.base import Row, Store, StoreStatistics, Tx, open_store
from lcx.store.migrate import apply_migrations

__all__ = ["Row", "Store", "StoreStatistics", "Tx", "apply_migrations", "open_store"]
