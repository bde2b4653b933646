"""Membership: heartbeats with a server-side expiry, and the live view built from them.

Each beat runs ``heartbeat.lua``: it writes this member's record under its own key with
``PX lease_ms``, adds the id to the members set, and returns the records of every member
whose key still exists, pruning the ids whose key expired. Expiry is Redis's own clock, so
no two hosts' clocks are ever compared: a member that stops heartbeating is gone
``lease_ms`` after its last beat.

When Redis cannot be reached the last view is kept (a blip must not reshuffle every actor)
but it ages; once it is older than ``lease_ms`` every peer has dropped us too, so the view
is emptied: an isolated instance sees no cluster, not a stale one. ``view_age()`` tells how
old the view is.

A beat that finds our record gone (expired while we were paused or cut off, or lost with a
Redis restart), or that comes more than a lease after the last one was sent, tells the
handlers an empty view before the new one, even if nobody looked at the view in between:
the others may have counted us gone and owned our actors meanwhile, and an empty view is
how the handlers learn that this instance was isolated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from lcx.cluster.bus import BusError, MemberInfo, MemberSet, MembershipHandler, candidates_of
from lcx.cluster.redis_frames import MemberRecord, decode_record, encode
from lcx.cluster.redis_keys import Keys
from lcx.cluster.redis_link import Client, RedisLink

log = logging.getLogger("lcx.cluster")


class Membership:
    """The live members as this instance last read them, and the handlers to tell."""

    def __init__(self, instance_id: str, keys: Keys, *, lease_ms: int) -> None:
        self.instance_id = instance_id
        self._keys = keys
        self._lease_ms = lease_ms
        self._view: dict[str, MemberInfo] = {}
        self._read_at: float | None = None
        self._beat_sent_at: float | None = None
        """When the last beat that was answered was sent."""
        self._handlers: list[MembershipHandler] = []
        self._told = False
        self._member_set = MemberSet(0, ())

    def members(self) -> Mapping[str, MemberInfo]:
        """The live members (empty once the view is older than the lease)."""
        if self._expired():
            return {}
        return dict(self._view)

    def member_set(self) -> MemberSet:
        """The candidates of :meth:`members`, versioned (a new version at every change)."""
        if self._expired() and self._view:
            self.expire()
        return self._member_set

    def view_age(self) -> float | None:
        """Seconds since the view was last read from Redis (None: never, or left)."""
        if self._read_at is None:
            return None
        return trio.current_time() - self._read_at

    def on_membership(self, handler: MembershipHandler) -> None:
        """Call ``handler`` with the new view when members join, leave, die or drain."""
        self._handlers.append(handler)

    async def beat(self, link: RedisLink, record: MemberRecord) -> None:
        """Write our record, read everyone's; notify handlers if the view changed.

        Raises:
            BusUnavailable: Redis did not answer.
        """
        sent_at = trio.current_time()
        had, records = await link.script(
            "heartbeat", [self._keys.members, self._keys.member(self.instance_id)],
            [self.instance_id, encode(record), self._lease_ms, self._keys.member_prefix])
        if self._lapsed(bool(had)):
            # the others may have counted us gone meanwhile (and owned our actors): say so
            # with an empty view first, as if it had expired while we looked
            log.warning("membership lapsed: this instance may have been counted gone",
                        extra={"instance": self.instance_id})
            self._apply({})
        self._beat_sent_at = sent_at
        self._read_at = trio.current_time()
        view: dict[str, MemberInfo] = {}
        for raw in records:
            try:
                info = decode_record(raw).info()
            except BusError:
                log.warning("unreadable member record skipped", exc_info=True)
                continue
            view[info.instance_id] = info
        self._apply(view)

    def _lapsed(self, had_record: bool) -> bool:
        """Whether our membership may have lapsed since the last beat (our record was gone
        before this one, or the last beat was sent more than a lease ago), while we had a
        view the handlers were told of and not yet told it emptied."""
        if not (self._told and self._view):
            return False
        if not had_record:
            return True
        sent = self._beat_sent_at
        return sent is not None and (trio.current_time() - sent) * 1000 > self._lease_ms

    def expire(self) -> None:
        """Empty the view if it is older than the lease (called when a beat failed)."""
        if self._expired() and self._view:
            log.warning("membership view expired: redis unreachable for longer than the lease",
                        extra={"instance": self.instance_id})
            self._apply({})

    async def leave(self, link: RedisLink) -> None:
        """Deregister at once (delete our record, leave the set) and forget the view.

        Raises:
            BusUnavailable: Redis did not answer (the record then expires by itself).
        """
        self.forget()

        async def deregister(client: Client) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete([self._keys.member(self.instance_id)])
                pipe.srem(self._keys.members, [self.instance_id])

        await link.call("deregister", deregister)

    def forget(self) -> None:
        """Forget the view without telling anyone (the bus stopped)."""
        self._view = {}
        self._read_at = None
        self._beat_sent_at = None
        self._told = False
        self._member_set = MemberSet(self._member_set.version + 1, ())

    def _expired(self) -> bool:
        age = self.view_age()
        return age is not None and age * 1000 > self._lease_ms

    def _apply(self, view: dict[str, MemberInfo]) -> None:
        changed = _shape(view) != _shape(self._view) or not self._told
        self._view = view
        if changed:
            self._told = True
            self._member_set = MemberSet(self._member_set.version + 1, candidates_of(view))
            for handler in self._handlers:
                try:
                    handler(dict(view))
                except Exception:
                    log.exception("membership handler failed")


def _shape(view: Mapping[str, MemberInfo]) -> set[tuple[str, bool, str]]:
    """What counts as a membership change: who, draining or not, and where (not load)."""
    return {(info.instance_id, info.draining, info.url) for info in view.values()}
