"""The composition root: the one place that picks concrete classes and wires them.

``Lcx`` builds the supervision tree from :class:`~lcx.config.Settings`::

    root (rest_for_one)
    ├── store            the store service (open + migrations)
    ├── agent_sessions   keyed: one actor per connected agent (all its tabs)
    ├── conversations    keyed: one virtual actor per request/conversation
    ├── queues           keyed: one actor per organization and user group
    ├── delivery         the outbox: events to bots and flow triggers
    ├── recovery         wakes open conversations and busy queues after a restart
    ├── retention        daily purge of closed conversations past retentionDays
    └── http             the HTTP + websocket server (started last, stopped first)

A crash of the store restarts everything after it; the HTTP server stops accepting
first on shutdown, so in-flight requests finish before the actors stop and the store
closes.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable
from pathlib import Path

import trio
from hypercorn.typing import ASGIFramework

from actors.delivery import DeliveryService
from actors.hub import Livechat
from actors.metrics import livechat_collector
from actors.recovery import Recovery
from actors.retention import RetentionSweep
from adapters.attachments import open_attachment_storage, signing_secret
from lcx.api.app import AppDeps, create_app
from lcx.api.http_server import HttpBinding
from lcx.api.ops import readiness_checks
from lcx.auth import build_verifier
from lcx.config import Settings, effective_instance_id
from lcx.errors import RestartIntensityExceeded
from lcx.metrics import Metrics, runtime_collector
from lcx.runtime import ChildSpec, Intensity, Registry, Restart, Strategy, Supervisor
from lcx.services import HttpService, StoreService

log = logging.getLogger("lcx")


class Lcx:
    """One lcx instance: its settings, its runtime registry and its supervision tree."""

    def __init__(self, settings: Settings, *,
                 on_listening: Callable[[HttpBinding], None] | None = None) -> None:
        self.settings = settings
        self.instance_id = effective_instance_id(settings)
        self.registry = Registry()
        self.metrics = Metrics()
        self.metrics.add_collector(runtime_collector(self.registry.snapshot))
        self.store = StoreService(settings.store.url)
        self.verifier = build_verifier(settings.auth, Path.cwd())
        self.attachments = open_attachment_storage(
            settings.attachments, settings.server.public_url,
            signing_secret(settings.auth, Path.cwd()))
        self.livechat = Livechat(store=lambda: self.store.store,
                                 tenants={t.id: t for t in settings.tenants},
                                 registry=self.registry, wake_delivery=self._wake_delivery,
                                 heartbeat_seconds=settings.ws.heartbeat_seconds,
                                 max_queued_frames=settings.ws.max_queued_frames)
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
            *self.livechat.children(),
            ChildSpec("delivery", self._start_delivery, kind="service", shutdown_timeout=10.0),
            ChildSpec("recovery", lambda: Recovery(self.livechat), kind="service"),
            ChildSpec("retention", lambda: RetentionSweep(
                lambda: self.livechat.store, self.livechat.org_settings,
                storage=lambda: self.attachments), kind="service"),
            ChildSpec("http", lambda: self.http, kind="service", restart=Restart.PERMANENT,
                      shutdown_timeout=self.settings.server.shutdown_timeout_seconds),
        ]

    def build_app(self) -> ASGIFramework:
        """A new ASGI app over this instance's services (the HTTP service serves one)."""
        deps = AppDeps(instance_id=self.instance_id,
                       max_body_bytes=self.settings.server.max_body_bytes,
                       readiness=readiness_checks({"store": self.store.ping}),
                       metrics=self.metrics, draining=lambda: self._draining,
                       verifier=self.verifier, livechat=self.livechat, config=self.settings,
                       attachments=self.attachments)
        return create_app(deps)

    def _start_delivery(self) -> DeliveryService:
        self.delivery = DeliveryService(self.store.store, self.livechat.tenants,
                                        self.settings.delivery)
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
        self.livechat.draining.set()
        self.root.request_stop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run the tree until stopped.

        Raises:
            RestartIntensityExceeded: the tree could not be kept up.
        """
        await self.root.run(task_status=task_status)


async def serve(settings: Settings, *, signals: bool = True,
                on_listening: Callable[[HttpBinding], None] | None = None) -> int:
    """Run lcx until SIGTERM or SIGINT, then shut down within the configured timeout.

    Returns the process exit code: 0 after a clean shutdown, 1 when the supervision tree
    gave up.
    """
    lcx = Lcx(settings, on_listening=on_listening)
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
