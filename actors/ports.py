"""What each kind of actor may reach, as small Protocols (its *ports*).

An actor is given exactly the port it needs, so its dependencies are visible in its
constructor and a test can hand it a fake. :class:`actors.livechat.Livechat` implements
them all for one instance, and the composition root (``lcx/instance.py``) wires it.
Notifications are posts: they never wait, and a lost one is repaired by the receiver's own
resync, so no two actors can wait on each other. Asks only go "downwards" (queue ->
agent session, queue -> conversation, conversation -> agent session).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from actors.messages import Accept, Accepted, Msg, Reserve, Timeout
from actors.presence import Presence
from adapters.edges import Provider
from lcx.cluster.bus import Bus
from lcx.config import TenantConfig
from lcx.livechat.decision import Counter
from lcx.livechat.settings import LivechatSettings
from lcx.store import Store


class FrameSink(Protocol):
    """One websocket's outbound queue, as the session actor sees it."""

    def offer(self, frame: bytes) -> bool:
        """Queue a frame without waiting; False when the socket is too far behind."""

    def cut(self, reason: str) -> None:
        """Close the socket because it cannot keep up."""


class Notifier(Protocol):
    """Posts to other actors, wherever they live."""

    def push_to_agent(self, org_id: str, agent_id: str, frame: bytes) -> None:
        """Send an encoded frame to every socket of a connected agent (dropped if the agent
        is connected nowhere)."""

    def push_to_agents(self, org_id: str, agent_ids: Iterable[str], frame: bytes) -> None:
        """Send one encoded frame to every socket of each of ``agent_ids`` (the same bytes
        offered to every sink; no wait for any socket)."""

    def tell_agent(self, org_id: str, agent_id: str, message: Msg) -> None:
        """Post to an agent's session actor (dropped if the agent is connected nowhere)."""

    def tell_queue(self, org_id: str, user_group_id: str, message: Msg) -> None:
        """Post to a queue actor (activating it if needed)."""


class Stored(Protocol):
    """The store and the organization settings read through it."""

    @property
    def store(self) -> Store:
        """The open store."""

    async def settings(self, org_id: str) -> LivechatSettings:
        """An organization's livechat settings (cached briefly)."""


class ConversationPorts(Notifier, Stored, Protocol):
    """What a conversation actor needs."""

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The configured tenant (where its bot events go)."""

    def arm_timeout(self, conversation_id: str, delay: float, timeout: Timeout) -> None:
        """Deliver ``timeout`` to the conversation in ``delay`` seconds (activating it: the
        actor may passivate meanwhile), replacing its earlier one."""

    def cancel_timeout(self, conversation_id: str) -> None:
        """Forget the conversation's pending timeout."""

    def wake_delivery(self, conversation_id: str) -> None:
        """The conversation has new outbox rows: deliver them soon."""

    def count(self, counter: Counter) -> None:
        """Count a domain event for ``/metrics``."""

    def open_link(self, conversation_id: str) -> None:
        """Open (or resume) the conversation's provider session."""

    def presence(self, org_id: str, agent_id: str) -> Presence | None:
        """The agent's presence, if it is connected anywhere."""

    async def reserve_slot(self, org_id: str, agent_id: str, reserve: Reserve) -> bool:
        """Ask the agent's session for a chat slot."""


class QueuePorts(Notifier, Stored, Protocol):
    """What a queue actor needs."""

    def group_presence(self, org_id: str, user_group_id: str) -> list[Presence]:
        """The connected agents of the queue's group."""

    async def reserve_slot(self, org_id: str, agent_id: str, reserve: Reserve) -> bool:
        """Ask the agent's session for a chat slot."""

    async def accept(self, conversation_id: str, accept: Accept) -> Accepted:
        """Ask the conversation to accept its agent."""


class SessionPorts(Protocol):
    """What an agent session actor needs."""

    @property
    def store(self) -> Store:
        """The open store."""

    @property
    def bus(self) -> Bus:
        """The bus (sockets held by other instances are reached through it)."""

    def announce_presence(self, presence: Presence) -> None:
        """Record and broadcast the agent's presence."""

    def tell_queue(self, org_id: str, user_group_id: str, message: Msg) -> None:
        """Post to a queue actor."""

    def count_slow_consumer(self) -> None:
        """Count a socket cut off because it could not keep up."""

    def local_sink(self, socket_id: str) -> FrameSink | None:
        """The sink of a socket this instance holds (None when it holds no such socket)."""


class LinkPorts(Protocol):
    """What a provider link actor needs."""

    @property
    def store(self) -> Store:
        """The open store."""

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The configured providers by name."""

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The configured tenant (the provider's credentials)."""

    async def tell_conversation(self, conversation_id: str, message: Msg,
                                timeout: float = ...) -> Any:
        """Ask the conversation to apply an edge event (or end); its answer."""
