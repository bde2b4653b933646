"""Prometheus metrics of one lcx instance, in a registry of its own.

:class:`Metrics` owns a private :class:`~prometheus_client.CollectorRegistry` (never the
process-global one), so every app and every test can have its own. Components that keep
their own counts (the actor runtime) export them at scrape time through
:meth:`Metrics.add_collector`; :func:`runtime_collector` is the ready-made one for the
runtime's :class:`RuntimeSnapshot`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from lcx.store.base import StoreStatistics

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsSource", "RuntimeSnapshot", "runtime_collector",
           "store_collector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of :meth:`Metrics.render`'s output (Prometheus text format 0.0.4)."""

MetricsSource = Callable[[], Iterable[Metric]]
"""A function called at each scrape that returns metric families to export."""

_log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RuntimeSnapshot(Protocol):
    """What the actor runtime reports at scrape time, per actor kind."""

    @property
    def actors_by_kind(self) -> Mapping[str, int]:
        """Live actors per kind."""
        ...

    @property
    def mailbox_depth_by_kind(self) -> Mapping[str, int]:
        """Messages waiting in mailboxes, summed per kind."""
        ...

    @property
    def restarts_by_kind(self) -> Mapping[str, int]:
        """Restarts since the process started, per kind (monotonic)."""
        ...


class _SourceCollector:
    """Adapts a :data:`MetricsSource` to the registry; a failing source exports nothing."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self._source())
        except Exception:
            _log.exception("metrics source failed", extra={"source": repr(self._source)})
            return ()


class Metrics:
    """The metrics of one lcx instance; not shared between instances or tests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            "lcx_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self.http_latency = Histogram(
            "lcx_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request; ``route`` is the template, never the raw path.

        The labelled children are looked up once per (method, route, status): prometheus'
        ``labels()`` validates and locks on every call, a cost the hot routes pay per
        request otherwise. Routes are templates, so the cache stays small.
        """
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def add_collector(self, source: MetricsSource) -> None:
        """Export what ``source()`` returns at every scrape.

        ``source`` runs on the scraping task and must not block; if it raises, the error is
        logged and its families are left out of that scrape (the rest still render).
        """
        self.registry.register(_SourceCollector(source))

    def render(self) -> bytes:
        """Return every metric in Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def runtime_collector(snapshot: Callable[[], RuntimeSnapshot]) -> MetricsSource:
    """Return a source exporting the runtime's ``snapshot()`` as per-kind gauges/counters.

    Exports ``lcx_actors_live{kind}``, ``lcx_mailbox_depth{kind}`` and
    ``lcx_actor_restarts_total{kind}``; ``snapshot`` is called once per scrape.
    """

    def collect() -> Iterable[Metric]:
        current = snapshot()
        live = GaugeMetricFamily("lcx_actors_live", "Live actors by kind.", labels=["kind"])
        depth = GaugeMetricFamily(
            "lcx_mailbox_depth", "Messages waiting in mailboxes by actor kind.", labels=["kind"])
        restarts = CounterMetricFamily(
            "lcx_actor_restarts", "Actor restarts by kind.", labels=["kind"])
        # every kind that runs has a restart count, 0 until its first restart
        restarted = dict.fromkeys(current.actors_by_kind, 0) | dict(current.restarts_by_kind)
        for family, values in ((live, current.actors_by_kind),
                               (depth, current.mailbox_depth_by_kind),
                               (restarts, restarted)):
            for kind, value in sorted(values.items()):
                family.add_metric([kind], value)
        return (live, depth, restarts)

    return collect


def store_collector(statistics: Callable[[], StoreStatistics | None]) -> MetricsSource:
    """Return a source exporting the open store's transaction counters (nothing while no
    store is open): ``lcx_store_transactions_total{outcome}`` (``committed``, ``failed``),
    ``lcx_store_transactions_in_flight``, ``lcx_store_commit_batches_total`` and
    ``lcx_store_inline_transactions_total{outcome}`` (``committed``, ``fell_back``). The
    counts start again when the store is opened again (a counter reset, as Prometheus
    expects after a restart)."""

    def collect() -> Iterable[Metric]:
        current = statistics()
        if current is None:
            return ()
        total = CounterMetricFamily("lcx_store_transactions",
                                    "Store write transactions by outcome.", labels=["outcome"])
        total.add_metric(["committed"], current.transactions_committed)
        total.add_metric(["failed"], current.transactions_failed)
        in_flight = GaugeMetricFamily(
            "lcx_store_transactions_in_flight",
            "Store write transactions started and not finished (waiting for the writer "
            "included).")
        in_flight.add_metric([], current.transactions_in_flight)
        batches = CounterMetricFamily(
            "lcx_store_commit_batches",
            "Commits the store made for its write transactions (one fsync each; several "
            "transactions committed together count once).")
        batches.add_metric([], current.commit_batches)
        inline = CounterMetricFamily(
            "lcx_store_inline_transactions",
            "Store transactions attempted on the event loop's thread, by outcome: "
            "committed there, or fell back to a worker thread.", labels=["outcome"])
        inline.add_metric(["committed"], current.inline_commits)
        inline.add_metric(["fell_back"], current.inline_fallbacks)
        return (total, in_flight, batches, inline)

    return collect
