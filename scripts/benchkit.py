"""What the benchmarks share: a real ``lcx serve`` with the stub bot, agents, figures.

Everything here talks to real processes over loopback: lcx is started as ``python -m lcx
serve`` (or reached at ``--base-url``), the stub bot (``bench_bot.py``) runs in its own
process, agents are trio-websocket clients. The server's CPU time and memory are read
from ``/proc/<pid>``.
"""

from __future__ import annotations

import errno
import gc
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.lcx_process import LcxProcess, basic_config  # noqa: E402

from lcx.auth import mint_token  # noqa: E402

JWT_SECRET = "bench-jwt-secret-with-more-than-32-bytes"
WEBHOOK_SECRET = "bench-webhook-secret"
ORG = "o1"
TENANT = "t1"
GROUP = "g1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(values_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in milliseconds."""
    return {"p50": round(percentile(values_ms, 0.50), 3),
            "p90": round(percentile(values_ms, 0.90), 3),
            "p99": round(percentile(values_ms, 0.99), 3),
            "max": round(max(values_ms, default=0.0), 3)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class GcPauses:
    """The seconds this process spends in its garbage collector while in the ``with``
    block: the bench's own pauses, not the server's (with 10,000 agents in the bench one
    full collection takes about a second, and no agent is served meanwhile)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._note)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while in the block, one full collection
    before it. The bench holds 10,000 agents in one heap, and its full collections (a
    second each, no agent served meanwhile) took 10.5 s of a 22.4 s reconnect: that is
    the bench's time, not the server's (a console is a browser per agent)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _proc_field(pid: int, name: str, prefix: str, index: int) -> int:
    """The ``index``-th word of the line of ``/proc/<pid>/<name>`` that starts with
    ``prefix``, as an int."""
    with open(f"/proc/{pid}/{name}") as lines:
        for line in lines:
            if line.startswith(prefix):
                return int(line.split()[index])
    raise RuntimeError(f"no {prefix!r} in /proc/{pid}/{name}")


def open_files_limit(pid: int) -> int:
    """The soft limit of open descriptors of process ``pid`` (``/proc/<pid>/limits``)."""
    return _proc_field(pid, "limits", "Max open files", 3)


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``/proc/<pid>/status``)."""
    return _proc_field(pid, "status", "VmRSS:", 1)


def bot_token() -> str:
    """A bot-scope token of the bench organization."""
    return mint_token(JWT_SECRET, sub="bench-bot", org=ORG, scopes="bot")


def agent_token(name: str) -> str:
    """An agent token in the bench group."""
    return mint_token(JWT_SECRET, sub=name, org=ORG, scopes="agent", groups=(GROUP,),
                      name=name)


def lcx_config(workdir: Path, bot_url: str, *, extra: str = "") -> str:
    """One instance on SQLite in ``workdir``, tenant t1 delivering to ``bot_url``.

    Logging stays at the operator's default level (info), as a real deployment runs.
    """
    return basic_config(workdir, extra=_auth_and_tenant(bot_url, extra))


def _auth_and_tenant(bot_url: str, extra: str) -> str:
    """The bench's JWT secret and its tenant t1 delivering to ``bot_url``, then ``extra``."""
    return f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[[tenants]]
id = "{TENANT}"
organization_id = "{ORG}"
default_user_group = "{GROUP}"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"
{extra}
"""


@dataclass
class Server:
    """The lcx under test: its base URL, the pid to read CPU/RSS from, the stub bot.

    A cluster is one :class:`Server` too: ``url``/``pid`` are its first instance's and
    ``urls``/``pids`` list every instance, so CPU can be summed over all of them.
    """

    url: str
    pid: int | None
    bot_url: str
    workdir: Path
    lcx: LcxProcess | None = None
    """The process, when the bench started it."""
    urls: list[str] = field(default_factory=list)
    """Every instance's base URL (just ``url`` for one instance)."""
    pids: list[int] = field(default_factory=list)
    """Every instance's pid the bench can read (``[pid]`` for one instance)."""

    def __post_init__(self) -> None:
        if not self.urls:
            self.urls = [self.url]
        if not self.pids and self.pid is not None:
            self.pids = [self.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every instance so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)


@contextmanager
def stub_bot() -> Iterator[str]:
    """Run ``bench_bot.py`` in its own process; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "bench_bot.py"), "--secret", WEBHOOK_SECRET],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("bench bot listening on "):
            raise RuntimeError(f"the stub bot did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.kill()
        process.wait()


def lcx_env(lcx_root: str | None) -> dict[str, str]:
    """The environment of a bench's ``lcx serve``: unbuffered, and with ``lcx_root`` first
    on the path when another source tree's lcx is measured."""
    env = {"PYTHONUNBUFFERED": "1"}
    if lcx_root is not None:
        env["PYTHONPATH"] = str(Path(lcx_root).resolve())
    return env


@contextmanager
def running_server(base_url: str | None, pid: int | None, *, bot_port: int = 9000,
                   extra_config: str = "", lcx_root: str | None = None) -> Iterator[Server]:
    """The server to measure: a fresh ``lcx serve`` on a scratch SQLite file, or the one at
    ``base_url`` (whose tenant t1 must deliver to the stub bot on ``bot_port``).

    ``lcx_root`` runs the lcx of another source tree (e.g. an older commit unpacked with
    ``git archive``) with this venv, to compare versions side by side.
    """
    with tempfile.TemporaryDirectory(prefix="lcx-bench-") as tmp:
        workdir = Path(tmp)
        if base_url is not None:
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "bench_bot.py"), "--secret",
                 WEBHOOK_SECRET, "--port", str(bot_port)], stdout=subprocess.PIPE, text=True)
            try:
                assert process.stdout is not None
                bot_url = process.stdout.readline().rsplit(" ", 1)[1].strip()
                yield Server(base_url, pid, bot_url, workdir)
            finally:
                process.kill()
                process.wait()
            return
        with stub_bot() as bot_url:
            config = lcx_config(workdir, bot_url + "/livechat-events", extra=extra_config)
            with LcxProcess(workdir, config, env=lcx_env(lcx_root)) as lcx:
                assert lcx.process is not None
                try:
                    yield Server(lcx.url, lcx.process.pid, bot_url, workdir, lcx)
                finally:
                    if log_to := os.environ.get("LCX_BENCH_KEEP_LOG"):
                        Path(log_to).write_text(lcx.log())


def cluster_config(workdir: Path, name: str, *, redis_url: str, store_url: str,
                   bot_url: str, extra: str = "") -> str:
    """Instance ``name`` of a cluster on ``redis_url`` and the PostgreSQL ``store_url``,
    tenant t1 delivering to ``bot_url`` (the cluster's default heartbeat and lease)."""
    return f"""
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout_seconds = 5

[store]
url = "{store_url}"

[cluster]
redis_url = "{redis_url}"
instance_id = "{name}"

[log]
level = "info"
format = "json"
{_auth_and_tenant(bot_url, extra)}"""


@asynccontextmanager
async def running_cluster(size: int, *, lcx_root: str | None = None
                          ) -> AsyncIterator[Server]:
    """``size`` instances of ``lcx serve`` on a private ``redis-server`` and a scratch
    PostgreSQL schema (both as for the test suite: PostgreSQL on 127.0.0.1:5432), with
    the stub bot; the schema is dropped and everything stopped on exit."""
    from contextlib import ExitStack

    from support.postgres import scratch_schema
    from support.redis import private_redis

    names = [chr(ord("a") + index) for index in range(size)]
    with tempfile.TemporaryDirectory(prefix="lcx-bench-") as tmp, stub_bot() as bot_url, \
            scratch_schema() as store_url, ExitStack() as stack:
        workdir = Path(tmp)
        env = lcx_env(lcx_root)
        async with private_redis() as redis:
            instances = []
            for name in names:
                config = cluster_config(workdir, name, redis_url=redis.url,
                                        store_url=store_url,
                                        bot_url=bot_url + "/livechat-events")
                instances.append(stack.enter_context(
                    LcxProcess(workdir, config, name=name, env=env)))
            pids = [lcx.process.pid for lcx in instances if lcx.process is not None]
            yield Server(instances[0].url, pids[0], bot_url, workdir, instances[0],
                         urls=[lcx.url for lcx in instances], pids=pids)
            stack.close()


Frame = dict[str, Any]


@dataclass
class Agent:
    """One agent websocket: frames are handed to ``on_frame``; ``call`` awaits an ack."""

    name: str
    ws: WebSocketConnection
    on_frame: Callable[[Agent, Frame], None] = lambda agent, frame: None
    stream: trio.SocketStream | None = None
    """The TCP connection under ``ws``, closed once the websocket is (see :meth:`read`)."""
    closed_code: int | None = None
    granted: trio.Event = field(default_factory=trio.Event)
    """Set by ``AUTHORIZATION_GRANTED``, or by what came instead (``refused``, a close)."""
    refused: Frame | None = None
    """The ``ERROR`` frame that came instead of ``AUTHORIZATION_GRANTED`` (the close
    that follows it says whether to try again: 1013 yes, 4401 no)."""
    gone: trio.Event = field(default_factory=trio.Event)
    """Set once the websocket closed and its descriptor was freed."""
    _waiting: dict[str, tuple[trio.Event, list[Frame]]] = field(default_factory=dict)
    _refs: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _decoder: msgspec.json.Decoder[Any] = field(default_factory=msgspec.json.Decoder)

    async def read(self) -> None:
        """Read frames until the socket closes."""
        try:
            while True:
                frame = self._decoder.decode(await self.ws.get_message())
                ref = frame.get("ref")
                if ref is not None and ref in self._waiting:
                    event, box = self._waiting.pop(ref)
                    box.append(frame)
                    event.set()
                    continue
                if frame.get("event") in ("AUTHORIZATION_GRANTED", "ERROR") \
                        and not self.granted.is_set():
                    if frame.get("event") == "ERROR":
                        self.refused = frame
                    self.granted.set()
                self.on_frame(self, frame)
        except ConnectionClosed as exc:
            self.closed_code = exc.reason.code if exc.reason is not None else None
            self.granted.set()
            await self.close_stream()
            self.gone.set()

    async def close_stream(self) -> None:
        """Free the socket's descriptor, as a browser does once its websocket closed.

        trio-websocket's client leaves the TCP stream open when the server closes first
        (it waits for the server's FIN and then only stops reading) and its ``aclose`` is
        a no-op afterwards: a bench whose 10,000 agents were closed by a restart held
        10,000 dead descriptors and ran out of them (EMFILE) reconnecting.
        """
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)

    async def send(self, frame: Frame) -> None:
        """Send one frame."""
        await self.ws.send_message(msgspec.json.encode(frame).decode())

    async def call(self, event: str | None, data: Any, *, kind: str = "event",
                   timeout: float = 10.0) -> Frame:
        """Send a frame with a fresh ref; its ack or ERROR frame."""
        ref = f"b{next(self._refs)}"
        waiter: tuple[trio.Event, list[Frame]] = (trio.Event(), [])
        self._waiting[ref] = waiter
        frame: Frame = {"type": kind, "ref": ref, "data": data}
        if event is not None:
            frame["event"] = event
        await self.send(frame)
        with trio.fail_after(timeout):
            await waiter[0].wait()
        return waiter[1][0]


@dataclass
class Connected:
    """The agents that were granted, and why the others failed."""

    agents: list[Agent]
    failures: list[str]
    """Why each agent that never got in failed (its last attempt)."""
    failed_attempts: list[str] = field(default_factory=list)
    """Every attempt that failed, also those of agents that got in on a later one."""


CONSOLE_FIRST_DELAY_SECONDS = 0.5
CONSOLE_MAX_DELAY_SECONDS = 10.0
"""The console's reconnect backoff (``lcx/console/static/socket.js``): the n-th retry
waits a random time between half and all of min(10 s, 0.5 s * 2^(n-1))."""
CLOSE_UNAUTHORIZED = 4401
"""A refused token: the console stops reconnecting."""


def console_backoff(attempt: int) -> float:
    """Seconds the console waits before its ``attempt``-th reconnect (1 for the first)."""
    ceiling = min(CONSOLE_MAX_DELAY_SECONDS, CONSOLE_FIRST_DELAY_SECONDS * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.random() * ceiling / 2


async def open_agent(nursery: trio.Nursery, base_url: str, name: str,
                     on_frame: Callable[[Agent, Frame], None]) -> Agent:
    """Open agent ``name``'s websocket at ``base_url`` and start reading it (granted or
    not yet); the TCP stream is the agent's own so that it can be closed.

    Raises:
        OSError: no TCP connection.
        HandshakeError: the upgrade was refused.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stream = await trio.open_tcp_stream(host, port)
    try:
        ws = await wrap_client_stream(nursery, stream, f"{host}:{port}",
                                      f"/ws?token={agent_token(name)}",
                                      message_queue_size=100000)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    agent = Agent(name, ws, on_frame, stream)
    nursery.start_soon(agent.read)
    return agent


def failure_text(exc: BaseException) -> str:
    """``exc`` as ``Type: message``, followed by the errors it was raised from (trio's
    "all attempts to connect ... failed" carries each attempt's ``OSError`` in its cause):
    the errno names which limit was hit (ECONNREFUSED, EADDRNOTAVAIL, EMFILE...)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        parts = [_errno_text(inner) for inner in cause.exceptions]
        text += f" ({'; '.join(parts)})"
    elif cause is not None:
        text += f" ({_errno_text(cause)})"
    return text


def _errno_text(exc: BaseException) -> str:
    number = getattr(exc, "errno", None)
    name = errno.errorcode.get(number, "") if isinstance(number, int) else ""
    return f"{type(exc).__name__} {name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


@asynccontextmanager
async def agents_connected(nursery: trio.Nursery, base_url: str | list[str],
                           names: list[str], on_frame: Callable[[Agent, Frame], None], *,
                           at_once: int = 50, retry: bool = False
                           ) -> AsyncIterator[Connected]:
    """Connect one socket per name (``at_once`` at a time) and wait for each to be granted;
    close them after the block. With several base URLs (a cluster's instances) the k-th
    name connects to the k-th URL in turn. A socket refused or closed before it was
    granted is a failure (counted, not raised); with ``retry`` the agent tries again after
    the console's backoff (:func:`console_backoff`) until it is granted or refused (4401),
    every failed attempt counted in ``failed_attempts``."""
    connected = Connected([], [])
    limit = trio.CapacityLimiter(at_once)
    bases = [base_url] if isinstance(base_url, str) else base_url
    base_of = {name: bases[index % len(bases)] for index, name in enumerate(names)}

    async def attempt(name: str) -> tuple[Agent | None, str, bool]:
        """One connect: the granted agent or None, why not, and whether to stop trying."""
        try:
            agent = await open_agent(nursery, base_of[name], name, on_frame)
        except (OSError, HandshakeError) as exc:
            return None, f"{name}: {failure_text(exc)}", False
        with trio.move_on_after(60):
            await agent.granted.wait()
        if agent.refused is not None:
            with trio.move_on_after(5):  # the close follows the ERROR
                await agent.gone.wait()
        if agent.closed_code is not None or agent.refused is not None \
                or not agent.granted.is_set():
            await agent.close_stream()
            error = "" if agent.refused is None else \
                f"ERROR {agent.refused.get('data', {}).get('code')} and "
            return None, (f"{name}: {error}closed ({agent.closed_code}) before "
                          "AUTHORIZATION_GRANTED"), agent.closed_code == CLOSE_UNAUTHORIZED
        return agent, "", False

    async def connect(name: str) -> None:
        tries = 0
        while True:
            async with limit:
                agent, why, refused = await attempt(name)
            if agent is not None:
                connected.agents.append(agent)
                return
            connected.failed_attempts.append(why)
            tries += 1
            if not retry or refused:
                connected.failures.append(why)
                return
            await trio.sleep(console_backoff(tries))

    async with trio.open_nursery() as connecting:
        for name in names:
            connecting.start_soon(connect, name)
    try:
        yield connected
    finally:
        with trio.CancelScope(shield=True):
            for agent in connected.agents:
                with trio.move_on_after(1):
                    await agent.ws.aclose()
                await agent.close_stream()


def bot_client(base_url: str, *, connections: int = 64) -> httpx.AsyncClient:
    """An HTTP client authenticated as the bench bot."""
    return httpx.AsyncClient(base_url=base_url, timeout=30,
                             headers={"Authorization": f"Bearer {bot_token()}"},
                             limits=httpx.Limits(max_connections=connections,
                                                 max_keepalive_connections=connections))


async def put_settings(http: httpx.AsyncClient, **settings: Any) -> None:
    """PUT the bench organization's livechat settings (as a supervisor)."""
    token = mint_token(JWT_SECRET, sub="bench-supervisor", org=ORG, scopes="supervisor",
                       groups=(GROUP,), name="Supervisor")
    response = await http.put(f"/organizations/{ORG}/livechat-settings", json=settings,
                              headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        raise RuntimeError(f"PUT livechat-settings: {response.status_code} {response.text}")


async def open_conversations(http: httpx.AsyncClient, agents: list[Agent], count: int,
                             prefix: str, *, at_once: int = 20) -> list[tuple[str, str]]:
    """``count`` conversations, request i accepted by agent i % len(agents):
    a list of (subHandle, conversationId)."""
    opened: list[tuple[str, str] | None] = [None] * count
    limit = trio.CapacityLimiter(at_once)

    async def one(index: int) -> None:
        async with limit:
            sub = f"{prefix}-{index}"
            response = await http.post("/requests", json={"tenantId": TENANT,
                                                          "subHandle": sub})
            if response.status_code != 201:
                raise RuntimeError(f"POST /requests: {response.status_code} {response.text}")
            agent = agents[index % len(agents)]
            ack = await agent.call("REQUEST_ACCEPT", {"requestId": response.json()["id"]})
            if ack["type"] != "ack":
                raise RuntimeError(f"REQUEST_ACCEPT: {ack}")
            opened[index] = (sub, ack["data"]["conversationId"])

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return [pair for pair in opened if pair is not None]


async def fetch_bot_results(bot_url: str) -> dict[str, Any]:
    """What the stub bot recorded since the last fetch."""
    async with httpx.AsyncClient() as client:
        response = await client.get(bot_url + "/_results")
        document: dict[str, Any] = msgspec.json.decode(response.content)
        return document


def write_json(path: str | None, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` (pretty JSON) when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
        print(f"wrote {path}")
