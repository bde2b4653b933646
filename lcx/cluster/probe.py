"""The bus seen from ``/metrics``: who leads, and how long a round trip to the bus takes.

:class:`BusProbe` is a supervised service that pings the bus every interval (a heartbeat)
and keeps the last round-trip time, so a scrape reads figures without waiting on Redis;
:meth:`BusProbe.collect` exports them with the leadership this instance holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lcx.cluster.bus import Bus
from lcx.errors import LcxError

__all__ = ["BusProbe"]

_log = logging.getLogger(__name__)


class BusProbe:
    """Measures the bus round trip every ``interval`` seconds; exports leader and bus
    figures for ``/metrics``."""

    def __init__(self, bus: Bus, *, interval: float) -> None:
        self.bus = bus
        self.interval = interval
        self.rtt_seconds: float | None = None
        """The last measured round trip; ``None`` before the first or after a failure."""
        self.failures = 0
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Stop probing."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Probe at once, report started, then probe every interval until stopped."""
        self._stop = trio.Event()
        await self.probe()
        task_status.started()
        while not self._stop.is_set():
            with trio.move_on_after(self.interval):
                await self._stop.wait()
            if not self._stop.is_set():
                await self.probe()

    async def probe(self) -> None:
        """One round trip, bounded by the interval; a failure is counted, never raised."""
        rtt: float | None = None
        with trio.move_on_after(self.interval):
            try:
                rtt = await self.bus.ping()
            except LcxError as exc:
                _log.debug("bus ping failed: %r", exc)
        if rtt is None:
            self.failures += 1
        self.rtt_seconds = rtt

    def collect(self) -> Iterable[Metric]:
        """``lcx_leader``, ``lcx_leader_term``, ``lcx_cluster_members``,
        ``lcx_bus_rtt_seconds`` and ``lcx_bus_ping_failures_total``."""
        leadership = self.bus.leadership()
        leader = GaugeMetricFamily("lcx_leader", "1 while this instance leads the cluster.")
        leader.add_metric([], 1.0 if self.bus.is_leader() else 0.0)
        term = GaugeMetricFamily("lcx_leader_term",
                                 "Fencing term of the leadership this instance knows of.")
        term.add_metric([], float(leadership.term) if leadership is not None else 0.0)
        members = GaugeMetricFamily("lcx_cluster_members", "Live members this instance sees.")
        members.add_metric([], float(len(self.bus.members())))
        rtt = GaugeMetricFamily("lcx_bus_rtt_seconds",
                                "Last measured round trip to the bus (NaN after a failure).")
        rtt.add_metric([], self.rtt_seconds if self.rtt_seconds is not None else float("nan"))
        failures = CounterMetricFamily("lcx_bus_ping_failures",
                                       "Bus round trips that failed or timed out.")
        failures.add_metric([], self.failures)
        return [leader, term, members, rtt, failures]
