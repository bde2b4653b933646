"""The keyed (dynamic) supervisor of virtual actors.

A virtual actor exists for a key (a conversation id, an agent id) only while it has work:
the first message for the key activates it (``activate(key)`` loads its state), it is
passivated after ``idle_seconds`` without messages, and the next message activates it
again. Callers address it by key (``send``, ``ask``) and never see the difference.

Each key is supervised on its own: a crash restarts that key's actor (same mailbox, after
a backoff); too many crashes within the intensity window make the supervisor give up on
that key only (its waiting messages are dropped, their asks fail), never on its siblings.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from lcx.errors import MailboxClosed, MailboxFull
from lcx.runtime.actor import Actor, ActorProcess
from lcx.runtime.mailbox import Mailbox
from lcx.runtime.policy import Backoff, Intensity, Restart, RestartWindow
from lcx.runtime.ref import DEFAULT_ASK_TIMEOUT, ActorRef
from lcx.runtime.registry import Registry

log = logging.getLogger("lcx.runtime")

_RESEND_ATTEMPTS = 3

Activate = Callable[[str], Awaitable[Actor]]
"""Builds the behaviour for a key, loading its state (runs inside the actor's task)."""


@dataclass(eq=False)
class _Entry:
    key: str
    ref: ActorRef
    window: RestartWindow
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    process: ActorProcess | None = None
    passivating: bool = False
    stopping: bool = False
    consecutive: int = 0


class KeyedSupervisor:
    """Activates, supervises and passivates one actor per key; see the module docstring."""

    def __init__(self, kind: str, activate: Activate, *, idle_seconds: float | None = 300.0,
                 mailbox_size: int = 256, restart: Restart = Restart.TRANSIENT,
                 intensity: Intensity | None = None, backoff: Backoff | None = None,
                 shutdown_timeout: float = 5.0, registry: Registry | None = None,
                 max_pending_posts: int = 10_000) -> None:
        self.kind = kind
        self.name = f"{kind}s"
        self._activate = activate
        self.idle_seconds = idle_seconds
        self.mailbox_size = mailbox_size
        self.restart = restart
        self.intensity = intensity or Intensity()
        self.backoff = backoff or Backoff()
        self.shutdown_timeout = shutdown_timeout
        self.registry = registry or Registry()
        self._entries: dict[str, _Entry] = {}
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self.max_pending_posts = max_pending_posts
        self.dropped_posts = 0
        """Posts dropped because ``max_pending_posts`` were already waiting."""
        self._waiting: dict[str, collections.deque[object]] = {}
        self._pending_posts = 0
        self._activations = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def activations(self) -> int:
        """How many times an actor was activated (first activations and reactivations)."""
        return self._activations

    def live_keys(self) -> list[str]:
        """The keys whose actors are alive now."""
        return [key for key, entry in self._entries.items() if not entry.passivating]

    def get(self, key: str) -> ActorRef | None:
        """The ref of the live actor for ``key``, without activating one."""
        entry = self._entries.get(key)
        return None if entry is None or entry.passivating else entry.ref

    async def get_or_spawn(self, key: str) -> ActorRef:
        """The ref of the actor for ``key``, activating it if it is not alive.

        Concurrent callers for one key get one actor. If the actor is passivating, this
        waits for it to finish before activating a new one (never two at once).

        Raises:
            MailboxClosed: the supervisor is not running.
        """
        while True:
            if self._nursery is None or self._stop.is_set():
                raise MailboxClosed(f"{self.name} supervisor is not running")
            entry = self._entries.get(key)
            if entry is None:
                return self._spawn(key).ref
            if not entry.passivating:
                return entry.ref
            await entry.done.wait()

    async def send(self, key: str, message: object) -> None:
        """Send to the actor for ``key`` (activating it), waiting while its mailbox is full.

        Raises:
            MailboxClosed: the supervisor is not running.
        """
        for _ in range(_RESEND_ATTEMPTS):
            ref = await self.get_or_spawn(key)
            try:
                return await ref.send(message)
            except MailboxClosed:
                continue  # passivated between lookup and send: activate again
        raise MailboxClosed(f"{self.kind}:{key} kept stopping")

    async def ask(self, key: str, message: object, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Ask the actor for ``key`` (activating it); see :meth:`ActorRef.ask`."""
        entry = self._entries.get(key)
        if entry is not None and not entry.passivating and not self._stop.is_set():
            try:  # the actor is live: no activation step to go through
                return await entry.ref.ask(message, timeout)
            except MailboxClosed:
                pass  # passivated meanwhile: activate again below
        for _ in range(_RESEND_ATTEMPTS):
            ref = await self.get_or_spawn(key)
            try:
                return await ref.ask(message, timeout)
            except MailboxClosed:
                continue
        raise MailboxClosed(f"{self.kind}:{key} kept stopping")

    def post(self, key: str, message: object) -> None:
        """Deliver to the actor for ``key`` without waiting, activating it if needed.

        Uses ``tell`` when the actor is live, has room and nothing posted earlier is still
        waiting; otherwise the message waits, in order, behind the key's earlier posts, and
        one task per key activates the actor and delivers them as room frees up. At most
        ``max_pending_posts`` wait in all: beyond that a post is dropped, logged and
        counted in :attr:`dropped_posts` (posts are hints their receivers resync from).

        Raises:
            MailboxClosed: the supervisor is not running.
        """
        nursery = self._nursery
        if nursery is None or self._stop.is_set():
            raise MailboxClosed(f"{self.name} supervisor is not running")
        waiting = self._waiting.get(key)
        if waiting is None:
            ref = self.get(key)
            if ref is not None:
                try:
                    ref.tell(message)
                    return
                except (MailboxFull, MailboxClosed):
                    pass
        if self._pending_posts >= self.max_pending_posts:
            self.dropped_posts += 1
            log.warning("post dropped: too many posts waiting", extra={"actor": key})
            return
        self._pending_posts += 1
        if waiting is not None:
            waiting.append(message)
            return
        self._waiting[key] = collections.deque([message])
        nursery.start_soon(self._deliver_waiting, key)

    async def _deliver_waiting(self, key: str) -> None:
        """Deliver the posts waiting for ``key``, oldest first, then stop."""
        waiting = self._waiting[key]
        try:
            while waiting:
                try:
                    await self.send(key, waiting[0])
                except MailboxClosed:
                    log.warning("posts dropped: supervisor stopped", extra={"actor": key})
                    return
                waiting.popleft()
                self._pending_posts -= 1
        finally:
            self._pending_posts -= len(waiting)
            del self._waiting[key]

    def stop_actor(self, key: str) -> bool:
        """Begin a graceful stop of the actor for ``key`` (it finishes its current message
        and runs ``on_stop``; its mailbox closes, so new messages reactivate it afresh).
        False when no actor for ``key`` is alive. Does not wait."""
        entry = self._entries.get(key)
        if entry is None or entry.passivating or entry.stopping or self._nursery is None:
            return False
        self._nursery.start_soon(self._stop_entry, entry)
        return True

    def request_stop(self) -> None:
        """Stop every actor (each asked, then cancelled after its timeout). Idempotent."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve activations until ``request_stop``; then stop all actors and return."""
        self._stop = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._stop.wait()
                async with trio.open_nursery() as stoppers:
                    for entry in list(self._entries.values()):
                        stoppers.start_soon(self._stop_entry, entry)
        finally:
            self._nursery = None

    def _spawn(self, key: str) -> _Entry:
        assert self._nursery is not None
        ref = ActorRef(self.kind, key, Mailbox(self.mailbox_size))
        entry = _Entry(key, ref, RestartWindow(self.intensity))
        self._entries[key] = entry
        self.registry.register(ref)
        self._nursery.start_soon(self._serve, entry, name=f"{self.kind}:{key}")
        return entry

    async def _serve(self, entry: _Entry) -> None:
        try:
            with entry.scope:
                while await self._run_once(entry):
                    pass
        finally:
            entry.ref.mailbox.close()
            self.registry.unregister(entry.ref)
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]
            # the process refers back to the entry (its idle hook): without this cycle
            # a passivated actor is freed at once, not by a full garbage collection
            entry.process = None
            entry.done.set()

    async def _run_once(self, entry: _Entry) -> bool:
        """Run one incarnation; True when another one should follow."""
        process = ActorProcess(entry.ref, partial(self._activate, entry.key),
                               idle_seconds=self.idle_seconds,
                               on_idle=partial(self._passivate_if_idle, entry))
        entry.process = process
        self._activations += 1
        started = trio.current_time()
        crash: Exception | None = None
        self.registry.note_started(self.kind)
        try:
            await process.run()
        except Exception as exc:
            crash = exc
        finally:
            self.registry.note_stopped(self.kind)
        if crash is not None:
            return await self._after_crash(entry, crash, trio.current_time() - started)
        # a normal exit with messages left (the actor stopped itself) reactivates it
        return not (entry.passivating or entry.stopping) and entry.ref.mailbox.depth > 0

    async def _after_crash(self, entry: _Entry, exc: Exception, ran_for: float) -> bool:
        fields = {"actor": entry.key, "kind": self.kind}
        self.registry.note_crash(self.kind)
        log.error("actor crashed", exc_info=exc, extra=fields)
        if entry.stopping or not self.restart.wants_restart(crashed=True):
            return False
        if not entry.window.admit(trio.current_time()):
            log.error("giving up on actor after repeated crashes", extra=fields)
            return False
        if ran_for >= self.backoff.reset_after_seconds:
            entry.consecutive = 0
        entry.consecutive += 1
        self.registry.note_restart(self.kind)
        await trio.sleep(self.backoff.delay(entry.consecutive))
        return True

    def _passivate_if_idle(self, entry: _Entry) -> bool:
        if entry.ref.mailbox.depth:
            return False
        entry.passivating = True
        entry.ref.mailbox.close()
        return True

    async def _stop_entry(self, entry: _Entry) -> None:
        entry.stopping = True
        if entry.process is not None:
            entry.process.request_stop()
        with trio.move_on_after(self.shutdown_timeout):
            await entry.done.wait()
        if not entry.done.is_set():
            log.warning("actor did not stop in time; cancelling",
                        extra={"actor": entry.key, "kind": self.kind})
            entry.scope.cancel()
            await entry.done.wait()
