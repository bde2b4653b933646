"""What operators scrape from a whole instance: counters exist from the start (at 0),
leadership and the bus round trip are exported, and /healthz reports the version."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support.livechat_app import livechat_app

from lcx.version import lcx_version


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(name, sorted labels) -> value`` of every sample in a Prometheus text page."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_restart_counters_exist_at_zero_for_every_running_kind(tmp_path: Path) -> None:
    """lcx_actor_restarts_total has a 0 sample per kind before anything restarted, so
    rate() and alerts work from the first scrape."""
    async with livechat_app(tmp_path) as app:
        page = samples((await app.client.get("/metrics")).text)
    live = {dict(labels)["kind"] for (name, labels) in page if name == "lcx_actors_live"}
    assert {"service", "supervisor"} <= live
    for kind in live:
        assert page[("lcx_actor_restarts_total", (("kind", kind),))] == 0.0
    for counter in ("lcx_requests_created_total", "lcx_messages_stored_total",
                    "lcx_conversations_ended_total", "lcx_edge_auth_failures_total"):
        assert page[(counter, ())] == 0.0


async def test_leader_status_and_bus_latency_are_exported(tmp_path: Path) -> None:
    """A single instance leads (term known) and measures its bus round trip."""
    async with livechat_app(tmp_path) as app:
        page = samples((await app.client.get("/metrics")).text)
    assert page[("lcx_leader", ())] == 1.0
    assert page[("lcx_cluster_members", ())] == 1.0
    rtt = page[("lcx_bus_rtt_seconds", ())]
    assert not math.isnan(rtt)
    assert rtt >= 0.0
    assert page[("lcx_bus_ping_failures_total", ())] == 0.0
    assert ("lcx_leader_term", ()) in page


async def test_healthz_reports_the_version(tmp_path: Path) -> None:
    """/healthz says which lcx answers, the same version as the package metadata."""
    async with livechat_app(tmp_path) as app:
        health = (await app.client.get("/healthz")).json()
    assert health["version"] == lcx_version()
    assert health["version"] != "0.0.0"


async def test_store_transactions_are_counted(tmp_path: Path) -> None:
    """Every committed write counts in lcx_store_transactions_total{outcome="committed"};
    a request created is at least one more."""
    async with livechat_app(tmp_path) as app:
        before = samples((await app.client.get("/metrics")).text)
        committed = before[("lcx_store_transactions_total", (("outcome", "committed"),))]
        assert before[("lcx_store_transactions_total", (("outcome", "failed"),))] == 0.0
        response = await app.client.post("/requests", headers=app.tokens.bot(),
                                         json={"tenantId": "t1", "subHandle": "metrics-u1"})
        assert response.status_code == 201, response.text
        after = samples((await app.client.get("/metrics")).text)
    assert after[("lcx_store_transactions_total", (("outcome", "committed"),))] > committed
    assert after[("lcx_store_transactions_in_flight", ())] >= 0.0
    # every commit carries at least one transaction; the request made at least one more
    batches = after[("lcx_store_commit_batches_total", ())]
    assert before[("lcx_store_commit_batches_total", ())] < batches
    assert batches <= after[("lcx_store_transactions_total", (("outcome", "committed"),))]
    # the request's writes were committed on the event loop's thread, none fell back
    inline = ("lcx_store_inline_transactions_total", (("outcome", "committed"),))
    assert before[inline] < after[inline]
    assert after[("lcx_store_inline_transactions_total", (("outcome", "fell_back"),))] == 0
