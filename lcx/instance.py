"""The composition root: the one place that picks concrete classes and wires them.

``Lcx`` builds the supervision tree from :class:`~lcx.config.Settings`::

    root (rest_for_one)
    ├── store            the store service (open + migrations)
    ├── bus              membership, leadership, RPC (in-process, or Redis in a cluster)
    ├── bus_probe        measures the bus round trip for /metrics
    ├── edge_client      the HTTP client of provider and channel calls (fresh at each start)
    ├── timers           the deadlines of conversations (which may passivate meanwhile)
    ├── agent_sessions   keyed: one actor per connected agent (all its tabs)
    ├── conversations    keyed: one virtual actor per request/conversation
    ├── queues           keyed: one actor per organization and user group
    ├── provider_links   keyed: one external session (e.g. a Genesys chat) per conversation
    ├── delivery         the outbox: events to bots and flow triggers (owned lanes)
    ├── ownership        hands off actors that moved, wakes those that came here
    ├── edge_inbox       applies stored channel/provider webhooks, once, in order
    ├── pollers          tenant pollers of polling providers (the leader only, fenced)
    ├── retention        daily purge of closed conversations and of idempotency keys past
    │                    store.idempotency_days (the leader only)
    └── http             the HTTP + websocket server (started last, stopped first)

In a cluster every keyed actor lives on the one instance that owns its key (rendezvous
hashing over the live members); the routers of :class:`~actors.livechat.Livechat`
forward messages to it.

A crash of the store restarts everything after it; the HTTP server stops accepting
first on shutdown, so in-flight requests finish before the actors stop and the store
closes.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Awaitable, Callable

import httpx
import trio
from hypercorn.typing import ASGIFramework

from actors.agent_session import AgentSessionActor
from actors.conversation import ConversationActor
from actors.keys import split_key
from actors.livechat import Livechat
from actors.provider_link import ProviderLinkActor
from actors.queue import QueueActor
from adapters.attachments import open_attachment_storage, signing_secret
from adapters.policy import EdgeHttp
from adapters.registry import build_edges
from lcx.api.agent_sockets import SocketDirectory
from lcx.api.cluster import BusView, ClusterView, LeaderView, MemberView
from lcx.api.http_app import AppDeps, create_app
from lcx.api.http_server import HttpBinding
from lcx.api.ops import readiness_checks
from lcx.auth import build_verifier, dev_secret_dir
from lcx.cluster.bus import Bus, Leadership
from lcx.cluster.local_bus import LocalBus
from lcx.cluster.probe import BusProbe
from lcx.config import Settings, effective_instance_id
from lcx.demo import Demo
from lcx.errors import LcxError, RestartIntensityExceeded
from lcx.livechat.edges import SIDE_CHANNEL, SIDE_PROVIDER
from lcx.metrics import Metrics, runtime_collector, store_collector
from lcx.platform_services import EdgeClientService, HttpService, StoreService
from lcx.runtime import ChildSpec, Intensity, Registry, Restart, Strategy, Supervisor
from services.bot_delivery import DeliveryService
from services.domain_metrics import edge_collector, livechat_collector, spam_collector
from services.edge_delivery import channel_sender, provider_sender
from services.edge_inbox import EdgeInboxService
from services.ownership import OwnershipService
from services.retention import RetentionSweep
from services.tenant_pollers import TenantPollers

log = logging.getLogger("lcx")


def register_actors(livechat: Livechat) -> None:
    """Name the class that serves each actor kind (each gets only its own port)."""
    livechat.register("conversation", ConversationActor)
    livechat.register("queue", lambda ports, key: QueueActor(ports, *split_key(key)))
    livechat.register("agent_session",
                      lambda ports, key: AgentSessionActor(ports, *split_key(key)))
    livechat.register("provider_link", ProviderLinkActor)


class Lcx:
    """One lcx instance: its settings, its runtime registry and its supervision tree."""

    def __init__(self, settings: Settings, *,
                 on_listening: Callable[[HttpBinding], None] | None = None,
                 demo: Demo | None = None) -> None:
        self.settings = settings
        self.demo = demo
        self.instance_id = effective_instance_id(settings)
        self.registry = Registry()
        self.metrics = Metrics()
        self.metrics.add_collector(runtime_collector(self.registry.snapshot))
        self.store = StoreService(
            settings.store.url, sqlite_synchronous=settings.store.sqlite_synchronous,
            postgres_inline_connections=settings.store.postgres_inline_connections)
        self.metrics.add_collector(store_collector(self.store.statistics))
        self.verifier = build_verifier(settings.auth, dev_secret_dir())
        self.attachments = open_attachment_storage(
            settings.attachments, settings.server.public_url,
            signing_secret(settings.auth, dev_secret_dir()))
        self.bus = open_bus(settings, self.instance_id)
        self.bus.set_report(lambda: self.registry.snapshot().actors_by_kind)
        self.bus_probe = BusProbe(self.bus, interval=settings.cluster.heartbeat_ms / 1000)
        self.metrics.add_collector(self.bus_probe.collect)
        self.livechat = Livechat(store=lambda: self.store.store,
                                 tenants={t.id: t for t in settings.tenants},
                                 registry=self.registry, wake_delivery=self._wake_delivery,
                                 bus=self.bus, heartbeat_seconds=settings.ws.heartbeat_seconds,
                                 max_queued_frames=settings.ws.max_queued_frames,
                                 max_queued_bytes=settings.ws.max_queued_bytes,
                                 max_queued_bytes_total=settings.ws.max_queued_bytes_total,
                                 settle_seconds=settle_seconds(settings))
        register_actors(self.livechat)
        edges = settings.edges
        self.edge_http = EdgeHttp(httpx.AsyncClient(follow_redirects=False),
                                  breaker_failures=edges.breaker_failures,
                                  breaker_cooldown=edges.breaker_cooldown_ms / 1000,
                                  breaker_max_cooldown=edges.breaker_max_cooldown_ms / 1000)
        """The edges' calls; :class:`EdgeClientService` gives it a fresh client per run."""
        self.livechat.providers, self.livechat.channels = build_edges(
            self.edge_http, self.livechat.tenants)
        self.metrics.add_collector(spam_collector(self.livechat.channels))
        self.edge_inbox = EdgeInboxService(self.livechat)
        self.pollers = TenantPollers(self.livechat, self._leadership)
        self.metrics.add_collector(edge_collector(self.edge_http, self.edge_inbox,
                                                  self.pollers))
        self.sockets = SocketDirectory(self.livechat)
        self.ownership = OwnershipService(
            self.livechat, sockets=self.sockets.resync,
            isolated_grace_seconds=settings.cluster.isolated_grace_ms / 1000)
        self.delivery: DeliveryService | None = None
        self.metrics.add_collector(livechat_collector(self.livechat, lambda: self.delivery))
        self._draining = False
        self.http = HttpService(self.build_app, host=settings.server.host,
                                port=settings.server.port,
                                graceful_timeout=settings.server.shutdown_timeout_seconds / 2,
                                on_bound=on_listening)
        self.root = Supervisor("root", self._children(), strategy=Strategy.REST_FOR_ONE,
                               intensity=Intensity(max_restarts=5, period_seconds=30),
                               registry=self.registry)

    def _children(self) -> list[ChildSpec]:
        return [
            ChildSpec("store", lambda: self.store, kind="service", shutdown_timeout=math.inf),
            ChildSpec("bus", lambda: self.bus, kind="service", shutdown_timeout=5.0),
            ChildSpec("bus_probe", lambda: self.bus_probe, kind="service"),
            ChildSpec("edge_client", lambda: EdgeClientService(self.edge_http),
                      kind="service"),
            *self.livechat.children(),
            ChildSpec("delivery", self._start_delivery, kind="service", shutdown_timeout=10.0),
            ChildSpec("ownership", lambda: self.ownership, kind="service"),
            ChildSpec("edge_inbox", lambda: self.edge_inbox, kind="service"),
            ChildSpec("pollers", lambda: self.pollers, kind="service"),
            ChildSpec("retention", lambda: RetentionSweep(
                lambda: self.livechat.store, self.livechat.org_settings,
                storage=lambda: self.attachments, leadership=self._leadership,
                idempotency_days=self.settings.store.idempotency_days),
                kind="service"),
            ChildSpec("http", lambda: self.http, kind="service", restart=Restart.PERMANENT,
                      shutdown_timeout=self.settings.server.shutdown_timeout_seconds),
        ]

    def build_app(self) -> ASGIFramework:
        """A new ASGI app over this instance's services (the HTTP service serves one)."""
        deps = AppDeps(instance_id=self.instance_id,
                       max_body_bytes=self.settings.server.max_body_bytes,
                       readiness=readiness_checks(self._readiness()),
                       metrics=self.metrics, draining=lambda: self._draining,
                       verifier=self.verifier, livechat=self.livechat, config=self.settings,
                       attachments=self.attachments, sockets=self.sockets,
                       cluster_status=self.cluster_view,
                       webhooks=(self._webhook_receivers(), self.edge_inbox.wake),
                       demo=self.demo)
        return create_app(deps)

    def _webhook_receivers(self) -> dict[str, object]:
        """Every configured channel and provider by name (those that push their events
        receive webhooks; all answer the HEAD health check)."""
        return {**self.livechat.providers, **self.livechat.channels}

    def _readiness(self) -> dict[str, Callable[[], Awaitable[None]]]:
        checks: dict[str, Callable[[], Awaitable[None]]] = {"store": self.store.ping}
        if self.settings.cluster.redis_url:
            checks["redis"] = self._bus_ready
        return checks

    async def _bus_ready(self) -> None:
        await self.bus.ping()

    def _leadership(self) -> Leadership | None:
        return self.bus.leadership() if self.bus.is_leader() else None

    async def cluster_view(self) -> ClusterView:
        """The ``GET /cluster`` document as this instance sees the cluster."""
        try:
            rtt: float | None = round(await self.bus.ping() * 1000, 3)
        except LcxError:
            rtt = None
        leader = self.bus.leadership()
        members = [MemberView(instance_id=m.instance_id, last_heartbeat_at=m.last_heartbeat_at,
                              draining=m.draining, actors=dict(m.actors))
                   for m in sorted(self.bus.members().values(), key=lambda m: m.instance_id)]
        return ClusterView(instance_id=self.instance_id, members=members,
                           leader=None if leader is None else LeaderView(
                               instance_id=leader.instance_id, term=leader.term),
                           bus=BusView(rtt_ms=rtt))

    def _start_delivery(self) -> DeliveryService:
        owns = None if not self.settings.cluster.redis_url else \
            (lambda cid: self.livechat.conversations.owner(cid) == self.instance_id)
        self.delivery = DeliveryService(
            self.store.store, self.livechat.tenants, self.settings.delivery, owns=owns,
            senders={SIDE_PROVIDER: provider_sender(self.livechat),
                     SIDE_CHANNEL: channel_sender(self.livechat)})
        return self.delivery

    def _wake_delivery(self, conversation_id: str) -> None:
        """Hint the delivery service that a conversation has new events."""
        if self.delivery is not None:
            self.delivery.wake(conversation_id)

    @property
    def draining(self) -> bool:
        """Whether the instance is shutting down (``/readyz`` then answers 503)."""
        return self._draining

    def request_stop(self) -> None:
        """Begin a graceful shutdown: stop accepting, finish in-flight work, close the store."""
        self._draining = True
        self.bus.set_draining(True)
        self.livechat.draining.set()
        self.root.request_stop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run the tree until stopped.

        Raises:
            RestartIntensityExceeded: the tree could not be kept up.
        """
        await self.root.run(task_status=task_status)


def settle_seconds(settings: Settings) -> float:
    """How long a call waits for its actor's new owner after the owner died or left: two
    leases (the dead member is gone from every view by then) and a second; no wait on a
    single instance, where an owner never moves."""
    if not settings.cluster.redis_url:
        return 0.0
    return 2 * settings.cluster.lease_ms / 1000 + 1.0


def open_bus(settings: Settings, instance_id: str) -> Bus:
    """The in-process bus, or the Redis bus when ``cluster.redis_url`` is set."""
    if not settings.cluster.redis_url:
        return LocalBus(instance_id)
    from lcx.cluster.redis_bus import RedisBus

    return RedisBus(instance_id, settings.cluster.redis_url,
                    heartbeat_ms=settings.cluster.heartbeat_ms,
                    lease_ms=settings.cluster.lease_ms, url=settings.server.public_url)


async def serve(settings: Settings, *, signals: bool = True,
                on_listening: Callable[[HttpBinding], None] | None = None,
                demo: Demo | None = None) -> int:
    """Run lcx until SIGTERM or SIGINT, then shut down within the configured timeout.

    Returns the process exit code: 0 after a clean shutdown, 1 when the supervision tree
    gave up. ``demo``: the demo tenant, when lcx runs without a configuration file.
    """
    lcx = Lcx(settings, on_listening=on_listening, demo=demo)
    try:
        async with trio.open_nursery() as nursery:
            if signals:
                nursery.start_soon(_stop_on_signal, lcx,
                                   settings.server.shutdown_timeout_seconds, nursery.cancel_scope)
            await lcx.run()
            nursery.cancel_scope.cancel()
    except RestartIntensityExceeded:
        log.exception("lcx stopped: the supervision tree gave up")
        return 1
    log.info("lcx stopped")
    return 0


async def _stop_on_signal(lcx: Lcx, timeout: float, scope: trio.CancelScope) -> None:
    """First SIGTERM/SIGINT: graceful stop, bounded by ``timeout``. A second: stop now."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        async for signum in received:
            if lcx.draining:
                log.warning("second signal: stopping now")
                scope.cancel()
                return
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            lcx.request_stop()
            scope.deadline = trio.current_time() + timeout
