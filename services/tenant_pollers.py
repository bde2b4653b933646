"""Tenant pollers: providers whose agents' messages are fetched per tenant (Zendesk).

One poller per tenant and polling provider, run by the cluster's leader only (so each runs
on exactly one instance). Every ``poll_interval_seconds`` it asks the provider for the
new events of the tenant's open conversations, hands each to its conversation actor (which
applies it once: messages deduplicate on their external id, so an event seen by both a
webhook and a poll counts once), and then stores the moved cursors together with the
leader's fencing term: a paused or partitioned ex-leader can neither move a cursor back
nor double-apply. A new leader resumes from the stored cursors within two leases.
A provider that is down costs one poll per interval; a bug in one tenant's poll makes that
tenant back off (up to a minute) and never stops the other tenants' polls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from actors.livechat import Livechat
from actors.messages import EdgeInbound
from adapters.edges import PollBatch, Session, TenantPoller
from lcx.cluster.bus import Leadership
from lcx.config import TenantConfig
from lcx.errors import FencedOut
from lcx.livechat.edges import SIDE_PROVIDER
from lcx.model import iso, utc_now
from lcx.runtime import Backoff, ItemGuard, Outcome
from lcx.store import Tx
from lcx.store.conversations import open_ids_of_tenant
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
        self.guard = ItemGuard("tenant poller", max_attempts=1_000_000, backoff=Backoff(
            initial_seconds=1.0, maximum_seconds=60.0, jitter=0.2))
        """Turns any failure of one tenant's poll into a backoff for that tenant."""

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
        """Poll one tenant forever; a failing poll (for any reason) costs this tenant a
        backoff, never the other tenants their polls."""
        interval = _interval(tenant)
        bugs = 0
        while True:
            lead = self._leadership()
            pause = interval
            if lead is not None:
                attempt = await self.guard.attempt(
                    f"tenant {tenant.id}", bugs, partial(self._poll_fenced, tenant, poller,
                                                         lead))
                if attempt.outcome is not Outcome.DONE:
                    self.stats.failures += 1
                if attempt.expected:  # the provider or the store: the edge policy's matter
                    bugs = 0
                else:  # a bug: this tenant backs off, the others poll on
                    bugs = min(bugs + 1, self.guard.max_attempts - 1)
                    pause = max(interval, attempt.retry_after)
            await trio.sleep(pause)

    async def _poll_fenced(self, tenant: TenantConfig, poller: TenantPoller,
                           lead: Leadership) -> None:
        try:
            await self.poll_once(tenant, poller, lead)
        except FencedOut:
            log.warning("poll not stored: a newer leader took over",
                        extra={"tenantId": tenant.id})

    async def poll_once(self, tenant: TenantConfig, poller: TenantPoller,
                        lead: Leadership) -> None:
        """One poll: fetch, apply every event, then store the cursors (fenced)."""
        sessions = await self.livechat.store.read(lambda tx: _open_sessions(tx, tenant.id,
                                                                       poller.name))
        if not sessions:
            return
        self.stats.polls += 1
        batch: PollBatch = await poller.poll(tenant, sessions)
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
    for conversation_id in open_ids_of_tenant(tx, tenant_id, provider):
        session = load_session(tx, conversation_id, SIDE_PROVIDER)
        if session is not None:
            sessions[conversation_id] = session
    return sessions
