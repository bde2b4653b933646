"""The agent sockets this instance holds, reachable from agent sessions anywhere.

A socket registers with its agent's session actor wherever that actor lives: with its
sink when the session is local, with this instance's id when it is remote (frames then
arrive on the bus and are handed to the sink here). Because sessions move when
membership changes, :meth:`SocketDirectory.resync` registers every local socket again.

A frame for many agents (a queue's broadcast) skips the session actors:
:meth:`SocketDirectory.push_to_agents` hands the encoded bytes to the instance's flush
loop (:meth:`~lcx.api.socket_sink.FlushLoop.broadcast`), which offers them to each local
socket of those agents at the start of its next round (several broadcasts to the same
agents joined, framed once), and publishes the frame once to the other instances, which
do the same with theirs (one bus message per instance, not one per agent). The sender
does not wait for the sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import msgspec

from actors.agent_session import CUT_TOPIC, FRAME_TOPIC, RelayedFrame
from actors.keys import agent_key
from actors.livechat import Livechat
from actors.messages import Connect, Disconnect
from actors.ports import FrameSink
from lcx.api.socket_sink import Audience, SocketSink, instance_flush_loop
from lcx.auth import Principal
from lcx.errors import LcxError
from lcx.runtime.ref import DEFAULT_ASK_TIMEOUT

log = logging.getLogger("lcx.ws")

FANOUT_TOPIC = "agent.fanout"
REGISTER_ASK_SECONDS = 30.0
"""How long a new socket waits for its agent's session to take it: when every agent
reconnects at once after a restart, thousands of sessions start together and a 5 s ask
refused (ERROR ``unavailable``, close 1013) a tenth of them, who then had to come back."""
RESYNC_SOCKETS = 500
"""Sockets registered again per periodic resync (every ownership sweep, 10 s): with
10,000 held, each is repaired within 200 s, at 50 asks per second instead of 1,000."""


class FanOut(msgspec.Struct, kw_only=True):
    """One frame for the local sockets of several agents of an organization."""

    org_id: str
    agent_ids: list[str]
    frame: bytes


@dataclass
class _Socket:
    sink: SocketSink
    org_id: str
    agent_id: str
    name: str | None
    groups: tuple[str, ...]


class _Agents:
    """The local sockets of some agents of an organization (a broadcast's audience)."""

    __slots__ = ("agent_ids", "directory", "org_id")

    def __init__(self, directory: SocketDirectory, org_id: str,
                 agent_ids: Sequence[str]) -> None:
        self.directory = directory
        self.org_id = org_id
        self.agent_ids = agent_ids

    def same(self, other: Audience) -> bool:
        """Whether ``other`` is the same agents (one C comparison; the queue passes the
        same tuple while its online agents do not change)."""
        return isinstance(other, _Agents) and other.org_id == self.org_id and (
            other.agent_ids is self.agent_ids or other.agent_ids == self.agent_ids)

    def sinks(self) -> Iterator[SocketSink]:
        """The sockets held here now of each of the agents."""
        by_agent = self.directory._by_agent
        org_id = self.org_id
        for agent_id in self.agent_ids:
            held = by_agent.get((org_id, agent_id))
            if held is not None:
                # putting an entry never waits nor detaches: the dict cannot change
                yield from held.values()

    def refused(self, sink: SocketSink) -> None:
        """Cut a socket too far behind to take the broadcast."""
        self.directory.livechat.count_slow_consumer()
        sink.cut("too many frames queued")


class SocketDirectory:
    """Local agent sockets by id; see the module docstring."""

    def __init__(self, livechat: Livechat) -> None:
        self.livechat = livechat
        self._sockets: dict[str, _Socket] = {}
        self._by_agent: dict[tuple[str, str], dict[str, SocketSink]] = {}
        self._resync_turn: list[str] = []
        """The sockets the next periodic resyncs register again (taken from the end)."""
        livechat.local_sink = self.sink_of
        livechat.local_push = self.push_to_agents
        livechat.bus.subscribe(FRAME_TOPIC, self._frame)
        livechat.bus.subscribe(CUT_TOPIC, self._cut)
        livechat.bus.subscribe(FANOUT_TOPIC, self._fanout)
        self._loop = instance_flush_loop(livechat)

    def __len__(self) -> int:
        return len(self._sockets)

    async def attach(self, socket_id: str, sink: SocketSink, principal: Principal) -> None:
        """Register a new socket with its agent's session.

        Raises:
            LcxError: the session could not be reached (the socket should close).
        """
        assert principal.org is not None
        socket = _Socket(sink, principal.org, principal.sub, principal.name, principal.groups)
        sink.follow(self._loop)  # its own frames wait for the broadcasts before them
        self._sockets[socket_id] = socket
        self._by_agent.setdefault((socket.org_id, socket.agent_id), {})[socket_id] = sink
        try:
            await self._register(socket_id, socket, REGISTER_ASK_SECONDS)
        except BaseException:
            self.detach(socket_id)
            raise

    def detach(self, socket_id: str) -> None:
        """Forget a closed socket and tell its agent's session."""
        socket = self._sockets.pop(socket_id, None)
        if socket is not None:
            key = (socket.org_id, socket.agent_id)
            held = self._by_agent.get(key)
            if held is not None:
                held.pop(socket_id, None)
                if not held:
                    del self._by_agent[key]
            self.livechat.tell_agent(socket.org_id, socket.agent_id,
                                     Disconnect(socket_id=socket_id))

    async def resync(self, full: bool = True) -> None:
        """Register local sockets again: every one (``full``: sessions may have moved,
        membership changed), or the next :data:`RESYNC_SOCKETS` in turn (the periodic
        repair of a registration a session lost, e.g. when it restarted after a crash),
        so that the period's cost does not grow with the number of sockets held."""
        if full:
            ids = list(self._sockets)
            self._resync_turn = []
        else:
            if not self._resync_turn:
                self._resync_turn = list(self._sockets)
            ids = self._resync_turn[-RESYNC_SOCKETS:]
            del self._resync_turn[-RESYNC_SOCKETS:]
        for socket_id in ids:
            socket = self._sockets.get(socket_id)
            if socket is None:
                continue  # closed meanwhile
            try:
                await self._register(socket_id, socket)
            except LcxError as exc:
                log.warning("socket re-registration failed", extra={
                    "agent": socket.agent_id, "error": str(exc)})

    def sink_of(self, socket_id: str) -> FrameSink | None:
        """The sink of a socket held here."""
        socket = self._sockets.get(socket_id)
        return None if socket is None else socket.sink

    def push_to_agents(self, org_id: str, agent_ids: Iterable[str], frame: bytes) -> None:
        """Offer ``frame`` (encoded once) to every socket of each agent, here and, through
        one bus message per instance, on the other instances. Never waits; a socket that
        cannot take it is cut off."""
        agents: Sequence[str] = (agent_ids if isinstance(agent_ids, (list, tuple))
                                 else list(agent_ids))
        self._offer_local(org_id, agents, frame)
        bus = self.livechat.bus
        others = [m for m in bus.members() if m != bus.instance_id]
        if not others:
            return
        payload = msgspec.msgpack.encode(FanOut(org_id=org_id, agent_ids=list(agents),
                                                frame=frame))
        for instance_id in others:
            if not bus.publish(instance_id, FANOUT_TOPIC, payload):
                log.warning("fan-out to an instance dropped (bus queue full)",
                            extra={"instance": instance_id})

    def _offer_local(self, org_id: str, agent_ids: Sequence[str], frame: bytes) -> None:
        self._loop.broadcast(_Agents(self, org_id, agent_ids), frame)

    def _fanout(self, sender: str, payload: bytes) -> None:
        if sender == self.livechat.bus.instance_id:
            return
        fan_out = msgspec.msgpack.decode(payload, type=FanOut)
        self._offer_local(fan_out.org_id, fan_out.agent_ids, fan_out.frame)

    async def _register(self, socket_id: str, socket: _Socket,
                        timeout: float = DEFAULT_ASK_TIMEOUT) -> None:
        # the session finds the sink by id when it lives here, wherever it is placed by
        # the time the message reaches it (its owner may move while we wait)
        await self.livechat.agents.ask(agent_key(socket.org_id, socket.agent_id), Connect(
            socket_id=socket_id, instance_id=self.livechat.bus.instance_id,
            name=socket.name, groups=socket.groups), timeout=timeout)

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
