"""Scale benchmark: idle agent sockets, open conversations, and message cost against size.

Each part starts its own ``lcx serve`` on a scratch SQLite file (so that memory figures
are that part's), with the stub bot of ``bench_bot.py``:

``sockets``
    N agents connect, ``--at-once`` at a time: connects per second, how many failed or were
    closed before ``AUTHORIZATION_GRANTED``, RSS per idle socket, the server's CPU per
    second while they idle (after one presence refresh period, over 30 s). Then lcx is stopped and
    started again on the same store and every agent reconnects at once, retrying a failed
    attempt after the console's backoff as the console does: how long until all are
    granted again, every failed attempt (with its errno) and the agents never granted.
    The bench's garbage collector is paused in the timed phases (it collects in between):
    with 10,000 agents in one process its full collections took seconds, in which it
    served no agent; the pauses left and its peak RSS are reported.
``requests``
    K agents online (broadcast routing), then R requests created 20 at a time: requests per
    second, p50/p99 of ``POST /requests``; RSS per open (pending) conversation. The agents
    are light by default (``--light-agents``): raw sockets in a process of their own that
    wait for ``AUTHORIZATION_GRANTED`` and then drain whatever comes without decoding it,
    so that 1,000 agents decoding every broadcast do not starve the server of CPU on a
    small machine; ``--no-light-agents`` uses websocket clients in this process.
``cost``
    Server CPU per message pair (as in ``bench_relay.py``) on two servers side by side: one
    with 10 open conversations, one with N more pending ones (``--open``) and, with
    ``--stored M``, M ended conversations with 4 messages each. Each is first settled (the
    actors that setting up woke passivated, its idle CPU steady, then reported), warmed
    up, then measured in ``--rounds`` alternating rounds at the same rate, the CPU read
    from ``/proc`` over each step's window; it prints both ranges and the ratio (it
    should be ~1). ``--profile DIR`` adds one step per server under py-spy.

Run::

    .venv/bin/python scripts/bench_scale.py --json out.json
    .venv/bin/python scripts/bench_scale.py --parts sockets --sockets 10000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from bench_http import Poster
from bench_relay import Relay, show
from benchkit import (
    GROUP,
    JWT_SECRET,
    ORG,
    TENANT,
    Agent,
    Connected,
    Frame,
    GcPauses,
    Server,
    agent_token,
    agents_connected,
    bot_client,
    collector_paused,
    cpu_seconds,
    open_conversations,
    open_files_limit,
    put_settings,
    rss_kib,
    running_server,
    summary_ms,
    write_json,
)

from actors.presence import PRESENCE_REFRESH_SECONDS
from adapters.http1 import Http1Pool
from lcx.auth import mint_token
from lcx.model import Author, Context, Conversation, Message, Participant, Subscriber
from lcx.store import Tx, open_store
from lcx.store.conversations import append_message, insert_conversation

RECONNECT_LIMIT_SECONDS = 120.0
LCX_ROOT: list[str | None] = [None]
"""``--lcx-root``: the source tree whose lcx runs (None: this checkout)."""
LIGHT_AGENTS = [True]
"""``--light-agents``: the requests part's agents are raw sockets in their own process."""
GRANTED = b"AUTHORIZATION_GRANTED"
REQUEST_TIMEOUT_SECONDS = 86_400
IDLE_WINDOW_SECONDS = 30.0
"""The cost part's idle CPU window: three periods of the 10 s sweeps and resyncs (CPU
time comes in 10 ms ticks, and a 5 s window catches a sweep or not)."""
"""The cost part's request timeout: its pending requests stay pending while it runs."""


def _light_agent(host: str, port: int, name: str, selector: selectors.BaseSelector,
                 lock: threading.Lock) -> str | None:
    """Connect one agent, wait for its grant, hand the socket to ``selector``; an error."""
    try:
        sock = socket.create_connection((host, port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws?token={agent_token(name)} HTTP/1.1\r\nHost: {host}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                      ).encode())
        received = b""
        while GRANTED not in received:
            chunk = sock.recv(65536)
            if not chunk:
                return f"{name}: closed before AUTHORIZATION_GRANTED"
            received += chunk
        sock.setblocking(False)
        with lock:
            selector.register(sock, selectors.EVENT_READ, name)
        return None
    except OSError as exc:
        return f"{name}: {type(exc).__name__}: {exc}"


def light_agents_main(url: str, count: int, at_once: int) -> None:
    """The light agents' process: connect, print one JSON line, drain until stdin closes,
    print the count of sockets the server closed."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    selector = selectors.DefaultSelector()
    lock = threading.Lock()
    with ThreadPoolExecutor(at_once) as pool:
        errors = [e for e in pool.map(
            lambda i: _light_agent(host, port, f"online-{i}", selector, lock), range(count))
            if e is not None]
    print(json.dumps({"granted": count - len(errors), "failures": errors[:20],
                      "failed": len(errors)}), flush=True)
    closed = 0
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(sock)
                sock.close()
                closed += 1
    print(json.dumps({"closedByServer": closed}), flush=True)


@dataclass
class LightConnected(Connected):
    """Light agents: how many were granted (there are no :class:`Agent` objects)."""

    granted: int = 0


def _spawn_light_agents(url: str, count: int, at_once: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--light-agents-of", url, "--online", str(count),
         "--at-once", str(at_once)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@asynccontextmanager
async def light_agents(url: str, count: int,
                       at_once: int = 50) -> AsyncIterator[LightConnected]:
    """``count`` light agents (see the module docstring) online for the block; their
    ``Connected.agents`` is empty (nothing to call), the failures are listed."""
    process = _spawn_light_agents(url, count, at_once)
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        line = await trio.to_thread.run_sync(process.stdout.readline)
        report = json.loads(line)
        yield LightConnected([], list(report["failures"]), granted=report["granted"])
    finally:
        process.stdin.close()
        tail = await trio.to_thread.run_sync(process.stdout.read)
        process.wait()
        if tail.strip():
            print(f"light agents: {tail.strip()}", flush=True)


async def _idle_cpu_ms(pid: int) -> float:
    """The server's CPU per second while its sockets idle: after one refresh period for
    the connects' own work to end, over :data:`IDLE_WINDOW_SECONDS`."""
    await trio.sleep(PRESENCE_REFRESH_SECONDS)
    before = cpu_seconds(pid)
    await trio.sleep(IDLE_WINDOW_SECONDS)
    return round((cpu_seconds(pid) - before) / IDLE_WINDOW_SECONDS * 1000, 1)


def _ignore(agent: Agent, frame: Frame) -> None:
    """Idle agents read their frames and do nothing with them."""


async def sockets_part(count: int, at_once: int, routing: str = "broadcast"
                       ) -> dict[str, Any]:
    """Connect ``count`` idle agents, restart lcx, reconnect them all at once."""
    with running_server(None, None, lcx_root=LCX_ROOT[0]) as server, \
            GcPauses() as bench_gc:
        assert server.pid is not None
        assert server.lcx is not None
        async with bot_client(server.url) as http:
            await put_settings(http, routing=routing)
        names = [f"idle-{i}" for i in range(count)]
        result: dict[str, Any] = {"sockets": count, "atOnce": at_once, "routing": routing,
                                  "benchOpenFilesLimit": open_files_limit(os.getpid()),
                                  "serverOpenFilesLimit": open_files_limit(server.pid)}
        async with trio.open_nursery() as nursery:
            rss_before = rss_kib(server.pid)
            cpu_before = cpu_seconds(server.pid)
            with collector_paused():  # the bench's own pauses are not the server's
                gc_before = bench_gc.seconds
                began = time.perf_counter()
                async with agents_connected(nursery, server.url, names, _ignore,
                                            at_once=at_once) as connected:
                    took = time.perf_counter() - began
                    cpu_per_connect = (cpu_seconds(server.pid) - cpu_before) / max(1, count)
                    result.update(benchGcSecondsConnecting=round(
                        bench_gc.seconds - gc_before, 3))
                    await trio.sleep(1.0)
                    rss_after = rss_kib(server.pid)
                    granted = len(connected.agents)
                    per_socket = (rss_after - rss_before) / max(1, granted)
                    result.update(connectSeconds=round(took, 3),
                                  connectsPerSecond=round(granted / took, 1), granted=granted,
                                  failed=len(connected.failures),
                                  firstFailures=connected.failures[:3],
                                  rssPerSocketKiB=round(per_socket, 1),
                                  serverCpuPerConnectUs=round(cpu_per_connect * 1e6),
                                  rssBeforeKiB=rss_before, rssAfterKiB=rss_after)
                    print(f"{count} agents, {at_once} at a time: {took:.2f} s "
                          f"({granted / took:.0f}/s), {len(connected.failures)} failed, RSS per "
                          f"idle socket {per_socket:.0f} KiB, server CPU per connect "
                          f"{cpu_per_connect * 1e6:.0f} us", flush=True)
                    idle_ms = await _idle_cpu_ms(server.pid)
                    result.update(idleCpuPerSecondMs=idle_ms)
                    print(f"idle CPU with {granted} sockets: {idle_ms} ms per s "
                          "(presence refreshes, resyncs, heartbeats)", flush=True)
                    stopping = time.perf_counter()
                    lcx = server.lcx
                    # every socket is closed (1012) before the actors stop: give 10,000 time
                    await trio.to_thread.run_sync(
                        lambda: lcx.stop(timeout=max(30.0, count / 50)))
                    result.update(stopSeconds=round(time.perf_counter() - stopping, 3))
                    print(f"stopped in {result['stopSeconds']:.2f} s", flush=True)
                    await trio.to_thread.run_sync(server.lcx.start)
                    assert server.lcx.process is not None
                    server.url, server.pid = server.lcx.url, server.lcx.process.pid
            result.update(reconnectSeconds=None, reconnectTimedOut=True)
            with collector_paused(), trio.move_on_after(RECONNECT_LIMIT_SECONDS):
                cpu_before = cpu_seconds(server.pid)
                gc_before = bench_gc.seconds
                began = time.perf_counter()
                async with agents_connected(nursery, server.url, names, _ignore,
                                            at_once=count, retry=True) as connected:
                    took = time.perf_counter() - began
                    cpu_per_connect = (cpu_seconds(server.pid) - cpu_before) / max(1, count)
                    attempts = connected.failed_attempts
                    result.update(reconnectSeconds=round(took, 3), reconnectTimedOut=False,
                                  reconnected=len(connected.agents),
                                  reconnectFailed=len(connected.failures),
                                  firstReconnectFailures=connected.failures[:3],
                                  reconnectFailedAttempts=len(attempts),
                                  reconnectRetriedAgents=len({a.split(":")[0]
                                                              for a in attempts}),
                                  firstFailedAttempts=attempts[:3],
                                  serverCpuPerReconnectUs=round(cpu_per_connect * 1e6),
                                  benchGcSecondsReconnecting=round(
                                      bench_gc.seconds - gc_before, 3))
                    print(f"all {count} reconnecting at once after a restart: {took:.2f} s, "
                          f"{len(attempts)} attempts failed (retried with the console's "
                          f"backoff), {len(connected.failures)} agents not back, server CPU "
                          f"per connect {cpu_per_connect * 1e6:.0f} us", flush=True)
            if result["reconnectTimedOut"]:
                print(f"all {count} reconnecting at once after a restart: not done within "
                      f"{RECONNECT_LIMIT_SECONDS:g} s", flush=True)
            nursery.cancel_scope.cancel()
        result.update(benchMaxRssKiB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return result


async def requests_part(online: int, count: int, rate: float | None = None,
                        routing: str = "broadcast") -> dict[str, Any]:
    """``online`` agents (broadcast routing unless told), then ``count`` requests: 20 at a
    time, or at ``rate`` per second whatever the answers."""
    with running_server(None, None, lcx_root=LCX_ROOT[0]) as server:
        assert server.pid is not None
        async with trio.open_nursery() as nursery, bot_client(server.url) as http, \
                aclosing(Http1Pool(max_connections=64 if rate is None else 256)) as pool:
            await put_settings(http, routing=routing, maxConcurrentChats=1000)
            names = [f"online-{i}" for i in range(online)]
            agents = (light_agents(server.url, online) if LIGHT_AGENTS[0]
                      else agents_connected(nursery, server.url, names, _ignore))
            async with agents as connected:
                await trio.sleep(1.0)
                rss_before = rss_kib(server.pid)
                writes_before, frames_before = await _ws_counters(http)
                cpu_before = cpu_seconds(server.pid)
                latencies, errors, took = await _create_requests(
                    Poster(server.url, pool, "/requests"), count, f"scale-{online}", rate)
                cpu_used = cpu_seconds(server.pid) - cpu_before
                await trio.sleep(0.5)
                writes_after, frames_after = await _ws_counters(http)
                await trio.sleep(1.0)
                rss_after = rss_kib(server.pid)
            nursery.cancel_scope.cancel()
        offered_rate, rate = rate, round(count / took, 1)
        granted = (connected.granted if isinstance(connected, LightConnected)
                   else len(connected.agents))
        result = {"agentsOnline": granted, "lightAgents": LIGHT_AGENTS[0],
                  "agentsFailed": len(connected.failures), "requests": count,
                  "offeredPerSecond": offered_rate,
                  "requestsPerSecond": rate,
                  "postRequestsMs": summary_ms(latencies), "errors": errors,
                  "serverCpuPerRequestUs": round(cpu_used / count * 1e6),
                  "wsFramesPerWrite": round((frames_after - frames_before)
                                            / max(1.0, writes_after - writes_before), 2),
                  "rssPerPendingConversationKiB": round((rss_after - rss_before) / count, 1),
                  "seconds": round(took, 3)}
        offered = "20 at a time" if offered_rate is None else f"offered at {offered_rate:g}/s"
        print(f"{granted} agents online ({len(connected.failures)} failed): "
              f"{count} requests ({offered}) at {rate}/s, POST /requests "
              f"{summary_ms(latencies)}, {errors} errors, server CPU per request "
              f"{result['serverCpuPerRequestUs']} us, {result['wsFramesPerWrite']} frames "
              "per socket write, RSS per pending conversation "
              f"{result['rssPerPendingConversationKiB']} KiB", flush=True)
        return result


async def _ws_counters(http: httpx.AsyncClient) -> tuple[float, float]:
    """``lcx_ws_writes_total`` and ``lcx_ws_frames_sent_total`` from ``/metrics``."""
    token = mint_token(JWT_SECRET, sub="bench-admin", org=None, scopes="admin")
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    values = {"lcx_ws_writes_total": 0.0, "lcx_ws_frames_sent_total": 0.0}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values["lcx_ws_writes_total"], values["lcx_ws_frames_sent_total"]


async def _create_requests(poster: Poster, count: int, prefix: str,
                           rate: float | None = None) -> tuple[list[float], int, float]:
    """Create ``count`` pending requests, 20 at a time (closed loop) or, with ``rate``, the
    i-th at ``i / rate`` seconds after the start whatever the answers (open loop):
    latencies (ms), errors, seconds."""
    latencies: list[float] = []
    errors = 0
    limit = trio.CapacityLimiter(20 if rate is None else count)
    start = trio.current_time()

    async def one(index: int) -> None:
        nonlocal errors
        if rate is not None:
            await trio.sleep_until(start + index / rate)
        async with limit:
            began = time.perf_counter()
            try:
                status, _ = await poster.post({"tenantId": TENANT,
                                               "subHandle": f"{prefix}-{index}"})
            except (OSError, trio.TooSlowError):
                status = 0
            latencies.append((time.perf_counter() - began) * 1000)
            if status != 201:
                errors += 1

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return latencies, errors, time.perf_counter() - began


def _ended(index: int, messages: int) -> tuple[Conversation, list[Message]]:
    """An ended conversation of o1/g1 with ``messages`` messages (user and agent in turn)."""
    at = "2026-11-01T10:00:00.000Z"
    conversation = Conversation(
        id=f"stored-{index}", request_id=f"stored-r-{index}", org_id=ORG, tenant_id=TENANT,
        sub_handle=f"stored-{index}", user_group_id=GROUP, provider="helvia", channel="bot",
        status="ended", subscriber=Subscriber(name=f"Visitor {index}"), context=Context(),
        participants=[Participant(id="stored-agent", joined_at=at, left_at=at)], flags={},
        created_at=at, queued_at=at, last_activity_at=at, last_seq=messages,
        agent_id="stored-agent", accepted_at=at, accepted_by="stored-agent", ended_at=at,
        ended_by="stored-agent", end_reason="agent")
    log = [Message(conversation_id=conversation.id, seq=seq, message_id=f"stored-{index}-{seq}",
                   author=Author(type="subscriber") if seq % 2 else
                   Author(type="agent", id="stored-agent"),
                   type="text", at=at, text=f"stored message {seq} of conversation {index}")
           for seq in range(1, messages + 1)]
    return conversation, log


async def store_ended(database: Path, count: int, messages: int = 4) -> float:
    """Write ``count`` ended conversations with their messages into the running server's
    SQLite file (its own WAL connection beside the server's); the seconds it took."""
    began = time.perf_counter()
    async with open_store(f"sqlite:///{database}") as store:
        for start in range(0, count, 2000):
            rows = [_ended(index, messages) for index in range(start, min(count, start + 2000))]

            def insert(tx: Tx, rows: list[tuple[Conversation, list[Message]]] = rows) -> None:
                for conversation, log in rows:
                    insert_conversation(tx, conversation)
                    for message in log:
                        append_message(tx, message, org_id=ORG, client_id=None)
            await store.transaction(insert)
    return time.perf_counter() - began


@dataclass
class _CostSide:
    """One server of the cost part: its relay over 10 accepted conversations."""

    label: str
    server: Server
    http: httpx.AsyncClient
    relay: Relay
    steps: list[dict[str, Any]]


@asynccontextmanager
async def _cost_side(nursery: trio.Nursery, label: str, extra_open: int,
                     stored: int) -> AsyncIterator[_CostSide]:
    """A fresh ``lcx serve`` with 10 agents, 10 accepted conversations, then ``extra_open``
    pending requests and ``stored`` ended conversations (each with 4 messages)."""
    with running_server(None, None, lcx_root=LCX_ROOT[0]) as server:
        async with bot_client(server.url) as http, aclosing(Http1Pool()) as pool:
            # the pending requests wait for the whole run (by default they would be missed
            # after 120 s, in the middle of the measured rounds)
            await put_settings(http, maxConcurrentChats=1000,
                               requestTimeoutSeconds=REQUEST_TIMEOUT_SECONDS)
            relay_box: list[Relay] = []

            def on_frame(agent: Agent, frame: Frame) -> None:
                if relay_box:
                    relay_box[0].on_frame(agent, frame)

            names = [f"{label}-{i}" for i in range(10)]
            async with agents_connected(nursery, server.url, names, on_frame) as connected:
                relay = Relay(server, await open_conversations(http, connected.agents, 10,
                                                               label))
                relay_box.append(relay)
                nursery.start_soon(relay.answer)
                if extra_open:
                    _, errors, took = await _create_requests(
                        Poster(server.url, pool, "/requests"), extra_open, f"{label}-pending")
                    print(f"{label}: {extra_open} pending requests created in {took:.1f} s, "
                          f"{errors} errors", flush=True)
                    if errors:
                        raise RuntimeError(f"{errors} of the pending requests failed")
                if stored:
                    took = await store_ended(server.workdir / "lcx.db", stored)
                    print(f"{label}: {stored} ended conversations stored in {took:.1f} s",
                          flush=True)
                yield _CostSide(label, server, http, relay, [])


async def _live_conversations(http: httpx.AsyncClient) -> int:
    """``lcx_actors_live{kind="conversation"}`` from ``/metrics``."""
    token = mint_token(JWT_SECRET, sub="bench-admin", org=None, scopes="admin")
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    for line in response.text.splitlines():
        if line.startswith('lcx_actors_live{kind="conversation"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def _settle(side: _CostSide, limit_seconds: float) -> dict[str, Any]:
    """Wait until the conversation actors that setting up woke are passivated again (only
    the relay's 10 stay) and the server's idle CPU stops falling (two 2 s windows within
    20 % of each other, or under 2 % of a core); then its idle CPU over
    :data:`IDLE_WINDOW_SECONDS`, which every measured window also pays (sweeps, resyncs,
    timers)."""
    began = time.perf_counter()
    while True:
        live = await _live_conversations(side.http)
        if live <= 10 + 5 or time.perf_counter() - began >= limit_seconds:
            break
        await trio.sleep(2.0)
    previous = None
    while time.perf_counter() - began < limit_seconds:
        before = side.server.cpu_seconds()
        await trio.sleep(2.0)
        rate = (side.server.cpu_seconds() - before) / 2.0
        if rate < 0.02 or (previous is not None and abs(rate - previous) <= 0.2 * previous):
            break
        previous = rate
    before = side.server.cpu_seconds()
    await trio.sleep(IDLE_WINDOW_SECONDS)
    idle = (side.server.cpu_seconds() - before) / IDLE_WINDOW_SECONDS
    settled = {"settleSeconds": round(time.perf_counter() - began, 1),
               "liveConversationActors": live, "idleCpuPerSecondMs": round(idle * 1000, 1)}
    print(f"{side.label}: settled after {settled['settleSeconds']} s, {live} conversation "
          f"actors live, idle CPU {settled['idleCpuPerSecondMs']} ms per s", flush=True)
    return settled


def _start_py_spy(py_spy: str, pid: int, seconds: float, path: str) -> subprocess.Popen[bytes]:
    """``py-spy record --gil -f raw`` of ``pid`` for ``seconds``, written to ``path``
    (``--nonblocking``: the process is not paused for each sample)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([py_spy, "record", "--gil", "--nonblocking", "-f", "raw", "-r", "250",
                             "-d", str(round(seconds)), "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _profiled_step(side: _CostSide, rate: float, seconds: float, directory: str,
                         py_spy: str) -> str:
    """One more step of ``side`` under ``py-spy record --gil -f raw`` (excluded from the
    figures: py-spy's own reading of the process costs); the profile's path."""
    assert side.server.pid is not None
    path = str(Path(directory) / f"cost-{side.label}.txt")
    spy = _start_py_spy(py_spy, side.server.pid, seconds, path)
    try:
        await side.relay.step([side.http], rate, seconds, 20.0)
    finally:
        await trio.to_thread.run_sync(spy.wait)
    print(f"{side.label}: profile of one step in {path}", flush=True)
    return path


def _cpu_summary(steps: list[dict[str, Any]]) -> dict[str, float]:
    values = sorted(step["serverCpuPerPairUs"] or 0.0 for step in steps)
    return {"min": values[0], "median": values[len(values) // 2], "max": values[-1]}


async def cost_part(extra_open: int, rate: float, seconds: float, stored: int = 0, *,
                    rounds: int = 3, settle_limit: float = 180.0, profile: str | None = None,
                    py_spy: str = "py-spy") -> dict[str, Any]:
    """CPU per pair on two servers side by side: one with the relay's 10 conversations,
    one with ``extra_open`` more pending ones and ``stored`` ended ones. Both are settled
    first, warmed up (a step not counted), then measured in ``rounds`` alternating rounds
    at the same rate (small, large, then large, small, ...: a drift of the machine's load
    falls on both), the CPU read from ``/proc`` over each step's window."""
    async with trio.open_nursery() as nursery:
        async with _cost_side(nursery, "small", 0, 0) as small, \
                _cost_side(nursery, "large", extra_open, stored) as large:
            sides = (small, large)
            settled = {side.label: await _settle(side, settle_limit) for side in sides}
            for side in sides:
                await side.relay.step([side.http], rate, 2.0, 10.0)  # warm-up, not counted
            for round_no in range(rounds):
                for side in (sides if round_no % 2 == 0 else sides[::-1]):
                    step = await side.relay.step([side.http], rate, seconds, 20.0)
                    side.steps.append(step)
                    print(f"round {round_no + 1} {side.label}: ", end="")
                    show(step)
            profiles = {}
            if profile:
                for side in sides:
                    profiles[side.label] = await _profiled_step(side, rate, seconds, profile,
                                                                py_spy)
        nursery.cancel_scope.cancel()
    ratios = [round((b["serverCpuPerPairUs"] or 0.0) / (a["serverCpuPerPairUs"] or 1.0), 3)
              for a, b in zip(small.steps, large.steps, strict=True)]
    cpu = {side.label: _cpu_summary(side.steps) for side in sides}
    ratio = round(cpu["large"]["median"] / cpu["small"]["median"], 3)
    print(f"CPU per pair at {rate:g}/s, {rounds} rounds: 10 open {cpu['small']['min']:.0f}-"
          f"{cpu['small']['max']:.0f} us (median {cpu['small']['median']:.0f}); "
          f"{10 + extra_open} open and {stored} stored {cpu['large']['min']:.0f}-"
          f"{cpu['large']['max']:.0f} us (median {cpu['large']['median']:.0f}): "
          f"x{ratio} (medians), x{min(ratios)}-x{max(ratios)} (rounds)", flush=True)
    return {"rate": rate, "seconds": seconds, "rounds": rounds, "openSmall": 10,
            "openLarge": 10 + extra_open, "storedLarge": stored, "settled": settled,
            "small": small.steps, "large": large.steps, "cpuPerPairUs": cpu,
            "roundRatios": ratios, "ratio": ratio, "profiles": profiles}


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts."""
    document: dict[str, Any] = {
        "bench": "scale", "label": arguments.label,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "sockets" in arguments.parts:
        document["sockets"] = await sockets_part(arguments.sockets, arguments.at_once,
                                                 arguments.routing)
    if "requests" in arguments.parts:
        document["requests"] = await requests_part(arguments.online, arguments.requests,
                                                   arguments.request_rate, arguments.routing)
    if "cost" in arguments.parts:
        document["cost"] = await cost_part(
            arguments.open, arguments.rate, arguments.seconds, arguments.stored,
            rounds=arguments.rounds, settle_limit=arguments.settle_limit,
            profile=arguments.profile, py_spy=arguments.py_spy)
    return document


def _raise_open_files(needed: int) -> None:
    """Let this process and the servers it starts hold ``needed`` descriptors (one per
    agent socket each, and some), as far as the hard limit allows; say so when it does
    not (``ulimit -Hn``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        print(f"open files limited to {wanted} (hard limit): raise ulimit -Hn for "
              f"{needed}", file=sys.stderr, flush=True)


def main() -> None:
    """Parse the arguments, run, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=lambda s: s.split(","),
                        default=["sockets", "requests", "cost"],
                        help="comma-separated: sockets,requests,cost")
    parser.add_argument("--sockets", type=int, default=1000, help="idle agent sockets")
    parser.add_argument("--at-once", type=int, default=50, help="agents connecting at once")
    parser.add_argument("--routing", choices=("broadcast", "auto"), default="broadcast",
                        help="the organization's routing (sockets and requests parts)")
    parser.add_argument("--online", type=int, default=300,
                        help="agents online while requests are created")
    parser.add_argument("--requests", type=int, default=1000, help="requests to create")
    parser.add_argument("--request-rate", type=float, default=None,
                        help="create the requests at this rate whatever the answers (open "
                        "loop) instead of 20 at a time")
    parser.add_argument("--open", type=int, default=1000,
                        help="extra pending conversations for the cost part")
    parser.add_argument("--stored", type=int, default=0,
                        help="ended conversations (4 messages each) stored for the cost "
                        "part's second step")
    parser.add_argument("--rate", type=float, default=50.0, help="pairs/s of the cost part")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating measured rounds of the cost part")
    parser.add_argument("--settle-limit", type=float, default=180.0,
                        help="seconds the cost part waits at most for each server to settle")
    parser.add_argument("--profile", metavar="DIR", help="after the cost part's rounds, one "
                        "more step of each server under py-spy, its raw profile in DIR")
    parser.add_argument("--py-spy", default=os.environ.get("PY_SPY", "py-spy"),
                        help="the py-spy executable for --profile")
    parser.add_argument("--label", default="")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--lcx-root", help="run the lcx of this source tree (e.g. an older "
                        "commit from git archive) instead of this checkout's")
    parser.add_argument("--light-agents", action=argparse.BooleanOptionalAction,
                        default=True, help="the requests part's agents are raw sockets in "
                        "a process of their own (default)")
    parser.add_argument("--light-agents-of", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.light_agents_of:
        light_agents_main(arguments.light_agents_of, arguments.online, arguments.at_once)
        return
    LCX_ROOT[0] = arguments.lcx_root
    LIGHT_AGENTS[0] = arguments.light_agents
    _raise_open_files(max(arguments.sockets, arguments.online) + 1000)
    write_json(arguments.json, trio.run(run, arguments))


if __name__ == "__main__":
    main()
