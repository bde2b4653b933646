"""Relay benchmark: message pairs per second through one lcx, open loop, timed from stamps.

One *message pair* is a user message POSTed by the bot (``POST /messages``) until its frame
reaches the agent's socket, then the agent's answer (a ``message`` frame) until its
``MESSAGE`` event reaches the bot. The bench starts ``lcx serve`` on a scratch SQLite file
(or targets ``--base-url``), the stub bot (``bench_bot.py``, its own process) and A agents
on real websockets; opens C conversations (request i accepted by agent i % A); then, for
each rate, sends ``rate`` user messages a second for ``--seconds``, open loop: message k
is due at ``t0 + k / rate`` whether or not earlier ones were answered, and its stamp is its
due time, so a server that falls behind shows it in the latencies. Each agent answers every
user message at once; the answer's text carries the agent's own stamp.

Per rate it prints and stores: p50/p90/p99/max of user->agent and agent->bot latencies,
delivered pairs per second, missing / duplicated / out-of-order messages on each side,
bad signatures, and the server's CPU per pair (user+system from ``/proc/<pid>/stat``
over the step, divided by pairs delivered).

With ``--cluster N`` it starts N instances on a private Redis and a scratch PostgreSQL
schema instead: agents connect to the instances in turn, the bot POSTs each message to
the next instance (as a load balancer would), and the CPU per pair is summed over all
instances.

Run (from the repository, after ``scripts/test`` made ``.venv``)::

    .venv/bin/python scripts/bench_relay.py --rates 25,50,100,200 --json out.json
    .venv/bin/python scripts/bench_relay.py --find-max
    .venv/bin/python scripts/bench_relay.py --cluster 3 --rates 50,100,200
    .venv/bin/python scripts/bench_relay.py --base-url http://127.0.0.1:8080 --pid 1234

With ``--base-url`` the server's tenant ``t1`` (organization o1, group g1) must use the
bench's JWT and webhook secrets (see ``benchkit.lcx_config``) and deliver to the stub bot,
which then listens on ``--bot-port``.

With ``--reference node`` the bench measures the Node.js reference service
(``scripts/reference/node_relay``, see its README.md) instead of lcx: it is started on a
scratch SQLite file with the bench's secrets and measured exactly as ``--base-url`` measures
a running server, CPU per pair from its ``/proc/<pid>/stat``::

    .venv/bin/python scripts/bench_relay.py --reference node --rates 200 --seconds 20
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import trio
from bench_http import Poster
from benchkit import (
    TENANT,
    Agent,
    Frame,
    Server,
    agents_connected,
    bot_client,
    fetch_bot_results,
    open_conversations,
    put_settings,
    running_cluster,
    running_server,
    summary_ms,
    write_json,
)
from reference_server import REFERENCES, running_reference

from adapters.http1 import Http1Pool
from lcx.org_settings import CACHE_SECONDS

P99_LIMIT_MS = 20.0


class Relay:
    """The state of one bench run: conversations, what each side has seen."""

    def __init__(self, server: Server, conversations: list[tuple[str, str]]) -> None:
        self.server = server
        self.subs = [sub for sub, _ in conversations]
        self.index_of = {cid: index for index, (_, cid) in enumerate(conversations)}
        self.next_n = [0] * len(conversations)
        # a conversation's messages are POSTed one after another (the order is only
        # defined for messages sent in order); conversations are independent
        self.turns = [trio.Lock() for _ in conversations]
        self.replies: list[tuple[Agent, str, str]] = []
        self.replied = trio.Event()
        self.reset()

    def reset(self) -> None:
        """Start a new step."""
        self.sent = 0
        self.acked: list[list[int]] = [[] for _ in self.subs]
        """The user messages answered 202 (stored), per conversation."""
        self.post_errors: list[str] = []
        self.agent_latency_ms: list[float] = []
        self.agent_seen: defaultdict[int, list[int]] = defaultdict(list)
        self.agent_errors: list[Frame] = []
        self.expected = 0
        self.answered = 0
        self.answered_all = trio.Event()

    def on_frame(self, agent: Agent, frame: Frame) -> None:
        """An agent's socket got a frame: time a stamped user message and queue the answer."""
        if frame.get("event") == "ERROR":
            self.agent_errors.append(frame)
            return
        if frame.get("type") != "message":
            return
        data = frame["data"]
        text = data.get("text") or ""
        if data["author"]["type"] != "subscriber" or not text.startswith("U "):
            return
        now = time.monotonic_ns()
        _, conversation, n, stamp = text.split(" ")
        self.agent_latency_ms.append((now - int(stamp)) / 1e6)
        self.agent_seen[int(conversation)].append(int(n))
        self.replies.append((agent, data["conversationId"], f"R {conversation} {n}"))
        self.replied.set()
        self.answered += 1
        if self.answered >= self.expected > 0:
            self.answered_all.set()

    async def answer(self) -> None:
        """Send the agents' answers as their user messages arrive (one task for all)."""
        while True:
            await self.replied.wait()
            self.replied = trio.Event()
            batch, self.replies = self.replies, []
            for agent, conversation_id, text in batch:
                # stamped now, when the answer really leaves
                await agent.send({"type": "message", "data": {
                    "conversationId": conversation_id, "text": f"{text} {time.monotonic_ns()}"}})

    async def post(self, poster: Poster, index: int, n: int, due_ns: int) -> None:
        """POST user message ``n`` of conversation ``index``, stamped with its due time."""
        try:
            async with self.turns[index]:
                status, body = await poster.post({
                    "tenantId": TENANT, "subHandle": self.subs[index],
                    "id": f"m-{index}-{n}", "type": "text", "text": f"U {index} {n} {due_ns}"})
            if status == 202:
                self.acked[index].append(n)
            else:
                self.post_errors.append(f"{status} {body[:200]!r}")
        except Exception as exc:  # any failure of a POST is counted, the load goes on
            self.post_errors.append(f"{type(exc).__name__}: {exc}")

    async def step(self, clients: list[Poster], rate: float, seconds: float,
                   drain_seconds: float) -> dict[str, Any]:
        """One open-loop step at ``rate`` pairs per second, each message POSTed through
        the next of ``clients`` (one per instance); its figures."""
        self.reset()
        await fetch_bot_results(self.server.bot_url)  # forget the previous step's leftovers
        total = max(1, round(rate * seconds))
        self.expected = total
        measured = bool(self.server.pids)
        cpu_before = self.server.cpu_seconds() if measured else 0.0
        commits_before = await self.commits()
        driver_before = time.process_time()
        started = time.monotonic_ns()
        async with trio.open_nursery() as nursery:
            for k in range(total):
                due = started + round(k * 1e9 / rate)
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await trio.sleep(delay)
                index = k % len(self.subs)
                n = self.next_n[index]
                self.next_n[index] += 1
                nursery.start_soon(self.post, clients[k % len(clients)], index, n, due)
            self.sent = total
        sending_s = (time.monotonic_ns() - started) / 1e9
        with trio.move_on_after(drain_seconds):
            await self.answered_all.wait()
        # the last answers reach the bot a moment after the agents sent them
        deadline = trio.current_time() + drain_seconds
        bot: dict[str, Any] = {"records": [], "events": 0, "badSignatures": 0}
        records: list[list[Any]] = []
        while True:
            got = await fetch_bot_results(self.server.bot_url)
            records += got["records"]
            bot["events"] += got["events"]
            bot["badSignatures"] += got["badSignatures"]
            if len(records) >= self.answered or trio.current_time() > deadline:
                break
            await trio.sleep(0.05)
        elapsed_s = (time.monotonic_ns() - started) / 1e9
        cpu_used = (self.server.cpu_seconds() - cpu_before) if measured else None
        figures = self.figures(rate, seconds, sending_s, elapsed_s, self.acked, records, bot,
                               cpu_used)
        # the bench's own bot client and agents share the machine with the server
        figures["driverCpuSeconds"] = round(time.process_time() - driver_before, 3)
        commits_after = await self.commits()
        delivered = figures["deliveredPairs"]
        figures["commitsPerPair"] = (
            None if commits_before is None or commits_after is None or not delivered
            else round((commits_after[0] - commits_before[0]) / delivered, 3))
        figures["fsyncsPerPair"] = (
            None if commits_before is None or commits_after is None or not delivered
            or commits_after[1] is None or commits_before[1] is None
            else round((commits_after[1] - commits_before[1]) / delivered, 3))
        return figures

    async def commits(self) -> tuple[float, float | None] | None:
        """Store transactions committed so far and the commits made for them (fsyncs),
        summed over the instances (None: a version of lcx that does not export
        ``lcx_store_transactions_total``; None for the commits when it does not export
        ``lcx_store_commit_batches_total``)."""
        total, batches = 0.0, 0.0
        batches_seen = True
        async with httpx.AsyncClient(timeout=10) as http:
            for url in self.server.urls:
                page = (await http.get(url + "/metrics")).text
                found = None
                instance_batches = None
                for line in page.splitlines():
                    if line.startswith('lcx_store_transactions_total{outcome="committed"}'):
                        found = float(line.rsplit(" ", 1)[1])
                    elif line.startswith("lcx_store_commit_batches_total "):
                        instance_batches = float(line.rsplit(" ", 1)[1])
                if found is None:
                    return None
                total += found
                if instance_batches is None:
                    batches_seen = False
                else:
                    batches += instance_batches
        return total, (batches if batches_seen else None)

    def figures(self, rate: float, seconds: float, sending_s: float, elapsed_s: float,
                acked: list[list[int]], records: list[list[Any]], bot: dict[str, Any],
                cpu_used: float | None) -> dict[str, Any]:
        """The figures of one step."""
        agent = _order_counts(acked, self.agent_seen)
        bot_seen: defaultdict[int, list[int]] = defaultdict(list)
        bot_latency_ms = []
        for conversation, n, latency_ns, _event_id in records:
            bot_seen[conversation].append(n)
            bot_latency_ms.append(latency_ns / 1e6)
        bot_side = _order_counts(acked, bot_seen)
        delivered = len(records) - bot_side["duplicated"]
        cpu_per_pair_us = None if cpu_used is None or not delivered else \
            round(cpu_used / delivered * 1e6, 1)
        return {
            "rate": rate, "seconds": seconds, "sent": self.sent,
            "sendingSeconds": round(sending_s, 3),
            "deliveredPairs": delivered,
            "deliveredPerSecond": round(delivered / sending_s, 1),
            "userToAgentMs": summary_ms(self.agent_latency_ms),
            "agentToBotMs": summary_ms(bot_latency_ms),
            "errors": {
                "postErrors": len(self.post_errors), "agentErrors": len(self.agent_errors),
                "missingAtAgent": agent["missing"], "duplicatedAtAgent": agent["duplicated"],
                "outOfOrderAtAgent": agent["outOfOrder"],
                "missingAtBot": bot_side["missing"], "duplicatedAtBot": bot_side["duplicated"],
                "outOfOrderAtBot": bot_side["outOfOrder"],
                "badSignatures": bot["badSignatures"]},
            "firstErrors": self.post_errors[:3] + [str(f) for f in self.agent_errors[:3]],
            "botEvents": bot["events"],
            "serverCpuSeconds": None if cpu_used is None else round(cpu_used, 3),
            "serverCpuPerPairUs": cpu_per_pair_us,
            "elapsedSeconds": round(elapsed_s, 3),
        }


def _order_counts(sent: list[list[int]], seen: dict[int, list[int]]) -> dict[str, int]:
    """Missing (acknowledged, never seen), duplicated and out-of-order messages of one side,
    per conversation."""
    missing = duplicated = out_of_order = 0
    for index, numbers in enumerate(sent):
        got = seen.get(index, [])
        unique = set(got)
        missing += len(set(numbers) - unique)
        duplicated += len(got) - len(unique)
        highest = -1
        for n in got:
            if n < highest:
                out_of_order += 1
            highest = max(highest, n)
    return {"missing": missing, "duplicated": duplicated, "outOfOrder": out_of_order}


def healthy(step: dict[str, Any]) -> bool:
    """Whether a step met the bar: p99 <= 20 ms both ways, nothing lost or out of order,
    and the load really sent at its rate."""
    errors = step["errors"]
    return (step["userToAgentMs"]["p99"] <= P99_LIMIT_MS
            and step["agentToBotMs"]["p99"] <= P99_LIMIT_MS
            and not any(errors.values())
            and step["deliveredPerSecond"] >= 0.95 * step["rate"])


def show(step: dict[str, Any]) -> None:
    """Print one step as a line."""
    u, b, e = step["userToAgentMs"], step["agentToBotMs"], step["errors"]
    problems = {k: v for k, v in e.items() if v}
    cpu = step["serverCpuPerPairUs"]
    print(f"rate {step['rate']:>7.1f}/s  delivered {step['deliveredPerSecond']:>7.1f}/s  "
          f"user->agent p50 {u['p50']:.2f} p90 {u['p90']:.2f} p99 {u['p99']:.2f} "
          f"max {u['max']:.1f} ms  agent->bot p50 {b['p50']:.2f} p90 {b['p90']:.2f} "
          f"p99 {b['p99']:.2f} max {b['max']:.1f} ms  "
          f"cpu/pair {'-' if cpu is None else f'{cpu:.0f}'} us  "
          f"(driver {step.get('driverCpuSeconds', 0) / max(1, step['deliveredPairs']) * 1e6:.0f})  "
          f"commits/pair {step.get('commitsPerPair') or 0:.2f} "
          f"(fsyncs {step.get('fsyncsPerPair') or 0:.2f})  "
          f"{problems or 'no errors'}", flush=True)


@asynccontextmanager
async def the_server(arguments: argparse.Namespace) -> AsyncIterator[Server]:
    """The server (or cluster) the arguments ask for, running."""
    if arguments.cluster:
        async with running_cluster(arguments.cluster, lcx_root=arguments.lcx_root) as server:
            yield server
        return
    if arguments.reference:
        with running_reference(arguments.reference) as reference, \
                running_server(reference.url, reference.pid,
                               bot_port=reference.bot_port) as server:
            yield server
        return
    with running_server(arguments.base_url, arguments.pid, bot_port=arguments.bot_port,
                        lcx_root=arguments.lcx_root) as server:
        yield server


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    """Set up, run every step, return the document."""
    steps: list[dict[str, Any]] = []
    async with the_server(arguments) as server, AsyncExitStack() as clients_stack:
        clients = [await clients_stack.enter_async_context(
            bot_client(url, connections=arguments.connections)) for url in server.urls]
        pool = Http1Pool(max_connections=arguments.connections * len(server.urls))
        clients_stack.push_async_callback(pool.aclose)
        posters = [Poster(url, pool) for url in server.urls]
        async with trio.open_nursery() as nursery:
            relay_box: list[Relay] = []

            def on_frame(agent: Agent, frame: Frame) -> None:
                if relay_box:
                    relay_box[0].on_frame(agent, frame)

            names = [f"agent-{i}" for i in range(arguments.agents)]
            http = clients[0]
            async with agents_connected(nursery, server.urls, names, on_frame) as connected:
                if connected.failures:
                    raise RuntimeError(f"agents failed to connect: {connected.failures[:3]}")
                agents = connected.agents
                await put_settings(http, maxConcurrentChats=1000)
                if len(server.urls) > 1:  # the other instances trust their cached copy
                    await trio.sleep(CACHE_SECONDS + 1.0)
                conversations = await open_conversations(
                    http, agents, arguments.conversations, f"relay-{time.time_ns()}")
                relay = Relay(server, conversations)
                relay_box.append(relay)
                nursery.start_soon(relay.answer)
                await relay.step(posters, min(20.0, arguments.rates[0]), 2.0, 5.0)  # warm-up
                if arguments.find_max:
                    steps = await find_max(relay, posters, arguments)
                else:
                    for rate in arguments.rates:
                        step = await relay.step(posters, rate, arguments.seconds,
                                                arguments.drain)
                        show(step)
                        steps.append(step)
                nursery.cancel_scope.cancel()
    best = max((s["rate"] for s in steps if healthy(s)), default=None)
    print(f"most pairs/s with p99 <= {P99_LIMIT_MS:g} ms both ways and no errors: {best}")
    return {"bench": "relay", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": arguments.label, "instances": len(server.urls),
            "store": "postgresql" if arguments.cluster else "sqlite",
            "server": f"{arguments.reference} reference" if arguments.reference else "lcx",
            "conversations": arguments.conversations,
            "agents": arguments.agents, "steps": steps, "maxHealthyRate": best}


async def find_max(relay: Relay, clients: list[Poster],
                   arguments: argparse.Namespace) -> list[dict[str, Any]]:
    """Double the rate until a step fails the bar, then bisect between the last two."""
    steps: list[dict[str, Any]] = []

    async def attempt(rate: float) -> bool:
        step = await relay.step(clients, rate, arguments.seconds, arguments.drain)
        show(step)
        steps.append(step)
        await trio.sleep(1.0)  # let a saturated server catch up before the next step
        return healthy(step)

    good, rate = 0.0, arguments.rates[0]
    while await attempt(rate):
        good, rate = rate, rate * 2
        if rate > arguments.max_rate:
            return steps
    bad = rate
    for _ in range(arguments.bisect):
        middle = round((good + bad) / 2, 1)
        if await attempt(middle):
            good = middle
        else:
            bad = middle
    return steps


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's arguments (``argv``, default ``sys.argv[1:]``); exits with a
    usage error when they ask for two servers at once."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="measure this server instead of starting one")
    parser.add_argument("--pid", type=int, help="the --base-url server's pid (for CPU)")
    parser.add_argument("--bot-port", type=int, default=9000,
                        help="stub bot port with --base-url")
    parser.add_argument("--conversations", "-C", type=int, default=100)
    parser.add_argument("--agents", "-A", type=int, default=10)
    parser.add_argument("--rates", type=lambda s: [float(r) for r in s.split(",")],
                        default=[25.0, 50.0, 100.0, 200.0],
                        help="comma-separated pairs/s (with --find-max: the first rate)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument("--drain", type=float, default=20.0,
                        help="how long to wait for the last answers of a step")
    parser.add_argument("--find-max", action="store_true",
                        help="search the highest rate that meets p99 <= 20 ms both ways")
    parser.add_argument("--max-rate", type=float, default=4000.0)
    parser.add_argument("--bisect", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64,
                        help="HTTP connections of the bot's client")
    parser.add_argument("--cluster", type=int, default=0, metavar="N",
                        help="start N instances on a private Redis and PostgreSQL instead "
                        "of one on SQLite")
    parser.add_argument("--label", default="", help="stored in the JSON (e.g. baseline)")
    parser.add_argument("--lcx-root", help="run the lcx of this source tree (e.g. an older "
                        "commit from git archive) instead of this checkout's")
    parser.add_argument("--reference", choices=sorted(REFERENCES),
                        help="measure this reference service (another runtime doing the "
                        "same durable work) instead of lcx, started on a scratch file")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--plot", help="draw latency against rate into this PNG "
                        "(needs matplotlib, which lcx does not depend on)")
    arguments = parser.parse_args(argv)
    if arguments.reference:
        others = [flag for flag, given in (("--base-url", arguments.base_url),
                                           ("--pid", arguments.pid),
                                           ("--cluster", arguments.cluster),
                                           ("--lcx-root", arguments.lcx_root)) if given]
        if others:
            parser.error(f"--reference starts its own server: drop {', '.join(others)}")
    return arguments


def main() -> None:
    """Parse the arguments, run, print, write the JSON (and the plot)."""
    arguments = parse_arguments()
    document = trio.run(run, arguments)
    write_json(arguments.json, document)
    if arguments.plot:
        plot(document, arguments.plot)


def plot(document: dict[str, Any], path: str) -> None:
    """Latency (p50/p99 both ways) against rate, if matplotlib is installed."""
    try:
        import matplotlib  # type: ignore[import-not-found]
    except ImportError:
        print("--plot needs matplotlib (pip install matplotlib into .venv); no plot drawn")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found]

    steps = sorted(document["steps"], key=lambda s: s["rate"])
    rates = [s["rate"] for s in steps]
    figure, axes = plt.subplots()
    for side, label in (("userToAgentMs", "user->agent"), ("agentToBotMs", "agent->bot")):
        for quantile in ("p50", "p99"):
            axes.plot(rates, [s[side][quantile] for s in steps], marker="o",
                      label=f"{label} {quantile}")
    axes.axhline(P99_LIMIT_MS, linestyle="--", color="grey")
    axes.set_xlabel("message pairs / s")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.legend()
    figure.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
