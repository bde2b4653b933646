"""Retention: purging closed conversations, deleting an organization, the daily sweep.

:func:`purge_closed` deletes an organization's closed conversations that ended before a
moment, batch by batch (:mod:`lcx.store.retention`): for each batch it deletes the files
of the batch's attachments, then the rows in one transaction. :func:`delete_organization`
first ends every open conversation of the organization through its actor (so no actor
keeps writing), then deletes every row of the organization. :class:`RetentionSweep` is the
supervised service that purges every organization with its own ``retentionDays`` daily
and deletes the idempotency keys older than ``store.idempotency_days``
(:func:`expire_keys`).

Files go before their records (the rule of :mod:`lcx.store.attachments`): when the
attachment storage fails, the batch's rows stay, the purge stops with
:class:`~lcx.errors.Unavailable`, and a later purge finishes the job. Without a storage
(or for files of another backend than the configured one) the records are deleted and
the files left, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import trio

from actors.messages import End
from lcx.cluster.bus import Leadership
from lcx.errors import ActorError, FencedOut, NotFound, Unavailable
from lcx.model import iso, utc_now
from lcx.org_settings import LivechatSettings
from lcx.store import Store
from lcx.store.attachments import AttachmentKey, keys_for_org
from lcx.store.fencing import advance
from lcx.store.retention import (
    KEY_BATCH_SIZE,
    OrgRows,
    Purged,
    closed_conversation_ids,
    delete_conversations,
    delete_org_rows,
    expire_idempotency_keys,
    open_conversation_ids,
    orgs_with_records,
    orphan_attachment_keys,
)

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.attachments import AttachmentStorage

__all__ = ["ORG_DATA_DELETED", "OrgDeletion", "RetentionSweep", "delete_files",
           "delete_organization", "end_open_conversations", "expire_keys", "purge_closed",
           "retention_cutoff"]

log = logging.getLogger("lcx.retention")

ORG_DATA_DELETED = "organization data deleted"
"""The end reason of conversations ended by :func:`delete_organization`."""
DAY_SECONDS = 86_400.0
END_ROUNDS = 3
"""How often :func:`delete_organization` looks again for conversations opened meanwhile."""
END_CONCURRENCY = 16


class SettingsSource(Protocol):
    """Where the sweep reads settings (an :class:`~lcx.org_settings.OrgSettings`)."""

    async def get(self, org_id: str) -> LivechatSettings:
        """The organization's settings (defaults when never set)."""
        ...


def retention_cutoff(now: datetime, retention_days: int) -> str:
    """The ``before`` of a purge at ``now`` keeping ``retention_days`` days."""
    return iso(now - timedelta(days=retention_days))


async def expire_keys(store: Store, before: str, *, pause_seconds: float = 0.05) -> int:
    """Delete every idempotency key stored before ``before`` (ISO time), a batch per
    transaction so that no commit waits long behind one, ``pause_seconds`` between full
    batches so that a large backlog (the first sweep of a big store) leaves the writer to
    the messages meanwhile; how many."""
    deleted = 0
    while True:
        batch = await store.transaction(
            lambda tx: expire_idempotency_keys(tx, before, dialect=store.dialect))
        deleted += batch
        if batch < KEY_BATCH_SIZE:
            return deleted
        await trio.sleep(pause_seconds)


async def delete_files(storage: AttachmentStorage | None,
                       keys: Sequence[AttachmentKey]) -> int:
    """Delete the files of these attachments from ``storage``; how many it deleted.

    Files of another backend than ``storage``'s (the configuration changed), and every
    file when there is no storage, are left in place and logged; so is a key the storage
    refuses as malformed (``ValueError``): retrying could never delete it.

    Raises:
        Unavailable: the storage failed (``details.dependency`` is ``attachments``).
    """
    mine = [k.storage_key for k in keys if storage is not None and k.backend == storage.backend]
    if len(mine) < len(keys):
        log.warning("attachment files left in place: no storage of their backend",
                    extra={"files": len(keys) - len(mine)})
    if storage is None or not mine:
        return 0
    try:
        return await _delete(storage, mine)
    except ValueError:  # one malformed key spoils the call: find it
        return sum([await _delete_one(storage, key) for key in mine])


async def _delete(storage: AttachmentStorage, keys: list[str]) -> int:
    try:
        return await storage.delete(keys)
    except ValueError:
        raise
    except Exception as exc:
        raise Unavailable("the attachment storage could not delete files",
                          details={"dependency": "attachments"}) from exc


async def _delete_one(storage: AttachmentStorage, key: str) -> int:
    try:
        return await _delete(storage, [key])
    except ValueError:
        log.error("attachment record names a malformed storage key; file left in place",
                  extra={"storageKey": key})
        return 0


async def _purge_batch(store: Store, org_id: str, before: str | None,
                       storage: AttachmentStorage | None) -> Purged | None:
    """One batch of closed conversations (files, then rows); ``None`` when none is left."""
    ids = await store.read(lambda tx: closed_conversation_ids(tx, org_id, before=before))
    if not ids:
        return None
    keys = await store.read(lambda tx: keys_for_org(tx, org_id, conversation_ids=ids))
    await delete_files(storage, keys)
    return await store.transaction(lambda tx: delete_conversations(tx, org_id, ids, keys))


async def _purge_orphans(store: Store, org_id: str, before: str | None,
                         storage: AttachmentStorage | None) -> Purged | None:
    """One batch of attachments tied to no conversation; ``None`` when none is left."""
    keys = await store.read(lambda tx: orphan_attachment_keys(tx, org_id, before=before))
    if not keys:
        return None
    await delete_files(storage, keys)
    return await store.transaction(lambda tx: delete_conversations(tx, org_id, (), keys))


async def purge_closed(store: Store, org_id: str, *, before: str | None,
                       storage: AttachmentStorage | None = None) -> Purged:
    """Delete ``org_id``'s closed conversations that ended before ``before`` (all closed
    ones when ``None``) with their messages, outbox rows and attachments (files first),
    then its attachments that belong to no conversation uploaded before ``before``;
    return the counts.

    Open conversations are never touched; nor is any other organization. Idempotent.
    Raises what the store raises, and :class:`~lcx.errors.Unavailable` when the
    attachment storage fails; the batches done before stay deleted.
    """
    total = Purged()
    for batch in (_purge_batch, _purge_orphans):
        while (purged := await batch(store, org_id, before, storage)) is not None:
            total.add(purged)
    return total


@dataclass(frozen=True, kw_only=True)
class OrgDeletion:
    """What :func:`delete_organization` did."""

    ended: int
    """Open conversations it ended."""
    purged: Purged
    rows: OrgRows
    still_open: int
    """Conversations still open at the end (opened while it ran and not ended)."""


async def _end_one(livechat: Livechat, conversation_id: str, ended: list[str]) -> None:
    try:
        await livechat.conversations.ask(conversation_id, End(by="system", reason=ORG_DATA_DELETED))
    except NotFound:  # it closed meanwhile
        return
    except ActorError:
        log.warning("conversation not ended before deleting its organization",
                    exc_info=True, extra={"conversationId": conversation_id})
        return
    ended.append(conversation_id)


async def end_open_conversations(livechat: Livechat, org_id: str) -> int:
    """End every open conversation of ``org_id`` through its actor; how many it ended."""
    ids = await livechat.store.read(lambda tx: open_conversation_ids(tx, org_id))
    ended: list[str] = []
    limiter = trio.CapacityLimiter(END_CONCURRENCY)

    async def end(conversation_id: str) -> None:
        async with limiter:
            await _end_one(livechat, conversation_id, ended)

    async with trio.open_nursery() as nursery:
        for conversation_id in ids:
            nursery.start_soon(end, conversation_id)
    return len(ended)


async def delete_organization(livechat: Livechat, org_id: str, *,
                              storage: AttachmentStorage | None = None) -> OrgDeletion:
    """Delete everything of ``org_id``: end its open conversations through their actors
    (``End(by="system", reason="organization data deleted")``), delete its conversations,
    messages, outbox rows, attachments (files, then rows), settings, business hours and
    idempotency keys, and forget its cached settings (callers holding other caches of
    the organization, such as business hours, forget it too).

    A conversation opened while this runs is ended too, up to :data:`END_ROUNDS` rounds;
    one that still is open at the end is left (with its records) and counted in
    ``still_open``. Idempotent; touches no other organization. Raises as
    :func:`purge_closed` (what was committed before stays deleted).
    """
    ended, purged = 0, Purged()
    for _ in range(END_ROUNDS):
        ended += await end_open_conversations(livechat, org_id)
        purged.add(await purge_closed(livechat.store, org_id, before=None, storage=storage))
        if not await livechat.store.read(lambda tx: open_conversation_ids(tx, org_id)):
            break
    tenants = [t.id for t in livechat.tenants.values() if t.organization_id == org_id]
    rows = await livechat.store.transaction(lambda tx: delete_org_rows(tx, org_id, tenants))
    livechat.org_settings.forget(org_id)
    still_open = len(await livechat.store.read(lambda tx: open_conversation_ids(tx, org_id)))
    return OrgDeletion(ended=ended, purged=purged, rows=rows, still_open=still_open)


class RetentionSweep:
    """A supervised service that purges, for every organization with records, the closed
    conversations older than that organization's ``retentionDays``, then deletes the
    idempotency keys older than ``idempotency_days`` (when given).

    It sweeps ``first_delay_seconds`` after start, then every ``interval_seconds``
    (default: a day). A failure in one organization is logged and the others are still
    swept; a failure of the whole sweep is logged and retried at the next interval, so the
    service itself never crashes (a crash would restart its younger siblings). Purging is
    idempotent, so several instances sweeping the same store only repeat work.
    """

    def __init__(self, store: Callable[[], Store], settings: SettingsSource, *,
                 storage: Callable[[], AttachmentStorage | None] = lambda: None,
                 interval_seconds: float = DAY_SECONDS, first_delay_seconds: float = 60.0,
                 clock: Callable[[], datetime] = utc_now,
                 leadership: Callable[[], Leadership | None] | None = None,
                 idempotency_days: int | None = None) -> None:
        self._store = store
        self._idempotency_days = idempotency_days
        self._leadership = leadership
        """In a cluster only the leader sweeps (None: always sweep, a single instance)."""
        self._settings = settings
        self._storage = storage
        self.interval_seconds = interval_seconds
        self.first_delay_seconds = first_delay_seconds
        self._clock = clock
        self.sweeps = 0
        """Sweeps finished since start (for tests and metrics)."""
        self.expired_keys = 0
        """Idempotency keys deleted since start."""
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Stop; a purge batch in flight is committed or rolled back, never half done."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Report started at once, sweep on schedule until stopped."""
        self._stop = trio.Event()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve_schedule)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _serve_schedule(self) -> None:
        await trio.sleep(self.first_delay_seconds)
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("retention sweep failed; next try in one interval")
            await trio.sleep(self.interval_seconds)

    async def sweep_once(self) -> dict[str, Purged]:
        """Purge every organization once; the counts of those that were purged.

        Raises what the store raises when the organizations cannot be listed; errors of
        one organization are logged and skipped.
        """
        lead = self._leadership() if self._leadership is not None else None
        if self._leadership is not None and lead is None:
            return {}  # another instance leads: it sweeps
        orgs = await self._store().read(orgs_with_records)
        done: dict[str, Purged] = {}
        for org_id in orgs:
            try:
                if lead is not None:
                    await self._fence(lead)
                done[org_id] = await self._purge(org_id)
            except FencedOut:
                log.warning("retention sweep stopped: a newer leader took over")
                break
            except Exception:
                log.exception("retention purge of an organization failed",
                              extra={"org": org_id})
        else:  # not fenced out
            await self._expire_keys(lead)
        self.sweeps += 1
        return done

    async def _expire_keys(self, lead: Leadership | None) -> None:
        if self._idempotency_days is None:
            return
        try:
            if lead is not None:
                await self._fence(lead)
            before = retention_cutoff(self._clock(), self._idempotency_days)
            expired = await expire_keys(self._store(), before)
        except FencedOut:
            log.warning("retention sweep stopped: a newer leader took over")
            return
        except Exception:
            log.exception("expiring idempotency keys failed; next try at the next sweep")
            return
        self.expired_keys += expired
        log.info("idempotency keys expired", extra={"before": before, "keys": expired})

    async def _fence(self, lead: Leadership) -> None:
        now = iso(self._clock())
        await self._store().transaction(
            lambda tx: advance(tx, "retention", lead.term, lead.instance_id, now))

    async def _purge(self, org_id: str) -> Purged:
        settings = await self._settings.get(org_id)
        before = retention_cutoff(self._clock(), settings.retention_days)
        purged = await purge_closed(self._store(), org_id, before=before,
                                    storage=self._storage())
        log.info("retention purge", extra={
            "org": org_id, "before": before, "conversations": purged.conversations,
            "messages": purged.messages, "attachments": purged.attachments,
            "outbox": purged.outbox})
        return purged
