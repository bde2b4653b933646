"""Ownership upkeep: keep this instance's actors in line with the cluster's placement.

At start and whenever membership changes, a full sweep; every ``SWEEP_SECONDS`` a periodic
one, the same but over at most ``SWEEP_ROWS`` open conversations, going on where the last
one stopped (a full pass over N open conversations takes N / ``SWEEP_ROWS`` periods, so
the background cost per second does not grow with N; the moments that need everything at
once, a restart or a peer's death, are full sweeps):

- local actors whose key is now owned by another instance are stopped gracefully (their
  state is in the store; the new owner rebuilds them on their next message);
- open conversations this instance now owns are woken (their timers re-arm), and so are
  queues with pending requests (they reload and route again) and provider links (their
  stream resumes from the stored session): after an instance dies, its conversations,
  queues and provider streams come back on the survivors without waiting for traffic;
- the local agent sockets are registered again with their agents' sessions, which may
  have moved: all of them on a full sweep, the next few hundred in turn on a periodic one
  (a session that lost a registration, e.g. restarted after a crash, is repaired);
- after this instance was isolated (the bus told it an empty view: paused or cut off past
  its lease, or Redis lost its record), every local conversation and queue actor is
  stopped when it sees the cluster again: other instances may have owned and changed them
  meanwhile, so what they hold in memory may be stale; they are rebuilt from the store;
- while this instance is isolated, and for up to ``isolated_grace_seconds``
  (``cluster.isolated_grace_ms``), the sweep stays idle: with no view every key would
  look like its own, and waking them all here would take the others' conversations,
  queues and provider streams (timers fired twice, two streams per provider session)
  while they serve them. Past the grace it sweeps as a lone instance (Redis is gone for
  long: serving alone beats serving nothing; the store fences what both sides write).

This replaces a one-shot start-up recovery: a restart is just the first sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import trio

from actors.keys import queue_key
from actors.livechat import Livechat
from actors.messages import OpenLink, Recover, Resync
from lcx.cluster.bus import MemberInfo
from lcx.livechat.conversation import NATIVE_PROVIDER, timeout_of
from lcx.model import parse_iso, utc_now
from lcx.store.conversations import OpenConversationKey, open_conversation_keys

log = logging.getLogger("lcx.ownership")

SWEEP_SECONDS = 10.0
SWEEP_PAGE = 500
"""Open conversations read per store read of a sweep; the event loop runs between pages."""
SWEEP_ROWS = 1000
"""Open conversations a periodic sweep reads at most: with up to this many open, each
periodic sweep is a full pass, as before; with 10,000 a pass takes ten periods."""
ISOLATED_GRACE_SECONDS = 30.0
"""The default of ``cluster.isolated_grace_ms``."""


class OwnershipService:
    """A supervised service running the sweeps described in the module docstring."""

    def __init__(self, livechat: Livechat, *,
                 sockets: Callable[[bool], Awaitable[None]] | None = None,
                 sweep_seconds: float = SWEEP_SECONDS, page_size: int = SWEEP_PAGE,
                 periodic_rows: int = SWEEP_ROWS,
                 isolated_grace_seconds: float = ISOLATED_GRACE_SECONDS,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.livechat = livechat
        self.sweep_seconds = sweep_seconds
        self.page_size = page_size
        self.periodic_rows = periodic_rows
        self._resume_after = ""
        """Where the next periodic sweep goes on (the ``open_key`` it stopped after; "":
        from the start)."""
        self.isolated_grace_seconds = isolated_grace_seconds
        self._clock = clock
        self.idle_sweeps = 0
        """Sweeps skipped while isolated (within the grace)."""
        self._isolated_since: float | None = None
        """When the bus last told an empty view (None: it sees members)."""
        self._resync_sockets = sockets
        self._stop = trio.Event()
        self._changed = trio.Event()
        self.sweeps = 0
        self._isolated = False
        """The bus told an empty view since the last sweep that saw members."""
        livechat.bus.on_membership(self._membership_changed)

    def _membership_changed(self, members: Mapping[str, MemberInfo]) -> None:
        if not members:
            self._isolated = True
            if self._isolated_since is None:
                self._isolated_since = self._clock()
        else:
            self._isolated_since = None
        self._changed.set()

    def request_stop(self) -> None:
        """Stop sweeping."""
        self._stop.set()
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Sweep once, report started, then sweep on every change and period."""
        self._stop = trio.Event()
        await self.sweep()
        task_status.started()
        while not self._stop.is_set():
            changed = False
            with trio.move_on_after(self._next_sweep_in()):
                await self._changed.wait()
                changed = True
            self._changed = trio.Event()
            if self._stop.is_set():
                break
            # a membership change, or isolation (its grace running out), needs every
            # conversation at once; otherwise the periodic sweep goes on with its pass
            await self._sweep_safely(full=changed or self._isolated_since is not None)

    def _next_sweep_in(self) -> float:
        """Seconds to the next periodic sweep (sooner when the isolation grace ends)."""
        left = self._grace_left()
        return self.sweep_seconds if left is None else min(self.sweep_seconds, left + 0.01)

    def _grace_left(self) -> float | None:
        """Seconds of isolation grace left (None: not isolated, or the grace is over)."""
        if self._isolated_since is None:
            return None
        left = self._isolated_since + self.isolated_grace_seconds - self._clock()
        return left if left > 0 else None

    async def _sweep_safely(self, *, full: bool) -> None:
        try:
            await (self.sweep() if full else self.periodic_sweep())
        except Exception:
            log.exception("ownership sweep failed; retrying at the next one")

    async def sweep(self) -> None:
        """Hand off what moved away, wake what moved here (every open conversation),
        re-register sockets; nothing while isolated within the grace."""
        await self._sweep(None)

    async def periodic_sweep(self) -> None:
        """:meth:`sweep`, but over at most ``periodic_rows`` open conversations, from
        where the last periodic sweep stopped (wrapping to the start at the end)."""
        await self._sweep(self.periodic_rows)

    async def _sweep(self, rows: int | None) -> None:
        if self._grace_left() is not None and not self.livechat.bus.members():
            self.idle_sweeps += 1
            if self.idle_sweeps == 1 or self.idle_sweeps % 10 == 0:
                log.warning("isolated from the cluster: ownership sweep idle", extra={
                    "graceLeftSeconds": round(self._grace_left() or 0.0, 1)})
            return
        self.sweeps += 1
        moved = self._rebuild_after_isolation() + self._hand_off()
        if rows is None:
            woken, _ = await self._scan("", None)
            self._resume_after = ""  # a full pass was just made: the next one starts over
        else:
            woken, self._resume_after = await self._scan(self._resume_after, rows)
        if self._resync_sockets is not None:
            await self._resync_sockets(rows is None)
        if moved or woken:
            log.info("ownership sweep", extra={"handedOff": moved, "woken": woken})

    async def _scan(self, after: str, rows: int | None) -> tuple[int, str]:
        """Wake what needs it among the open conversations after ``after`` (at most
        ``rows`` of them; None: to the end), and the queues they wait in: how many were
        woken and where a next scan goes on ("": at the start, the end was reached)."""
        woken, read = 0, 0
        queues: set[str] = set()
        while True:
            # keys only, a page at a time: with 100,000 open conversations a sweep neither
            # decodes every row nor holds the event loop for the whole scan
            size = self.page_size if rows is None else min(self.page_size, rows - read)
            page = await self.livechat.store.read(
                partial(open_conversation_keys, after=after, limit=size))
            read += len(page)
            woken += await self._wake(page)
            queues.update(queue_key(c.org_id, c.user_group_id) for c in page
                          if c.status == "pending")
            if len(page) < size:
                after = ""
                break
            after = page[-1].open_key
            if rows is not None and read >= rows:
                break
            await trio.lowlevel.checkpoint()
        for key in sorted(queues):
            if self.livechat.queues.owner(key) == self.livechat.bus.instance_id and \
                    self.livechat.queues.get(key) is None:
                self.livechat.queues.post(key, Resync())
        return woken, after

    async def _wake(self, page: list[OpenConversationKey]) -> int:
        """Wake the conversations (and provider links) of ``page`` this instance owns that
        are neither in memory nor waiting on a deadline here; how many were woken.

        A conversation of lcx's own agents only needs its deadline back: it is armed
        here from the stored keys, as its actor would (the deadline's message activates
        the actor, which checks it against the whole state). Others are rebuilt.
        """
        woken = 0
        me = self.livechat.bus.instance_id
        for conversation in page:
            native = conversation.provider == NATIVE_PROVIDER
            if not native and self.livechat.links.owner(conversation.id) == me and \
                    self.livechat.links.get(conversation.id) is None:
                self.livechat.links.post(conversation.id, OpenLink())  # its stream resumes here
                woken += 1
            if self.livechat.conversations.owner(conversation.id) != me or \
                    self.livechat.conversations.get(conversation.id) is not None or \
                    self.livechat.timers.armed(conversation.id):
                continue
            if native:
                await self._arm(conversation)
            else:
                self.livechat.conversations.post(conversation.id, Recover())
            woken += 1
        return woken

    async def _arm(self, conversation: OpenConversationKey) -> None:
        settings = await self.livechat.org_settings.get(conversation.org_id)
        timeout = timeout_of(conversation.status, conversation.queued_at,
                             conversation.last_activity_at, settings)
        if timeout is None:
            return
        delay = max(0.0, (parse_iso(timeout.deadline) - utc_now()).total_seconds())
        self.livechat.arm_timeout(conversation.id, delay, timeout)

    def _rebuild_after_isolation(self) -> int:
        if not self._isolated or not self.livechat.bus.members():
            return 0
        self._isolated = False
        stopped = 0
        for router in (self.livechat.conversations, self.livechat.queues):
            for key in router.live_keys():
                stopped += router.local.stop_actor(key)
        log.warning("back in the cluster after isolation: actors rebuilt from the store",
                    extra={"stopped": stopped})
        return stopped

    def _hand_off(self) -> int:
        moved = 0
        for router in self.livechat.routers.values():
            for key in router.live_keys():
                if router.owner(key) != self.livechat.bus.instance_id and \
                        router.local.stop_actor(key):
                    moved += 1
        return moved
