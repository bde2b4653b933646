"""The agent sockets this instance holds, reachable from agent sessions anywhere.

A socket registers with its agent's session actor wherever that actor lives: with its
sink when the session is local, with this instance's id when it is remote (frames then
arrive on the bus and are handed to the sink here). Because sessions move when
membership changes, :meth:`SocketDirectory.resync` registers every local socket again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from actors.agent_session import CUT_TOPIC, FRAME_TOPIC, RelayedFrame
from actors.keys import agent_key
from actors.livechat import Livechat
from actors.messages import Connect, Disconnect
from actors.ports import FrameSink
from lcx.auth import Principal
from lcx.errors import LcxError

log = logging.getLogger("lcx.ws")


@dataclass
class _Socket:
    sink: FrameSink
    org_id: str
    agent_id: str
    name: str | None
    groups: tuple[str, ...]


class SocketDirectory:
    """Local agent sockets by id; see the module docstring."""

    def __init__(self, livechat: Livechat) -> None:
        self.livechat = livechat
        self._sockets: dict[str, _Socket] = {}
        livechat.local_sink = self.sink_of
        livechat.bus.subscribe(FRAME_TOPIC, self._frame)
        livechat.bus.subscribe(CUT_TOPIC, self._cut)

    def __len__(self) -> int:
        return len(self._sockets)

    async def attach(self, socket_id: str, sink: FrameSink, principal: Principal) -> None:
        """Register a new socket with its agent's session.

        Raises:
            LcxError: the session could not be reached (the socket should close).
        """
        assert principal.org is not None
        socket = _Socket(sink, principal.org, principal.sub, principal.name, principal.groups)
        self._sockets[socket_id] = socket
        await self._register(socket_id, socket)

    def detach(self, socket_id: str) -> None:
        """Forget a closed socket and tell its agent's session."""
        socket = self._sockets.pop(socket_id, None)
        if socket is not None:
            self.livechat.tell_agent(socket.org_id, socket.agent_id,
                                     Disconnect(socket_id=socket_id))

    async def resync(self) -> None:
        """Register every local socket again (its session may have moved)."""
        for socket_id, socket in list(self._sockets.items()):
            try:
                await self._register(socket_id, socket)
            except LcxError as exc:
                log.warning("socket re-registration failed", extra={
                    "agent": socket.agent_id, "error": str(exc)})

    def sink_of(self, socket_id: str) -> FrameSink | None:
        """The sink of a socket held here."""
        socket = self._sockets.get(socket_id)
        return None if socket is None else socket.sink

    async def _register(self, socket_id: str, socket: _Socket) -> None:
        # the session finds the sink by id when it lives here, wherever it is placed by
        # the time the message reaches it (its owner may move while we wait)
        await self.livechat.agents.ask(agent_key(socket.org_id, socket.agent_id), Connect(
            socket_id=socket_id, instance_id=self.livechat.bus.instance_id,
            name=socket.name, groups=socket.groups))

    def _frame(self, sender: str, payload: bytes) -> None:
        relayed = msgspec.msgpack.decode(payload, type=RelayedFrame)
        socket = self._sockets.get(relayed.socket_id)
        if socket is not None and not socket.sink.offer(relayed.frame):
            socket.sink.cut("too many frames queued")

    def _cut(self, sender: str, payload: bytes) -> None:
        relayed = msgspec.msgpack.decode(payload, type=RelayedFrame)
        socket = self._sockets.get(relayed.socket_id)
        if socket is not None:
            socket.sink.cut(relayed.reason or "closed by the server")
