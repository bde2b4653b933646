"""Open conversations at rest: what N waiting requests cost one instance after a restart.

The store is seeded with N pending requests (one queue, o1/g1) before ``lcx serve``
starts, as after a restart or a failover. Figures:

* ``readySeconds``: from the process start until it listens (the first ownership sweep
  runs before that);
* ``settledSeconds``: until the live conversation actors are back to zero (every request
  waits as an armed timer, not as an actor in memory), and the CPU spent until then;
* ``rssPerOpenKiB``: RSS growth per open conversation once settled and 200 more requests
  were taken (the queue holds what waits), against the same instance on an empty store;
* ``firstRequestSeconds``: from the process start until a new request is taken (201;
  503s while the queue loads what waits are retried);
* ``positionMs``: ``POST /requests`` (one more request, behind the N) p50/p99 over 200.

``--lcx-root DIR`` measures another source tree (e.g. ``git archive`` of an older commit)
with this venv, for side-by-side figures.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from benchkit import (
    GROUP,
    ORG,
    TENANT,
    LcxProcess,
    bot_token,
    cpu_seconds,
    lcx_config,
    rss_kib,
    stub_bot,
    summary_ms,
    write_json,
)

from lcx.livechat.conversation import new_request
from lcx.model import Subscriber, utc_now
from lcx.store import Tx, open_store
from lcx.store.conversations import insert_conversation

BATCH = 5000
_LIVE = re.compile(r'lcx_actors_live\{kind="conversation"\} (\d+)')


async def seed(database: Path, count: int) -> None:
    """Store ``count`` pending requests of o1/g1 (with a subscriber and a short context)."""
    async with open_store(f"sqlite:///{database}") as store:
        for start in range(0, count, BATCH):
            batch = [new_request(org_id=ORG, tenant_id=TENANT, sub_handle=f"seed-{n}",
                                 user_group_id=GROUP, provider="helvia", channel="bot",
                                 now=utc_now(), subscriber=Subscriber(name=f"Visitor {n}"))
                     for n in range(start, min(count, start + BATCH))]

            def insert(tx: Tx, batch: list[Any] = batch) -> None:
                for conversation in batch:
                    insert_conversation(tx, conversation)
            await store.transaction(insert)


def live_conversation_actors(url: str) -> int:
    """``lcx_actors_live{kind="conversation"}`` from ``/metrics``."""
    found = _LIVE.search(httpx.get(f"{url}/metrics", timeout=30).text)
    return int(found.group(1)) if found else 0


async def measure(count: int, lcx_root: str | None, settle_limit: float) -> dict[str, Any]:
    """Start one instance on a store seeded with ``count`` open requests; its figures."""
    with tempfile.TemporaryDirectory(prefix="lcx-bench-open-") as tmp, stub_bot() as bot:
        workdir = Path(tmp)
        if count:
            await seed(workdir / "lcx.db", count)
        env = {"PYTHONUNBUFFERED": "1"}
        if lcx_root is not None:
            env["PYTHONPATH"] = lcx_root
        started = time.perf_counter()
        lcx = LcxProcess(workdir, lcx_config(workdir, bot + "/livechat-events"), env=env)
        try:
            lcx.start(timeout=600)
            assert lcx.process is not None
            pid = lcx.process.pid
            ready = time.perf_counter() - started
            peak_live = live = live_conversation_actors(lcx.url)
            while live and time.perf_counter() - started < settle_limit:
                await trio.sleep(0.5)
                live = live_conversation_actors(lcx.url)
                peak_live = max(peak_live, live)
            settled = time.perf_counter() - started
            figures: dict[str, Any] = {
                "open": count, "readySeconds": round(ready, 2),
                "settledSeconds": round(settled, 2), "liveActorsAtEnd": live,
                "peakLiveActorsSeen": peak_live, "cpuSecondsUntilSettled":
                    round(cpu_seconds(pid), 2), "rssKiB": rss_kib(pid)}
            figures["firstRequestSeconds"] = round(await _first_request(lcx.url) - started, 2)
            figures["positionMs"] = await _new_requests(lcx.url, 200)
            figures["rssKiB"] = rss_kib(pid)  # the queue has loaded what waits by now
            return figures
        finally:
            lcx.kill()


async def _first_request(url: str) -> float:
    """When (``perf_counter``) a first new request was taken: after a restart with a long
    queue the queue may answer 503 while it loads what waits."""
    headers = {"Authorization": f"Bearer {bot_token()}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        while True:
            response = await http.post("/requests", json={"tenantId": TENANT,
                                                          "subHandle": "first"})
            if response.status_code in (201, 409):  # 409: an earlier try, answered 503, took it
                return time.perf_counter()
            if response.status_code != 503:
                raise RuntimeError(f"POST /requests: {response.status_code} {response.text}")
            await trio.sleep(0.5)


async def _new_requests(url: str, count: int) -> dict[str, float]:
    """p50/p99 of ``POST /requests`` for ``count`` new subscribers, one at a time, and
    how many were answered 503."""
    timings: list[float] = []
    unavailable = 0
    headers = {"Authorization": f"Bearer {bot_token()}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for n in range(count):
            started = time.perf_counter()
            response = await http.post("/requests", json={"tenantId": TENANT,
                                                          "subHandle": f"new-{n}"})
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code == 503:
                unavailable += 1
            elif response.status_code != 201:
                raise RuntimeError(f"POST /requests: {response.status_code} {response.text}")
    return {**summary_ms(timings), "unavailable": unavailable}


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    """The empty baseline, then each size; RSS per open conversation against the empty."""
    empty = await measure(0, arguments.lcx_root, arguments.settle)
    print(f"empty store: RSS {empty['rssKiB']} KiB, ready in {empty['readySeconds']} s",
          flush=True)
    results = []
    for count in arguments.open:
        figures = await measure(count, arguments.lcx_root, arguments.settle)
        figures["rssPerOpenKiB"] = round((figures["rssKiB"] - empty["rssKiB"]) / count, 2)
        results.append(figures)
        print(f"{count} open: ready {figures['readySeconds']} s, settled "
              f"{figures['settledSeconds']} s (conversation actors live at the end "
              f"{figures['liveActorsAtEnd']}, peak seen {figures['peakLiveActorsSeen']}), "
              f"CPU {figures['cpuSecondsUntilSettled']} s, RSS {figures['rssKiB']} KiB = "
              f"{figures['rssPerOpenKiB']} KiB per open conversation, first new request taken "
              f"at {figures['firstRequestSeconds']} s, POST /requests "
              f"behind them {figures['positionMs']}", flush=True)
    return {"label": arguments.label, "empty": empty, "results": results}


def main() -> None:
    """Parse arguments, run, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=lambda text: [int(n) for n in text.split(",")],
                        default=[10_000], help="comma-separated open-request counts")
    parser.add_argument("--settle", type=float, default=180.0,
                        help="longest wait for the conversation actors to passivate (s)")
    parser.add_argument("--label", default="")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--lcx-root", help="run the lcx of this source tree instead")
    arguments = parser.parse_args()
    if arguments.lcx_root is not None:
        arguments.lcx_root = str(Path(arguments.lcx_root).resolve())
    document = trio.run(run, arguments)
    write_json(arguments.json, document)


if __name__ == "__main__":
    main()
