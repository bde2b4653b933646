"""The agent session actor: one per connected agent (all its tabs), keyed ``org/agent``.

It owns the agent's presence (online / away / offline), its sockets and its chat slots:
``Reserve`` is the single place where ``maxConcurrentChats`` is enforced, so an agent never
exceeds it even when several queues route to it at once. Frames for the agent are fanned
out to every socket; a socket that cannot keep up is cut off (its sink refuses the frame).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from actors.hub import Livechat, Presence
from actors.messages import (
    AgentPresence,
    AgentState,
    Connect,
    Disconnect,
    Push,
    Release,
    Reserve,
    SetStatus,
)
from lcx.model import AgentRef
from lcx.runtime import Actor, ActorContext
from lcx.store.conversations import active_for_agent

log = logging.getLogger("lcx.agent")


class FrameSink(Protocol):
    """One websocket's outbound queue, as the session actor sees it."""

    def offer(self, frame: bytes) -> bool:
        """Queue a frame without waiting; False when the socket is too far behind."""

    def cut(self, reason: str) -> None:
        """Close the socket because it cannot keep up."""


class AgentSessionActor(Actor):
    """Presence, sockets and chat slots of one agent; see the module docstring."""

    def __init__(self, hub: Livechat, org_id: str, agent_id: str) -> None:
        self.hub = hub
        self.org_id = org_id
        self.agent_id = agent_id
        self.name: str | None = None
        self.groups: tuple[str, ...] = ()
        self.sockets: dict[str, FrameSink] = {}
        self.status = "offline"
        self.active: set[str] = set()

    async def on_start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        rows = await self.hub.store.read(
            lambda tx: active_for_agent(tx, self.org_id, self.agent_id))
        self.active = set(rows)

    async def on_stop(self) -> None:
        self.hub.presence.pop((self.org_id, self.agent_id), None)

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
                return self.status, sorted(self.active)
        raise TypeError(f"agent session got {type(message).__name__}")

    def _ref(self) -> AgentRef:
        return AgentRef(id=self.agent_id, name=self.name)

    def _fan_out(self, frame: bytes) -> None:
        for socket_id, sink in list(self.sockets.items()):
            if not sink.offer(frame):
                self.hub.counters.slow_consumers_cut += 1
                sink.cut("too many frames queued")
                self._disconnect(socket_id)

    def _connect(self, connect: Connect) -> dict[str, Any]:
        self.sockets[connect.socket_id] = connect.sink
        self.name = connect.name or self.name
        self.groups = connect.groups
        self.ctx.idle_seconds = None  # connected sessions never passivate
        if self.status == "offline":
            self._set_status("online")
        return {"status": self.status, "active": sorted(self.active)}

    def _disconnect(self, socket_id: str) -> None:
        if self.sockets.pop(socket_id, None) is None or self.sockets:
            return
        self.ctx.idle_seconds = 60.0
        self._set_status("offline")

    def _set_status(self, status: str) -> str:
        if status != "offline" and not self.sockets:
            return self.status
        self.status = status
        if status == "offline":
            self.hub.presence.pop((self.org_id, self.agent_id), None)
        else:
            self.hub.presence[(self.org_id, self.agent_id)] = Presence(status, self.groups,
                                                                     self.name)
        self._announce()
        return status

    def _announce(self) -> None:
        presence = AgentPresence(agent=self._ref(), status=self.status,  # type: ignore[arg-type]
                                 active=len(self.active))
        for group in self.groups:
            self.hub.tell_queue(self.org_id, group, presence)

    def _reserve(self, reserve: Reserve) -> bool:
        if reserve.conversation_id in self.active:
            return True
        allowed = self.status == "online" if reserve.assigned else self.status != "offline"
        if not allowed or len(self.active) >= reserve.limit:
            return False
        self.active.add(reserve.conversation_id)
        return True

    def _release(self, conversation_id: str) -> None:
        if conversation_id in self.active:
            self.active.discard(conversation_id)
            self._announce()
