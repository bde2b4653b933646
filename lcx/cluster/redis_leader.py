"""The leader lease: ``SET NX PX`` with a fencing term, renewed by compare-and-PEXPIRE.

State machine, driven by the bus's heartbeat (:meth:`LeaderLease.beat`) and by a watchdog
task (:meth:`LeaderLease.watch`)::

    follower --acquire.lua ok--> leader(term, deadline)
    leader   --renew.lua ok----> leader(term, deadline = renew start + lease - margin)
    leader   --renew.lua 0-----> follower                (someone else holds the key)
    leader   --local deadline--> follower + stale value  (the watchdog, or the next beat)
    stale    --release.lua-----> follower                (our lapsed key deleted, if ours)
    follower --acquire.lua 2---> follower, holding off one lease (Redis lost its data)

The deadline is local and monotonic (``trio.current_time``): the lease is counted from the
moment the renew was *sent*, so it always ends before Redis expires the key, whatever the
two clocks say. After a pause (SIGSTOP, GC, a stalled event loop) the deadline has passed:
``is_leader()`` is already False, and the first thing the next beat does is step down. A
lapsed lease is never extended: the instance deletes it (compare-and-delete) and competes
for a *new* term like everyone else.

A Redis that loses its data (restart without persistence) loses the lease while its
holder still believes in it until its deadline. The term counter is gone too, which is how
followers that have seen a term notice: they hold off one lease (their own clock) before
taking a new term, so two instances never believe they lead at once; the new term is above
every term the acquirer has seen. (An instance that never saw a term cannot tell; the
store's epoch check remains the last fence.)
"""

from __future__ import annotations

import logging
import math

import trio

from lcx.cluster.bus import Leadership, LeadershipHandler
from lcx.cluster.redis_keys import Keys
from lcx.cluster.redis_link import RedisLink

log = logging.getLogger("lcx.cluster")

_DATA_LOST = 2


class LeaderLease:
    """This instance's view of, and claim on, the cluster leadership."""

    def __init__(self, instance_id: str, keys: Keys, *, lease_ms: int, margin_ms: int) -> None:
        self.instance_id = instance_id
        self._keys = keys
        self._lease_ms = lease_ms
        self._hold = (lease_ms - margin_ms) / 1000
        self._handlers: list[LeadershipHandler] = []
        self._term: int | None = None
        self._deadline = -math.inf
        self._seen: Leadership | None = None
        self._highest_term = 0
        self._stale: str | None = None
        self._hold_off_until: float | None = None
        self._gained = trio.Event()

    # --- what others ask ----------------------------------------------------------------
    def is_leader(self) -> bool:
        """Whether we hold a lease whose local deadline has not passed."""
        return self._term is not None and trio.current_time() < self._deadline

    def leadership(self) -> Leadership | None:
        """Us while we lead; otherwise the holder we last saw (never our own old term)."""
        if self._term is not None and self.is_leader():
            return Leadership(self.instance_id, self._term)
        seen = self._seen
        if seen is None or seen.instance_id == self.instance_id:
            return None
        return seen

    @property
    def highest_term(self) -> int:
        """The highest term this instance has seen (the floor of its next acquisition)."""
        return self._highest_term

    def on_leadership(self, handler: LeadershipHandler) -> None:
        """Call ``handler(Leadership)`` on gain and ``handler(None)`` on loss."""
        self._handlers.append(handler)

    # --- driven by the bus --------------------------------------------------------------
    async def beat(self, link: RedisLink) -> None:
        """Renew (leader) or try to acquire (follower); step down first if the lease lapsed.

        Raises:
            BusUnavailable: Redis did not answer (a leader stays so until its deadline).
        """
        start = trio.current_time()
        if self._term is not None and start >= self._deadline:
            self._step_down("lease lapsed before renewal", stale=True)
        if self._stale is not None:
            await link.script("release", [self._keys.leader], [self._stale])
            self._stale = None
        if self._term is not None:
            await self._renew(link, start, self._term)
        else:
            await self._acquire(link, start)

    async def watch(self) -> None:
        """Step down at the local deadline even if no beat runs (Redis down, stalled)."""
        while True:
            if self._term is None:
                self._gained = trio.Event()
                await self._gained.wait()
                continue
            await trio.sleep_until(self._deadline)
            if self._term is not None and trio.current_time() >= self._deadline:
                self._step_down("lease not renewed before its local deadline", stale=True)

    async def release(self, link: RedisLink) -> bool:
        """Give the lease up at once (compare-and-delete); True if we held one.

        Raises:
            BusUnavailable: Redis did not answer (the key then expires by itself).
        """
        value = self._value() if self._term is not None else self._stale
        if self._term is not None:
            self._step_down("released", stale=False)
        self._stale = None
        if value is None:
            return False
        await link.script("release", [self._keys.leader], [value])
        return True

    def forget(self) -> None:
        """Drop every claim without touching Redis (the bus stopped or was cancelled)."""
        if self._term is not None:
            self._step_down("bus stopped", stale=False)
        self._seen = None
        self._stale = None

    # --- internals ----------------------------------------------------------------------
    async def _renew(self, link: RedisLink, start: float, term: int) -> None:
        renewed = await link.script("renew", [self._keys.leader],
                                    [self._value(), self._lease_ms])
        if self._term != term:  # the watchdog stepped down while we waited
            if renewed:
                self._stale = f"{self.instance_id}:{term}"
            return
        if renewed:
            self._deadline = start + self._hold
        else:
            self._step_down("lease lost to another instance", stale=False)

    async def _acquire(self, link: RedisLink, start: float) -> None:
        held_off = self._hold_off_until is not None and start >= self._hold_off_until
        acquired, raw = await link.script(
            "acquire", [self._keys.leader, self._keys.term],
            [self.instance_id, self._lease_ms, self._highest_term, "1" if held_off else "0"])
        if acquired == _DATA_LOST:
            if self._hold_off_until is None:
                log.warning("redis lost the lease and its term: holding off one lease",
                            extra={"instance": self.instance_id})
                self._hold_off_until = start + self._lease_ms / 1000
            return
        self._hold_off_until = None
        holder, term = _parse(raw)
        self._highest_term = max(self._highest_term, term)
        self._seen = Leadership(holder, term)
        if not acquired:
            if holder == self.instance_id:  # our own key from a lapsed term or a past life
                self._stale = _text(raw)
            return
        if trio.current_time() >= start + self._hold:  # the answer came too late to use
            self._stale = _text(raw)
            return
        self._term, self._deadline = term, start + self._hold
        self._gained.set()
        log.info("leadership gained", extra={"instance": self.instance_id, "term": term})
        self._notify(Leadership(self.instance_id, term))

    def _step_down(self, reason: str, *, stale: bool) -> None:
        value = self._value()
        term = self._term
        self._term, self._deadline = None, -math.inf
        if stale:
            self._stale = value
        log.warning("leadership lost: %s", reason,
                    extra={"instance": self.instance_id, "term": term})
        self._notify(None)

    def _value(self) -> str:
        return f"{self.instance_id}:{self._term}"

    def _notify(self, leadership: Leadership | None) -> None:
        for handler in self._handlers:
            try:
                handler(leadership)
            except Exception:
                log.exception("leadership handler failed")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _parse(raw: bytes | str) -> tuple[str, int]:
    """``"<instance>:<term>"`` -> (instance, term)."""
    holder, _, term = _text(raw).rpartition(":")
    return holder, int(term)
