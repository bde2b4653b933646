"""The agent websocket (``GET /ws``, API.md section 5): one connection of one agent's tab.

The connection authenticates (``?token=`` or an ``auth`` frame within 5 s; a bad token
closes it with 4401), registers a bounded frame sink with the agent's session actor and
then runs a reader task that decodes and dispatches frames (``agent_frames``). The
instance's flush loop writes the socket's frames (``socket_sink``); a writer task runs
only while the kernel has not taken everything (a slow reader), or all along when the
connection allows no direct write (it then also queues the heartbeats). One timer per
instance queues the ``HEARTBEAT`` frames of the directly written sockets, and one task per
instance closes every socket (1012) when the instance drains. A client that falls more
than ``ws.max_queued_frames`` or the sink's byte bounds behind is cut off (4008) instead
of growing memory (``socket_sink``); the reader takes no frame while the sink is half
full, so a client's own requests slow it down rather than cut it.
"""

from __future__ import annotations

import heapq
import logging
import weakref
from collections.abc import Awaitable, Callable

import msgspec
import trio
from quart import Blueprint, websocket

from actors.livechat import Livechat
from lcx.api.agent_frames import FrameHandler, error_frame
from lcx.api.agent_sockets import SocketDirectory
from lcx.api.auth import principal_from_query_or_frame
from lcx.api.bodies import refuse_deep_nesting
from lcx.api.deps import AppDeps
from lcx.api.socket_sink import SocketSink, instance_budget, instance_flush_loop
from lcx.api.ws_wire import ConnectionClosing, WireWriter, reading
from lcx.auth import Principal, TokenVerifier
from lcx.errors import Forbidden, InvalidRequest, LcxError, Unauthorized
from lcx.ids import new_id
from lcx.model import iso, utc_now
from lcx.runtime.deadline_keeper import aligned
from services.overview_feed import feed_for, push_overview

log = logging.getLogger("lcx.ws")

Receive = Callable[[], Awaitable[str | bytes]]
"""Where the handler takes the client's next frame (``lcx.api.ws_wire.reading``)."""

AUTH_TIMEOUT_SECONDS = 5.0
CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1012
CLOSE_TRY_AGAIN = 1013
"""The agent's session could not be reached within the settle bound (its owner kept
moving): an ``ERROR`` (``unavailable``, ``owner_moving`` or ``overloaded``) says so first."""


def agent_ws_blueprint(deps: AppDeps) -> Blueprint:
    """The blueprint serving ``/ws``."""
    blueprint = Blueprint("agent_ws", __name__)
    assert deps.livechat is not None

    @blueprint.websocket("/ws")
    async def agent_socket() -> None:
        async with reading() as receive:  # before accept: no frame goes to Quart first
            await websocket.accept()
            livechat = deps.livechat
            assert livechat is not None
            principal = await _authenticate(deps.verifier, receive)
            if principal is None:
                await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized")
                return
            assert deps.sockets is not None
            await _serve(livechat, deps.sockets, principal, receive)

    return blueprint


async def _authenticate(verifier: TokenVerifier | None, receive: Receive
                        ) -> Principal | None:
    token = websocket.args.get("token")
    try:
        if verifier is None:
            raise Unauthorized("authentication is not configured")
        if token is None:
            token = await _first_frame_token(receive)
        principal = principal_from_query_or_frame(token, verifier)
        if not principal.has_any("agent", "supervisor") or principal.org is None:
            raise Forbidden("the agent websocket needs an agent or supervisor token")
    except LcxError as exc:
        await websocket.send(msgspec.json.encode(error_frame(None, exc)).decode())
        return None
    return principal


async def _first_frame_token(receive: Receive) -> str | None:
    with trio.move_on_after(AUTH_TIMEOUT_SECONDS):
        try:
            raw = await receive()
        except ConnectionClosing:
            return None
        try:
            refuse_deep_nesting(raw)
            frame = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, InvalidRequest):
            return None
        if isinstance(frame, dict) and frame.get("type") == "auth":
            token = frame.get("token")
            return token if isinstance(token, str) else None
    return None


async def _serve(livechat: Livechat, sockets: SocketDirectory, principal: Principal,
                 receive: Receive) -> None:
    assert principal.org is not None
    socket_id = new_id()
    sink = SocketSink(livechat.max_queued_frames, max_bytes=livechat.max_queued_bytes,
                      budget=instance_budget(livechat))
    sink.attach_writer(WireWriter(), instance_flush_loop(livechat), livechat.counters)
    try:  # waits (bounded) while the session's owner moves; see actors/routing.py
        await sockets.attach(socket_id, sink, principal)
    except LcxError as exc:
        log.warning("agent socket refused: its session is unreachable", extra={
            "agent": principal.sub, "error": type(exc).__name__})
        sink.release()
        await websocket.send(msgspec.json.encode(error_frame(None, exc)).decode())
        await websocket.close(CLOSE_TRY_AGAIN, "session unavailable; reconnect")
        return
    livechat.counters.ws_sessions += 1
    sink.offer_json({"type": "event", "event": "AUTHORIZATION_GRANTED", "data": {
        "agentId": principal.sub, "sessionId": socket_id,
        "heartbeatSeconds": livechat.heartbeat_seconds}})
    handler = FrameHandler(livechat, principal, sink.offer_json, room=sink.wait_room)
    try:
        with sink.scope:
            async with trio.open_nursery() as nursery:
                if sink.direct:  # the flush loop writes; a task only for what is owed
                    sink.write_owed_in(nursery)
                    _heartbeats(livechat).add(sink)
                else:
                    nursery.start_soon(_write, sink, livechat.heartbeat_seconds)
                _drain_watch(livechat).add(sink)
                if principal.has_any("supervisor"):
                    nursery.start_soon(push_overview, feed_for(livechat), principal.org,
                                       sink.offer_json)
                await _read(handler, sink, receive)
                nursery.cancel_scope.cancel()
        await sink.finish()
        if sink.going_away:
            await websocket.close(CLOSE_GOING_AWAY, "server shutting down; reconnect")
        elif sink.cut_reason is not None:
            log.warning("agent socket cut off", extra={"agent": principal.sub,
                                                       "reason": sink.cut_reason})
            await websocket.close(CLOSE_SLOW_CONSUMER, sink.cut_reason)
    finally:
        _drain_watch(livechat).discard(sink)
        livechat.counters.ws_sessions -= 1
        sockets.detach(socket_id)
        sink.release()


async def _read(handler: FrameHandler, sink: SocketSink, receive: Receive) -> None:
    """Handle the client's frames until it goes away (read by this task on lcx's server)."""
    while True:
        await sink.wait_room()  # answers to a client's own frames slow it down, never cut it
        try:
            raw = await receive()
        except ConnectionClosing:
            return
        await handler.handle(raw)


async def _write(sink: SocketSink, heartbeat_seconds: float) -> None:
    """Send what the flush loop could not write at once (a slow reader), or every frame
    when the connection allows no direct write, and queue a ``HEARTBEAT`` every
    ``heartbeat_seconds`` whatever the traffic (in this task: one task less per socket)."""
    beat_at = trio.current_time() + heartbeat_seconds
    while True:
        with trio.move_on_at(beat_at):
            await sink.wait_owed()
        if trio.current_time() >= beat_at:
            beat_at += heartbeat_seconds
            sink.offer_json({"type": "event", "event": "HEARTBEAT",
                             "data": {"at": iso(utc_now())}})
        await sink.send_owed()


class _DrainWatch:
    """Closes every agent socket of an instance with 1012 when it drains: one task for all
    the sockets instead of one per socket."""

    def __init__(self, livechat: Livechat) -> None:
        self.livechat = livechat
        self.sinks: set[SocketSink] = set()
        self._started = False

    def add(self, sink: SocketSink) -> None:
        """Watch ``sink`` (its scope is cancelled, ``going_away`` set, when draining)."""
        if self.livechat.draining.is_set():
            self._go_away(sink)
            return
        self.sinks.add(sink)
        if not self._started:
            trio.lowlevel.spawn_system_task(self._run, name="lcx-ws-drain-watch")
            self._started = True

    def discard(self, sink: SocketSink) -> None:
        """Stop watching a closed socket."""
        self.sinks.discard(sink)

    async def _run(self) -> None:
        await self.livechat.draining.wait()
        for sink in list(self.sinks):
            self._go_away(sink)

    @staticmethod
    def _go_away(sink: SocketSink) -> None:
        sink.going_away = True
        sink.scope.cancel()


HEARTBEAT_ALIGN_SECONDS = 0.1
"""Heartbeats fall due on multiples of this (Trio clock)."""


class _Heartbeats:
    """Queues a ``HEARTBEAT`` on every directly written socket of an instance every
    ``heartbeat_seconds`` after it connected: one timer task for all of them. The beats
    fall due on tenths of a second of the Trio clock (:data:`HEARTBEAT_ALIGN_SECONDS`), so
    the sockets that connected within the same tenth are beaten in one wake-up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._due: list[tuple[float, int, SocketSink]] = []
        self._added = 0
        self._task: trio.lowlevel.Task | None = None
        self._wake = trio.Event()

    def add(self, sink: SocketSink) -> None:
        """Beat on ``sink`` until it is released."""
        self._added += 1
        due = aligned(trio.current_time() + self.seconds, HEARTBEAT_ALIGN_SECONDS)
        heapq.heappush(self._due, (due, self._added, sink))
        if self._task is None:
            self._task = trio.lowlevel.spawn_system_task(self._run,
                                                         name="lcx-ws-heartbeats")
        self._wake.set()

    async def _run(self) -> None:
        due = self._due
        while True:
            if not due:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            self._wake = trio.Event()
            with trio.move_on_at(due[0][0]):
                await self._wake.wait()  # an earlier socket may come first: look again
            now = trio.current_time()
            frame: bytes | None = None
            while due and due[0][0] <= now:
                at, order, sink = heapq.heappop(due)
                if sink.closed:
                    continue
                if frame is None:
                    frame = msgspec.json.encode({"type": "event", "event": "HEARTBEAT",
                                                 "data": {"at": iso(utc_now())}})
                if not sink.offer(frame):
                    sink.cut("too many frames queued")
                heapq.heappush(due, (at + self.seconds, order, sink))


_beats: weakref.WeakKeyDictionary[Livechat, _Heartbeats] = weakref.WeakKeyDictionary()


def _heartbeats(livechat: Livechat) -> _Heartbeats:
    beats = _beats.get(livechat)
    if beats is None:
        beats = _beats[livechat] = _Heartbeats(livechat.heartbeat_seconds)
    return beats


_watches: weakref.WeakKeyDictionary[Livechat, _DrainWatch] = weakref.WeakKeyDictionary()


def _drain_watch(livechat: Livechat) -> _DrainWatch:
    watch = _watches.get(livechat)
    if watch is None:
        watch = _watches[livechat] = _DrainWatch(livechat)
    return watch
