"""Livechat metrics for ``/metrics``: requests, messages, deliveries, agent sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.livechat import Livechat
from adapters.policy import EdgeHttp
from adapters.spam import SpamGuard
from services.bot_delivery import DeliveryService
from services.edge_inbox import EdgeInboxService
from services.tenant_pollers import TenantPollers


def livechat_collector(livechat: Livechat, delivery: Callable[[], DeliveryService | None]
                       ) -> Callable[[], Iterable[Metric]]:
    """A metrics source reading the livechat's counters and the current delivery service."""

    def collect() -> Iterable[Metric]:
        counters = livechat.counters
        families: list[Metric] = []
        for name, help_text, value in (
                ("lcx_requests_created", "Livechat requests created.",
                 counters.requests_created),
                ("lcx_requests_missed", "Requests nobody accepted in time.",
                 counters.requests_missed),
                ("lcx_messages_stored", "Messages stored in conversation logs.",
                 counters.messages_stored),
                ("lcx_conversations_ended", "Conversations ended.",
                 counters.conversations_ended),
                ("lcx_ws_slow_consumers_cut", "Agent sockets cut off for falling behind.",
                 counters.slow_consumers_cut),
                ("lcx_ws_writes", "Writes to agent sockets (one or more frames each).",
                 counters.ws_writes),
                ("lcx_ws_frames_sent", "Frames written to agent sockets.",
                 counters.ws_frames_sent)):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], value)
            families.append(family)
        sessions = GaugeMetricFamily("lcx_ws_sessions", "Open agent websockets.")
        sessions.add_metric([], counters.ws_sessions)
        online = GaugeMetricFamily("lcx_agents_online", "Agents online (not away).")
        online.add_metric([], sum(1 for p in livechat.presence_book.current().values()
                                     if p.status == "online"))
        families += [sessions, online]
        service = delivery()
        if service is not None:
            stats = service.statistics()
            outcomes = CounterMetricFamily("lcx_deliveries",
                                           "Event delivery attempts by outcome.",
                                           labels=["outcome"])
            for outcome, value in (("delivered", stats.delivered), ("retried", stats.retried),
                                   ("dead", stats.dead),
                                   ("rejected_auth", stats.rejected_auth)):
                outcomes.add_metric([outcome], value)
            in_flight = GaugeMetricFamily("lcx_deliveries_in_flight",
                                          "Event deliveries waiting for an answer.")
            in_flight.add_metric([], stats.in_flight)
            families += [outcomes, in_flight]
        return families

    return collect


def edge_collector(http: EdgeHttp, inbox: EdgeInboxService, pollers: TenantPollers
                   ) -> Callable[[], Iterable[Metric]]:
    """A metrics source for the edges: credential refusals (an alert), open circuit
    breakers by account, webhook events applied, and tenant polls (and their failures)."""

    def collect() -> Iterable[Metric]:
        refused = CounterMetricFamily(
            "lcx_edge_auth_failures", "Provider/channel calls refused for credentials "
            "(401/403): alert on any increase.")
        refused.add_metric([], http.auth_failures)
        open_breakers = GaugeMetricFamily("lcx_edge_circuit_open",
                                          "Whether an account's circuit breaker is open.",
                                          labels=["account"])
        for account, breaker in sorted(http.breakers().items()):
            open_breakers.add_metric([account], 1.0 if breaker.open else 0.0)
        applied = CounterMetricFamily("lcx_edge_webhook_events_applied",
                                      "Webhook events applied from the edge inbox.")
        applied.add_metric([], inbox.applied)
        polls = CounterMetricFamily("lcx_tenant_polls", "Tenant polls of polling providers "
                                    "by outcome (this instance, while it leads).",
                                    labels=["outcome"])
        polls.add_metric(["ok"], pollers.stats.polls - pollers.stats.failures)
        polls.add_metric(["failed"], pollers.stats.failures)
        return [refused, open_breakers, applied, polls]

    return collect


def spam_collector(channels: Mapping[str, object]) -> Callable[[], Iterable[Metric]]:
    """A metrics source for the spam threshold: inbound messages dropped, by channel
    account (channels with a :class:`~adapters.spam.SpamGuard` as ``spam``)."""

    def collect() -> Iterable[Metric]:
        dropped = CounterMetricFamily("lcx_edge_spam_dropped",
                                      "Inbound channel messages dropped over the spam "
                                      "threshold (per sender), by channel account.",
                                      labels=["account"])
        for channel in channels.values():
            guard = getattr(channel, "spam", None)
            if isinstance(guard, SpamGuard):
                for account, count in sorted(guard.dropped.items()):
                    dropped.add_metric([account], count)
        return [dropped]

    return collect
