"""Tenant pollers: providers whose agents' messages are fetched per tenant (Zendesk).

One poller per tenant and polling provider, run by the cluster's leader only (so each runs
on exactly one instance). Every ``poll_interval_seconds`` it asks the provider for the
new events of the tenant's open conversations, hands each to its conversation actor (which
applies it once: messages deduplicate on their external id, so an event seen by both a
webhook and a poll counts once), and then stores the moved cursors together with the
leader's fencing term: a paused or partitioned ex-leader can neither move a cursor back
nor double-apply. A new leader resumes from the stored cursors within two leases.
A provider that is down costs one poll per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from actors.livechat import Livechat
from actors.messages import EdgeInbound
from adapters.edges import EdgeCallFailed, PollBatch, Session, TenantPoller
from lcx.cluster.bus import Leadership
from lcx.config import TenantConfig
from lcx.errors import FencedOut, LcxError
from lcx.livechat.edges import SIDE_PROVIDER
from lcx.model import iso, utc_now
from lcx.store import Tx
from lcx.store.conversations import open_conversations
from lcx.store.edges import load_session, save_session
from lcx.store.fencing import advance

log = logging.getLogger("lcx.pollers")

DEFAULT_INTERVAL = 5.0


@dataclass
class PollerStats:
    """Counters of the pollers of this instance (for metrics)."""

    polls: int = 0
    failures: int = 0
    events: int = 0


class TenantPollers:
    """A supervised service running every tenant poller while this instance leads."""

    def __init__(self, livechat: Livechat, leadership: Callable[[], Leadership | None]) -> None:
        self.livechat = livechat
        self._leadership = leadership
        self._stop = trio.Event()
        self.stats = PollerStats()

    def _targets(self) -> list[tuple[TenantConfig, TenantPoller]]:
        found: list[tuple[TenantConfig, TenantPoller]] = []
        for tenant in self.livechat.tenants.values():
            provider = self.livechat.providers.get(tenant.provider)
            if isinstance(provider, TenantPoller):
                found.append((tenant, provider))
        return found

    def request_stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Poll each tenant on its own schedule until stopped."""
        self._stop = trio.Event()
        task_status.started()
        async with trio.open_nursery() as nursery:
            for tenant, poller in self._targets():
                nursery.start_soon(self._serve, tenant, poller)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _serve(self, tenant: TenantConfig, poller: TenantPoller) -> None:
        interval = _interval(tenant)
        while True:
            lead = self._leadership()
            if lead is not None:
                try:
                    await self.poll_once(tenant, poller, lead)
                except FencedOut:
                    log.warning("poller stopped: a newer leader took over",
                                extra={"tenantId": tenant.id})
                except LcxError as exc:
                    self.stats.failures += 1
                    log.warning("poll failed; next try in one interval",
                                extra={"tenantId": tenant.id, "error": str(exc)})
            await trio.sleep(interval)

    async def poll_once(self, tenant: TenantConfig, poller: TenantPoller,
                        lead: Leadership) -> None:
        """One poll: fetch, apply every event, then store the cursors (fenced)."""
        sessions = await self.livechat.store.read(lambda tx: _open_sessions(tx, tenant.id,
                                                                       poller.name))
        if not sessions:
            return
        self.stats.polls += 1
        try:
            batch: PollBatch = await poller.poll(tenant, sessions)
        except EdgeCallFailed:
            self.stats.failures += 1
            raise
        for conversation_id, event in batch.events:
            await self.livechat.conversations.ask(conversation_id,
                                             EdgeInbound(side="provider", event=event),
                                             timeout=30.0)
            self.stats.events += 1
        now = iso(utc_now())

        def store(tx: Tx) -> None:
            advance(tx, f"poller:{tenant.id}", lead.term, lead.instance_id, now)
            for conversation_id, session in batch.sessions.items():
                external = str(session.get("conversationId") or conversation_id)
                save_session(tx, conversation_id, SIDE_PROVIDER, poller.name, external,
                             session, now)

        await self.livechat.store.transaction(store)


def _interval(tenant: TenantConfig) -> float:
    config = getattr(tenant, tenant.provider, None)
    seconds = getattr(config, "poll_interval_seconds", None)
    return float(seconds) if seconds else DEFAULT_INTERVAL


def _open_sessions(tx: Tx, tenant_id: str, provider: str) -> dict[str, Session]:
    sessions: dict[str, Session] = {}
    for conversation in open_conversations(tx):
        if conversation.tenant_id == tenant_id and conversation.provider == provider:
            session = load_session(tx, conversation.id, SIDE_PROVIDER)
            if session is not None:
                sessions[conversation.id] = session
    return sessions
