"""The agent session actor: one per connected agent (all its tabs), keyed ``org/agent``.

It owns the agent's presence (online / away / offline), its sockets and its chat slots
(:class:`~lcx.livechat.agent_slots.ChatSlots`: ``Reserve`` is the single place where
``maxConcurrentChats`` is enforced, so an agent never exceeds it even when several queues
route to it at once). Frames for the agent are fanned
out to every socket; a socket that cannot keep up is cut off (its sink refuses the frame).
Sockets on other instances are reached through the bus (:class:`RemoteSink`).

Every ``PRESENCE_REFRESH_SECONDS`` a connected session re-announces its presence (to the
cluster and to its queues) and forgets sockets of instances that left: a lost hint is
repaired within one period. Every ``SLOTS_RELOAD_REFRESHES``-th refresh it also reloads its
chat slots from the store (they drift only when a ``Release`` was lost: a post dropped by a
full mailbox or by the bus), so that idle sessions do not read the store every period.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.messages import (
    AgentPresence,
    AgentState,
    Connect,
    Disconnect,
    Msg,
    Push,
    Release,
    Reserve,
    SetStatus,
)
from actors.ports import FrameSink, SessionPorts
from actors.presence import PRESENCE_REFRESH_SECONDS, Presence
from lcx.cluster.bus import Bus
from lcx.livechat.agent_slots import ChatSlots
from lcx.model import AgentRef, iso, utc_now
from lcx.runtime import Actor, ActorContext
from lcx.store.conversations import active_for_agent

log = logging.getLogger("lcx.agent")


SLOTS_RELOAD_REFRESHES = 6
"""Refreshes per reload of the chat slots from the store (every minute)."""

REFRESH_ALIGN_SECONDS = 0.1
"""Refreshes fall due on multiples of this (Trio clock): the sessions whose period ends
within the same tenth of a second refresh in one wake-up of the timer keeper."""

FRAME_TOPIC = "agent.frame"
CUT_TOPIC = "agent.cut"


class RelayedFrame(msgspec.Struct, kw_only=True):
    """A frame for a socket held by another instance."""

    socket_id: str
    frame: bytes = b""
    reason: str = ""


class RemoteSink:
    """A socket on another instance: frames travel there on the bus."""

    def __init__(self, bus: Bus, instance_id: str, socket_id: str) -> None:
        self.bus = bus
        self.instance_id = instance_id
        self.socket_id = socket_id

    def offer(self, frame: bytes) -> bool:
        """Publish the frame to the socket's instance; False when the bus queue is full."""
        payload = msgspec.msgpack.encode(RelayedFrame(socket_id=self.socket_id, frame=frame))
        return self.bus.publish(self.instance_id, FRAME_TOPIC, payload)

    def cut(self, reason: str) -> None:
        """Ask the socket's instance to close it."""
        payload = msgspec.msgpack.encode(RelayedFrame(socket_id=self.socket_id, reason=reason))
        self.bus.publish(self.instance_id, CUT_TOPIC, payload)


class Refresh(Msg, frozen=True, kw_only=True):
    """Periodic self-repair of a connected session."""


class AgentSessionActor(Actor):
    """Presence, sockets and chat slots of one agent; see the module docstring."""

    def __init__(self, ports: SessionPorts, org_id: str, agent_id: str) -> None:
        self.ports = ports
        self.org_id = org_id
        self.agent_id = agent_id
        self.name: str | None = None
        self.groups: tuple[str, ...] = ()
        self.sockets: dict[str, FrameSink] = {}
        self.status = "offline"
        self.connected_since: str | None = None
        self.slots = ChatSlots()
        self.refreshes = 0
        """Refreshes since the chat slots were last read from the store."""

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        rows = await self.ports.store.read(
            lambda tx: active_for_agent(tx, self.org_id, self.agent_id))
        self.slots.active = set(rows)

    async def on_stop(self) -> None:
        if self.status != "offline":
            self.status = "offline"
            self._announce()

    async def _refresh(self) -> None:
        if not self.sockets:
            return
        members = self.ports.bus.members()
        for socket_id, sink in list(self.sockets.items()):
            if isinstance(sink, RemoteSink) and sink.instance_id not in members:
                del self.sockets[socket_id]
        if not self.sockets:
            self._disconnect_all()
            return
        self.refreshes += 1
        if self.refreshes >= SLOTS_RELOAD_REFRESHES:
            self.refreshes = 0
            rows = await self.ports.store.read(
                lambda tx: active_for_agent(tx, self.org_id, self.agent_id))
            self.slots.active = set(rows)
        self._announce()
        self._arm_refresh()

    def _arm_refresh(self) -> None:
        self.ctx.send_after(PRESENCE_REFRESH_SECONDS, Refresh(), key="refresh",
                            align=REFRESH_ALIGN_SECONDS)

    def _disconnect_all(self) -> None:
        self.ctx.idle_seconds = 60.0
        self.connected_since = None
        self._set_status("offline")

    async def receive(self, message: Any) -> Any:
        match message:
            case Push():
                return self._fan_out(message.frame)
            case Connect():
                return self._connect(message)
            case Disconnect():
                return self._disconnect(message.socket_id)
            case Reserve():
                return self._reserve(message)
            case Release():
                return self._release(message.conversation_id)
            case SetStatus():
                return self._set_status(message.status)
            case AgentState():
                return self.status, sorted(self.slots.active)
            case Refresh():
                return await self._refresh()
        raise TypeError(f"agent session got {type(message).__name__}")

    def _ref(self) -> AgentRef:
        return AgentRef(id=self.agent_id, name=self.name)

    def _fan_out(self, frame: bytes) -> None:
        for socket_id, sink in list(self.sockets.items()):
            if not sink.offer(frame):
                self.ports.count_slow_consumer()
                sink.cut("too many frames queued")
                self._disconnect(socket_id)

    def _connect(self, connect: Connect) -> dict[str, Any]:
        sink = self._sink_of(connect)
        first = not self.sockets
        self.sockets[connect.socket_id] = sink
        if first:
            self.ctx.send_after(PRESENCE_REFRESH_SECONDS, Refresh(), key="refresh",
                           align=REFRESH_ALIGN_SECONDS)
        self.name = connect.name or self.name
        self.groups = connect.groups
        self.ctx.idle_seconds = None  # connected sessions never passivate
        if self.status == "offline":
            self.connected_since = iso(utc_now())
            self._set_status("online")
        return {"status": self.status, "active": sorted(self.slots.active)}

    def _sink_of(self, connect: Connect) -> FrameSink:
        """The socket's sink: held here (by reference), or on another instance (the bus)."""
        if connect.sink is not None:
            sink: FrameSink = connect.sink
            return sink
        here = connect.instance_id in (None, self.ports.bus.instance_id)
        local = self.ports.local_sink(connect.socket_id) if here else None
        if local is not None:
            return local
        instance = connect.instance_id or self.ports.bus.instance_id
        return RemoteSink(self.ports.bus, instance, connect.socket_id)

    def _disconnect(self, socket_id: str) -> None:
        if self.sockets.pop(socket_id, None) is None or self.sockets:
            return
        self._disconnect_all()

    def _set_status(self, status: str) -> str:
        if status != "offline" and not self.sockets:
            return self.status
        self.status = status
        self._announce()
        return status

    def _announce(self) -> None:
        self.ports.announce_presence(Presence(org_id=self.org_id, agent_id=self.agent_id,
                                            status=self.status, groups=self.groups,
                                            name=self.name,
                                            connected_since=self.connected_since))
        presence = AgentPresence(agent=self._ref(), status=self.status,  # type: ignore[arg-type]
                                 active=len(self.slots.active))
        for group in self.groups:
            self.ports.tell_queue(self.org_id, group, presence)

    def _reserve(self, reserve: Reserve) -> bool:
        return self.slots.reserve(reserve.conversation_id, status=self.status,
                                  limit=reserve.limit, assigned=reserve.assigned)

    def _release(self, conversation_id: str) -> None:
        if self.slots.release(conversation_id):
            self._announce()
