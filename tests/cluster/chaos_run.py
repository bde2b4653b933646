"""The chaos run: three real instances under a steady load of message pairs while faults
are injected in turn, then an account of every acknowledgement.

Used by ``scripts/chaos.py`` (the full run) and ``tests/cluster/test_chaos.py`` (a short
one). The set-up is the cluster harness of ``cluster_env`` on a private Redis and a
private PostgreSQL server (both of which this run restarts), each instance reaching Redis
through its own :class:`~support.tcp_proxy.TcpProxy` so that any one can be cut off.

The load
    A bot posts user messages (``POST /messages``, a unique ``id`` each, resent with the
    same ``id`` until answered 2xx) to a random live instance; agents on websockets spread
    over the instances answer each user message they receive with an agent message (its
    own ``id``, resent until acked). New requests keep arriving during the faults; two
    agents race to accept each.

The faults, one after the other
    kill -9 of a random instance (restarted 3 s later), SIGSTOP of the leader, Redis
    restarted (all its keys gone), Redis paused (SIGSTOP), PostgreSQL restarted (an
    immediate stop: crash recovery), the leader cut from Redis by its proxy (a blackhole).
    Before each fault the run waits until the cluster is whole again (every instance ready
    and seeing every member), and records how long that took.

The account (see :func:`account`)
    every 202 and every ack is in its conversation's transcript at the seq it was given;
    no conversation has a gap or a duplicate in its seq; every user message reached the
    agent (its answer was acked); every acked agent message reached the bot, under one
    ``Idempotency-Key``, in seq order; no request was accepted by two agents; no instance
    answered 5xx other than 503 nor an ``internal`` frame; no term had two leaders.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from cluster_env import LEASE_MS, Cluster, running_cluster, token
from support.agent_client import AgentClient, Frame, agent_connection
from support.private_postgres import PrivatePostgres
from support.redis import RedisServer
from support.tcp_proxy import TcpProxy

CALL_TIMEOUT = 10.0
"""A caller's own timeout per attempt (it then tries again, elsewhere)."""
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WHOLE_TIMEOUT = 60.0
"""How long the cluster may take to be whole again after a fault."""
GIVE_UP = 90.0
"""A caller that got no 2xx in this long records a failure."""


@dataclass(frozen=True)
class ChaosPlan:
    """What to run: the load, the faults and their timing."""

    rate: float = 100.0
    """Message pairs a second (user message + agent answer)."""
    conversations: int = 30
    """Conversations opened before the faults."""
    agents: int = 9
    """Agents, spread over the instances (two race for each request)."""
    new_request_every: float = 2.0
    """A new request during the run every this many seconds (0: none)."""
    kills: int = 3
    """kill -9 of a random instance, one every :attr:`kill_every`."""
    kill_every: float = 10.0
    restart_after: float = 3.0
    leader_pause: float = 3.0
    redis_pause: float = 5.0
    partition: float = 4.0
    """How long the leader is cut from Redis (more than a lease)."""
    gap: float = 3.0
    """Load without faults between two faults (after the cluster is whole again)."""
    tail: float = 3.0
    """Load after the last fault."""
    settle_timeout: float = 60.0
    """How long the account waits, after the load, for answers and deliveries still on
    their way *without any of them arriving*: a backlog that is still draining is waited
    for (up to :attr:`settle_limit`), so what the account then calls lost is what stopped
    moving, not what a saturated machine had not reached yet."""
    settle_limit: float = 600.0
    """The longest settle in all, draining or not."""
    seed: int = 12


@dataclass
class Fault:
    """One fault injected."""

    kind: str
    """``kill``, ``leader_pause``, ``redis_restart``, ``redis_pause``, ``postgres_restart``
    or ``partition``."""
    name: str
    target: str
    at: float
    """Seconds since the load started."""
    lasted: float
    recovered_in: float = 0.0
    """Seconds from the end of the fault until the cluster was whole again."""
    answers_503: int = 0
    """503 answers to callers while it lasted and until the cluster was whole."""
    reasons_503: dict[str, int] = field(default_factory=dict)
    """Those 503s by ``details.reason`` (or ``dependency``)."""
    not_whole: str = ""
    """Why the cluster was not whole again within :data:`WHOLE_TIMEOUT` (empty: it was)."""


@dataclass(frozen=True)
class Ack:
    """What a 202 or an ack promised: this message at this seq of this conversation."""

    conversation_id: str
    message_id: str
    seq: int


@dataclass
class Ledger:
    """Every acknowledgement the callers got, and how they got it."""

    user_acked: dict[str, Ack] = field(default_factory=dict)
    """Bot message id -> what its 202 said."""
    agent_acked: dict[str, Ack] = field(default_factory=dict)
    """Agent message id (``ans-<user messageId>``) -> what its ack said."""
    accepted_by: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Request id -> the agents whose REQUEST_ACCEPT was acked."""
    conversation_of: dict[str, str] = field(default_factory=dict)
    """Request id -> conversation id (from the accept's ack)."""
    answers: Counter[str] = field(default_factory=Counter)
    """``"<what> <status>"`` -> how many (e.g. ``"POST /messages 202"``)."""
    server_errors: list[str] = field(default_factory=list)
    """5xx other than 503, and ERROR frames with code ``internal``: bugs."""
    failures: list[str] = field(default_factory=list)
    """Callers that never got a 2xx, or got an answer that makes no sense."""
    refused_participants: list[str] = field(default_factory=list)
    """Agent messages refused ``forbidden`` (not in this conversation) although the
    agent's accept had been acked: a stale copy of the conversation answered (resent)."""
    answers_503: int = 0
    reasons_503: Counter[str] = field(default_factory=Counter)
    longest_call: float = 0.0
    """The longest a single call (one attempt) took to be answered, seconds."""
    longest_call_what: str = ""
    longest_call_at: float = 0.0
    """When that call was answered, seconds since the load started."""
    clock_zero: float = 0.0
    longest_until_ack: float = 0.0
    """The longest from a caller's first attempt to its 2xx/ack, retries included."""
    leaders: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Term -> the holders named for it by any instance's ``/cluster``."""

    def call_took(self, what: str, seconds: float) -> None:
        if seconds > self.longest_call:
            self.longest_call, self.longest_call_what = seconds, what
            self.longest_call_at = trio.current_time() - self.clock_zero

    def until_ack(self, seconds: float) -> None:
        self.longest_until_ack = max(self.longest_until_ack, seconds)

    def answered(self, what: str, status: int | str, body: str = "") -> None:
        self.answers[f"{what} {status}"] += 1
        if status in (503, "unavailable"):  # an ERROR frame ``unavailable`` is a 503
            self.answers_503 += 1
            self.reasons_503[_reason(body) if status == 503 else f"frame {_reason(body)}"] += 1
        elif isinstance(status, int) and status >= 500:
            self.server_errors.append(f"{what} {status}: {body[:300]}")


def _reason(body: str) -> str:
    """``details.reason`` (or ``details.dependency``, or the start of the message) of an
    error envelope."""
    try:
        error = json.loads(body)["error"]
        details = error.get("details") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"
    reason = details.get("reason") or details.get("dependency")
    if reason:
        return str(reason)
    return _IDS.sub("<id>", str(error.get("message", "?")))[:60]


@dataclass
class Conversation:
    """A conversation of the load: its subscriber and the agent holding it."""

    sub_handle: str
    request_id: str
    conversation_id: str
    agent: str
    sent: int = 0


def contiguous(seqs: set[int]) -> int:
    """The highest n such that 1..n are all in ``seqs``."""
    last = 0
    while last + 1 in seqs:
        last += 1
    return last


class ChaosAgent:
    """One agent: keeps a socket open to some live instance (another one after a
    failure), RESUMEs what it missed and answers every user message of its chats."""

    def __init__(self, run: ChaosRun, index: int) -> None:
        self.run = run
        self.id = f"agent-{index}"
        self.token = token(self.id, "agent", groups=["g1"], name=f"Agent {index}")
        self.home = index
        self.client: AgentClient | None = None
        self.held: set[str] = set()
        self.seen: dict[str, set[int]] = defaultdict(set)
        """Conversation -> seqs of the message frames (and own acks) seen."""
        self.reached: set[str] = set()
        """Message ids of the user messages that reached this agent."""
        self.reconnects = 0
        self._connected = trio.Event()
        send, self._answers = trio.open_memory_channel[tuple[str, str]](math.inf)
        self._to_answer = send

    async def socket(self, timeout: float) -> AgentClient:
        """The open socket, waiting up to ``timeout`` for one."""
        with trio.fail_after(timeout):
            while self.client is None:
                await self._connected.wait()
        return self.client

    async def keep_connected(self) -> None:
        """Connect, RESUME, read; on any failure reconnect to the next live instance."""
        attempt = self.home
        while True:
            names = sorted(self.run.cluster.alive)
            name = names[attempt % len(names)] if names else "a"
            attempt += 1
            try:
                async with agent_connection(self.run.cluster.url(name), self.token) as client:
                    if client.frames[0].get("event") != "AUTHORIZATION_GRANTED":
                        self.run.ledger.answered("ws connect", "refused", str(client.frames[0]))
                        await trio.sleep(0.2)
                        continue
                    self.client = client
                    self._connected.set()
                    self._connected = trio.Event()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self.resume)
                        await self._read(client)
                        nursery.cancel_scope.cancel()
            except Exception:  # any failure of a socket: reconnect elsewhere
                pass
            self.client = None
            self.reconnects += 1
            await trio.sleep(0.1)

    async def _read(self, client: AgentClient) -> None:
        index = 0
        while (frame := await client.next_frame(index)) is not None:
            index += 1
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if frame.get("event") == "ERROR" and frame["data"].get("code") == "internal":
            self.run.ledger.server_errors.append(f"{self.id} frame: {frame}")
        if frame.get("type") != "message":
            return
        data = frame["data"]
        conversation_id = data["conversationId"]
        if conversation_id not in self.held:
            return
        self.seen[conversation_id].add(data["seq"])
        if data["author"]["type"] == "subscriber" and data["messageId"] not in self.reached:
            self.reached.add(data["messageId"])
            self._to_answer.send_nowait((conversation_id, data["messageId"]))

    async def resume(self) -> None:
        """Ask for every message after the last contiguous seq of each held chat."""
        client = self.client
        if client is None or not self.held:
            return
        marks = {c: contiguous(self.seen[c]) for c in sorted(self.held)}
        try:
            answer = await client.call("RESUME", {"conversations": marks},
                                       timeout=CALL_TIMEOUT)
        except Exception:  # a broken socket: keep_connected reconnects
            return
        self.run.ledger.answered("RESUME", answer["type"] if answer["type"] == "ack"
                                 else answer["data"].get("code", "?"))

    async def resume_gaps(self) -> None:
        """Every second, RESUME when a held chat has a hole in what it saw (a frame relayed
        while the session moved is at most once; seq tells what is missing)."""
        while True:
            await trio.sleep(1.0)
            if any(seqs and contiguous(seqs) < max(seqs) for seqs in self.seen.values()):
                await self.resume()

    async def answer_all(self) -> None:
        """Answer the user messages that reached this agent, one at a time per worker."""
        async for conversation_id, message_id in self._answers:
            await self._answer(conversation_id, message_id)

    async def _answer(self, conversation_id: str, message_id: str) -> None:
        ledger = self.run.ledger
        own_id = f"ans-{message_id}"
        began = trio.current_time()
        while trio.current_time() - began < GIVE_UP:
            try:
                client = await self.socket(CALL_TIMEOUT)
                sent = trio.current_time()
                answer = await client.call(None, {"conversationId": conversation_id,
                                                  "id": own_id, "text": f"re {message_id}"},
                                           kind="message", timeout=CALL_TIMEOUT)
            except Exception:  # no socket or no answer: try again elsewhere
                await self._drop(self.client)
                continue
            ledger.call_took("agent message", trio.current_time() - sent)
            if answer["type"] == "ack":
                ledger.answered("agent message", "ack")
                ack = Ack(conversation_id, answer["data"]["messageId"], answer["data"]["seq"])
                ledger.agent_acked[own_id] = ack
                self.seen[conversation_id].add(ack.seq)
                ledger.until_ack(trio.current_time() - began)
                return
            code = answer["data"].get("code", "?")
            ledger.answered("agent message", code, json.dumps({"error": answer["data"]}))
            if code == "internal":
                ledger.server_errors.append(f"agent message: {answer}")
            if code == "forbidden":  # the agent's accept was acked: a stale view said no
                ledger.refused_participants.append(f"{own_id} in {conversation_id}")
            elif code not in ("unavailable", "internal"):
                ledger.failures.append(f"agent message {own_id}: {answer}")
                return
            await trio.sleep(0.2)
        ledger.failures.append(f"agent message {own_id}: no ack in {GIVE_UP:.0f} s")

    async def _drop(self, client: AgentClient | None) -> None:
        """A call got no answer: close the socket (the reader reconnects elsewhere)."""
        if client is not None and client is self.client:
            self.client = None
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await client.ws.aclose()

    async def accept(self, request_id: str) -> bool:
        """REQUEST_ACCEPT until acked or refused (``conflict``: another agent won)."""
        ledger = self.run.ledger
        began = trio.current_time()
        while trio.current_time() - began < GIVE_UP:
            try:
                client = await self.socket(CALL_TIMEOUT)
                sent = trio.current_time()
                answer = await client.call("REQUEST_ACCEPT", {"requestId": request_id},
                                           timeout=CALL_TIMEOUT)
            except Exception:  # no socket or no answer: try again elsewhere
                await self._drop(self.client)
                continue
            ledger.call_took("REQUEST_ACCEPT", trio.current_time() - sent)
            if answer["type"] == "ack":
                ledger.answered("REQUEST_ACCEPT", "ack")
                conversation_id = answer["data"]["conversationId"]
                ledger.accepted_by[request_id].add(self.id)
                ledger.conversation_of[request_id] = conversation_id
                self.held.add(conversation_id)
                for message in answer["data"].get("messages", []):
                    self._handle({"type": "message", "data": message})
                ledger.until_ack(trio.current_time() - began)
                return True
            code = answer["data"].get("code", "?")
            ledger.answered("REQUEST_ACCEPT", code, json.dumps({"error": answer["data"]}))
            if code == "internal":
                ledger.server_errors.append(f"REQUEST_ACCEPT: {answer}")
            if code not in ("unavailable", "internal"):
                return False
            await trio.sleep(0.2)
        ledger.failures.append(f"REQUEST_ACCEPT {request_id} by {self.id}: no answer")
        return False


class ChaosRun:
    """The cluster, its dependencies, the load, the faults and the ledger of one run."""

    def __init__(self, plan: ChaosPlan, cluster: Cluster, postgres: PrivatePostgres,
                 proxies: dict[str, TcpProxy], say: Callable[[str], None]) -> None:
        self.plan = plan
        self.cluster = cluster
        self.postgres = postgres
        self.proxies = proxies
        self.say = say
        self.ledger = Ledger()
        self.rng = random.Random(plan.seed)
        self.agents = [ChaosAgent(self, index) for index in range(plan.agents)]
        self.conversations: list[Conversation] = []
        self.faults: list[Fault] = []
        self.started = 0.0
        self.load_seconds = 0.0
        self.settle_seconds = 0.0
        self.settle_drained = False
        self.cpu: tuple[float, float] = (0.0, 0.0)
        """CPU seconds used during the load: by the whole machine, by this driver."""
        self._subs = 0

    def now(self) -> float:
        return trio.current_time() - self.started

    def _instance(self) -> str:
        return self.rng.choice(sorted(self.cluster.alive))

    async def _bot(self, what: str, method: str, path: str, body: dict[str, Any] | None,
                   ok: tuple[int, ...], *, token_scope: str = "bot") -> httpx.Response | None:
        """One bot (or supervisor) call, sent again (to a random live instance) until one
        of ``ok`` comes back; ``None`` (and a failure) after :data:`GIVE_UP`."""
        headers = {"Authorization": f"Bearer {token('bot-1', token_scope)}"}
        began = trio.current_time()
        while trio.current_time() - began < GIVE_UP:
            name = self._instance()
            sent = trio.current_time()
            try:
                response = await self.cluster.http.request(
                    method, f"{self.cluster.url(name)}{path}", json=body, headers=headers,
                    timeout=CALL_TIMEOUT)
            except httpx.HTTPError as exc:
                self.ledger.answered(what, type(exc).__name__)
                await trio.sleep(0.1)
                continue
            self.ledger.call_took(what, trio.current_time() - sent)
            self.ledger.answered(what, response.status_code, response.text)
            if response.status_code in ok:
                self.ledger.until_ack(trio.current_time() - began)
                return response
            if response.status_code >= 500:
                retry_after = float(response.headers.get("Retry-After", "0.2") or 0.2)
                await trio.sleep(min(retry_after, 0.5))
                continue
            self.ledger.failures.append(f"{what} {path}: {response.status_code} "
                                        f"{response.text[:300]}")
            return None
        self.ledger.failures.append(f"{what} {path}: no 2xx in {GIVE_UP:.0f} s")
        return None

    async def open_conversation(self) -> None:
        """A new request; two agents (of different instances, usually) race to accept."""
        self._subs += 1
        sub = f"chaos-{self._subs}"
        response = await self._bot("POST /requests", "POST", "/requests",
                                   {"tenantId": "t1", "subHandle": sub}, (201, 409))
        if response is None:
            return
        body = response.json()
        request_id = body["id"] if response.status_code == 201 else \
            body["error"]["details"]["requestId"]
        racers = self.rng.sample(self.agents, 2)
        won: dict[str, bool] = {}

        async def race(agent: ChaosAgent) -> None:
            won[agent.id] = await agent.accept(request_id)

        async with trio.open_nursery() as nursery:
            for agent in racers:
                nursery.start_soon(race, agent)
        winners = [a for a in racers if won.get(a.id)]
        if len(winners) == 1:
            self.conversations.append(Conversation(
                sub, request_id, self.ledger.conversation_of[request_id], winners[0].id))

    async def send_user_message(self, conversation: Conversation) -> None:
        """One user message, sent until 202; its promise goes to the ledger."""
        conversation.sent += 1
        message_id = f"{conversation.sub_handle}-u{conversation.sent}"
        response = await self._bot("POST /messages", "POST", "/messages", {
            "tenantId": "t1", "subHandle": conversation.sub_handle, "id": message_id,
            "text": f"user says {conversation.sent}"}, (202,))
        if response is not None:
            body = response.json()
            self.ledger.user_acked[message_id] = Ack(body["conversationId"], body["id"],
                                                     body["seq"])

    async def bot_load(self, stop: trio.Event) -> None:
        """User messages at ``plan.rate`` a second to random conversations until ``stop``."""
        limiter = trio.CapacityLimiter(max(20, int(self.plan.rate)))
        interval = 1 / self.plan.rate

        async def one(conversation: Conversation) -> None:
            async with limiter:
                await self.send_user_message(conversation)

        async with trio.open_nursery() as nursery:
            next_at = trio.current_time()
            while not stop.is_set():
                nursery.start_soon(one, self.rng.choice(self.conversations))
                next_at += interval
                await trio.sleep_until(next_at)

    async def request_load(self, stop: trio.Event) -> None:
        """A new request every ``plan.new_request_every`` seconds until ``stop``."""
        if self.plan.new_request_every <= 0:
            return
        async with trio.open_nursery() as nursery:
            while not stop.is_set():
                nursery.start_soon(self.open_conversation)
                await trio.sleep(self.plan.new_request_every)

    async def watch_leaders(self) -> None:
        """Sample every live instance's view of the leader (term -> holders)."""
        headers = {"Authorization": f"Bearer {token('ops', 'service')}"}
        while True:
            for name in sorted(self.cluster.alive):
                try:
                    response = await self.cluster.http.get(
                        f"{self.cluster.url(name)}/cluster", headers=headers, timeout=1.0)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200 and (leader := response.json()["leader"]):
                    self.ledger.leaders[int(leader["term"])].add(leader["instanceId"])
            await trio.sleep(0.25)

    async def whole(self, timeout: float = WHOLE_TIMEOUT) -> tuple[float, str]:
        """Wait until every instance is ready and sees all three members: (seconds, why
        not, if it was not within ``timeout``)."""
        began = trio.current_time()
        expected = set(self.cluster.instances)
        headers = {"Authorization": f"Bearer {token('ops', 'service')}"}
        why = ""

        async def is_whole() -> str:
            for name in sorted(expected):
                try:
                    ready = await self.cluster.http.get(f"{self.cluster.url(name)}/readyz",
                                                        timeout=1.0)
                    view = await self.cluster.http.get(f"{self.cluster.url(name)}/cluster",
                                                       headers=headers, timeout=1.0)
                except httpx.HTTPError as exc:
                    return f"{name}: {type(exc).__name__}"
                if ready.status_code != 200:
                    return f"{name}: readyz {ready.status_code} {ready.text[:200]}"
                if view.status_code != 200:
                    return f"{name}: /cluster {view.status_code}"
                members = {m["instanceId"] for m in view.json()["members"]}
                if members != expected:
                    return f"{name}: sees {sorted(members)}"
            return ""

        with trio.move_on_after(timeout):
            while why := await is_whole():  # noqa: ASYNC110 - polling other processes
                await trio.sleep(0.1)
        return trio.current_time() - began, why

    async def leader(self) -> str:
        """The instance the cluster names as leader now."""
        while True:
            status = await self.cluster.status(sorted(self.cluster.alive)[0])
            if status["leader"]:
                return str(status["leader"]["instanceId"])
            await trio.sleep(0.1)

    async def _fault(self, kind: str, name: str, target: str,
                     inject: Callable[[], Awaitable[None]]) -> None:
        before = self.ledger.answers_503
        reasons_before = Counter(self.ledger.reasons_503)
        at = self.now()
        self.say(f"[{at:6.1f} s] {name} ({target})")
        await inject()
        lasted = self.now() - at
        recovered, why = await self.whole()
        if why:
            self.say(f"[{self.now():6.1f} s] not whole {recovered:.0f} s after: {why}")
        self.faults.append(Fault(kind, name, target, round(at, 2), round(lasted, 2),
                                 round(recovered, 2), self.ledger.answers_503 - before,
                                 dict(self.ledger.reasons_503 - reasons_before), why))

    async def faults_in_turn(self) -> None:
        """Every fault of the plan, one after the other, the cluster whole before each."""
        plan, cluster = self.plan, self.cluster

        for _ in range(plan.kills):
            victim = self._instance()

            async def kill_and_restart(victim: str = victim) -> None:
                await cluster.kill(victim)
                await trio.sleep(plan.restart_after)
                await cluster.restart(victim)

            began = trio.current_time()
            await self._fault("kill", "kill -9, restarted after "
                              f"{plan.restart_after:g} s", victim, kill_and_restart)
            await trio.sleep(max(plan.gap, plan.kill_every - (trio.current_time() - began)))

        leader = await self.leader()

        async def pause_leader() -> None:
            cluster.instances[leader].send_signal(signal.SIGSTOP)
            try:
                await trio.sleep(plan.leader_pause)
            finally:
                cluster.instances[leader].send_signal(signal.SIGCONT)

        await self._fault("leader_pause", f"SIGSTOP of the leader for {plan.leader_pause:g} s",
                          leader, pause_leader)
        await trio.sleep(plan.gap)

        async def restart_redis() -> None:
            await cluster.redis.stop()
            await cluster.redis.start()

        await self._fault("redis_restart", "Redis restarted (its keys lost)", "redis",
                          restart_redis)
        await trio.sleep(plan.gap)

        async def pause_redis() -> None:
            pid = cluster.redis.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                await trio.sleep(plan.redis_pause)
            finally:
                os.kill(pid, signal.SIGCONT)

        await self._fault("redis_pause", f"Redis paused (SIGSTOP) for {plan.redis_pause:g} s",
                          "redis", pause_redis)
        await trio.sleep(plan.gap)

        async def restart_postgres() -> None:
            await trio.to_thread.run_sync(self.postgres.restart)

        await self._fault("postgres_restart", "PostgreSQL restarted (immediate stop)", "postgres",
                          restart_postgres)
        await trio.sleep(plan.gap)

        cut = await self.leader()

        async def partition() -> None:
            self.proxies[cut].blackhole()
            try:
                await trio.sleep(plan.partition)
            finally:
                self.proxies[cut].heal()

        await self._fault("partition",
                          f"leader cut from Redis (blackhole) for {plan.partition:g} s",
                          cut, partition)
        await trio.sleep(plan.tail)

    async def prepare(self) -> None:
        """Agents connected, chats uncapped, the first conversations open."""
        await self._bot("PUT settings", "PUT", "/organizations/o1/livechat-settings",
                        {"maxConcurrentChats": 1000}, (200,), token_scope="supervisor")
        for agent in self.agents:
            await agent.socket(30.0)
        while len(self.conversations) < self.plan.conversations:
            await self.open_conversation()

    async def run(self) -> None:
        """Prepare, then load and faults; the load stops after the last fault."""
        async with trio.open_nursery() as background:
            for agent in self.agents:
                background.start_soon(agent.keep_connected)
                background.start_soon(agent.resume_gaps)
                for _ in range(4):
                    background.start_soon(agent.answer_all)
            background.start_soon(self.watch_leaders)
            await self.prepare()
            await self.whole()
            self.say(f"{len(self.conversations)} conversations, {len(self.agents)} agents; "
                     f"load {self.plan.rate:g} pairs/s")
            self.started = self.ledger.clock_zero = trio.current_time()
            cpu_at_start = cpu_seconds()
            stop = trio.Event()
            async with trio.open_nursery() as load:
                load.start_soon(self.bot_load, stop)
                load.start_soon(self.request_load, stop)
                await self.faults_in_turn()
                stop.set()
            self.load_seconds = self.now()
            cpu_at_end = cpu_seconds()
            self.cpu = (cpu_at_end[0] - cpu_at_start[0], cpu_at_end[1] - cpu_at_start[1])
            self.say(f"[{self.load_seconds:6.1f} s] load stopped; settling")
            await self.settle()
            background.cancel_scope.cancel()

    def _unanswered(self) -> list[str]:
        return [bot_id for bot_id, ack in self.ledger.user_acked.items()
                if f"ans-{ack.message_id}" not in self.ledger.agent_acked]

    def _undelivered(self) -> list[str]:
        at_bot = delivered_message_ids(self.cluster)
        return [a.message_id for a in self.ledger.agent_acked.values()
                if a.message_id not in at_bot]

    async def settle(self) -> None:
        """Wait for the answers and the bot deliveries still on their way, for as long as
        they keep arriving: until none is left, or none arrived for ``settle_timeout``,
        or ``settle_limit`` passed. The agents RESUME meanwhile, so a frame lost in a
        move is sent again. Records how long it took and whether it drained."""
        started = last_progress = trio.current_time()
        left = len(self._unanswered()) + len(self._undelivered())
        with trio.move_on_after(self.plan.settle_limit):
            while left:
                if trio.current_time() - last_progress > self.plan.settle_timeout:
                    break
                for agent in self.agents:
                    await agent.resume()
                await trio.sleep(1.0)
                now_left = len(self._unanswered()) + len(self._undelivered())
                if now_left < left:
                    last_progress = trio.current_time()
                left = now_left
        self.settle_seconds = trio.current_time() - started
        self.settle_drained = not left
        self.say(f"settled in {self.settle_seconds:.1f} s; "
                 f"{left or 'nothing'} still on its way")


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far: the machine's busy time over all cores (``/proc/stat``: all but
    idle and iowait), and this process's own (user + system, its threads included)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    own = os.times()
    return busy / ticks, own.user + own.system


def delivered_message_ids(cluster: Cluster) -> set[str]:
    """``messageId`` of every MESSAGE event the bot answered 2xx."""
    return {r.event["data"].get("messageId") for r in cluster.bot.received
            if r.status < 300 and r.event.get("type") == "MESSAGE"}


async def transcript(run: ChaosRun, conversation_id: str) -> list[dict[str, Any]]:
    """A conversation's transcript through any instance that answers."""
    response = await run._bot("transcript", "GET", "/organizations/o1/livechat-messages"
                              f"?conversationId={conversation_id}", None, (200,),
                              token_scope="supervisor")
    assert response is not None, f"no transcript of {conversation_id}"
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def detail(run: ChaosRun, conversation_id: str) -> dict[str, Any]:
    """A conversation's detail (participants, acceptedBy)."""
    response = await run._bot("detail", "GET",
                              f"/organizations/o1/livechat-conversations/{conversation_id}",
                              None, (200,), token_scope="supervisor")
    assert response is not None, f"no detail of {conversation_id}"
    body: dict[str, Any] = response.json()
    return body


async def account(run: ChaosRun) -> dict[str, Any]:
    """Check every promise against the store and the bot; what was lost, by kind."""
    ledger = run.ledger
    lost: dict[str, list[str]] = {key: [] for key in (
        "user message 202 not in transcript", "agent message ack not in transcript",
        "seq gap or duplicate in a transcript", "message stored twice",
        "user message 202 never reached its agent", "agent message ack never reached the bot",
        "duplicated at the bot (two Idempotency-Keys)", "out of seq order at the bot",
        "request accepted by two agents", "stored agent differs from the acked one",
        "term named with two leaders", "5xx other than 503, or internal frame",
        "caller never answered 2xx", "cluster not whole again within 60 s")}
    by_conversation: dict[str, list[Ack]] = defaultdict(list)
    for ack in [*ledger.user_acked.values(), *ledger.agent_acked.values()]:
        by_conversation[ack.conversation_id].append(ack)
    for conversation in run.conversations:
        by_conversation.setdefault(conversation.conversation_id, [])
    user_ids = {a.message_id for a in ledger.user_acked.values()}
    for conversation_id, acks in sorted(by_conversation.items()):
        items = await transcript(run, conversation_id)
        seqs = [m["seq"] for m in items]
        if seqs != list(range(1, len(seqs) + 1)):
            lost["seq gap or duplicate in a transcript"].append(f"{conversation_id}: {seqs}")
        at_seq = {m["seq"]: m["messageId"] for m in items}
        ids = Counter(m["messageId"] for m in items)
        lost["message stored twice"] += [f"{conversation_id}: {m}" for m, n in ids.items()
                                         if n > 1]
        for ack in acks:
            if at_seq.get(ack.seq) != ack.message_id:
                kind = "user message 202" if ack.message_id in user_ids else \
                    "agent message ack"
                lost[f"{kind} not in transcript"].append(
                    f"{conversation_id} seq {ack.seq}: {ack.message_id}")
    lost["user message 202 never reached its agent"] = run._unanswered()
    lost["agent message ack never reached the bot"] = run._undelivered()
    keys_of: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[int]] = defaultdict(list)
    first: set[str] = set()
    redelivered = 0
    for received in run.cluster.bot.received:
        if received.status >= 300:
            continue
        event = received.event
        if received.event_id in first:
            redelivered += 1
            continue
        first.add(received.event_id)
        if event.get("conversationId"):
            order[event["conversationId"]].append(event["seq"])
        if event["type"] == "MESSAGE":
            keys_of[event["data"]["messageId"]].add(received.event_id)
    lost["duplicated at the bot (two Idempotency-Keys)"] = [
        f"{m}: {sorted(k)}" for m, k in keys_of.items() if len(k) > 1]
    lost["out of seq order at the bot"] = [
        f"{c}: {s}" for c, s in order.items() if s != sorted(set(s))]
    lost["request accepted by two agents"] = [
        f"{r}: {sorted(a)}" for r, a in ledger.accepted_by.items() if len(a) > 1]
    for conversation in run.conversations:
        body = await detail(run, conversation.conversation_id)
        agents = {p["id"] for p in body["participants"]
                  if p.get("role", "agent") == "agent"}
        if agents != {conversation.agent} or body.get("acceptedBy") != conversation.agent:
            lost["stored agent differs from the acked one"].append(
                f"{conversation.conversation_id}: acked {conversation.agent}, stored "
                f"{sorted(agents)} acceptedBy {body.get('acceptedBy')}")
    lost["term named with two leaders"] = [
        f"term {t}: {sorted(h)}" for t, h in ledger.leaders.items() if len(h) > 1]
    lost["5xx other than 503, or internal frame"] = list(ledger.server_errors)
    lost["caller never answered 2xx"] = list(ledger.failures)
    lost["cluster not whole again within 60 s"] = [
        f"{f.name}: {f.not_whole}" for f in run.faults if f.not_whole]
    return {
        "plan": asdict(run.plan),
        "load_seconds": round(run.load_seconds, 1),
        "settle_seconds": round(run.settle_seconds, 1),
        "settle_drained": run.settle_drained,
        "conversations": len(by_conversation),
        "user_messages_acked": len(ledger.user_acked),
        "agent_messages_acked": len(ledger.agent_acked),
        "pairs_per_second": round(len(ledger.agent_acked) / run.load_seconds, 1)
        if run.load_seconds else 0.0,
        "requests_accepted": sum(1 for a in ledger.accepted_by.values() if a),
        "faults": [asdict(f) for f in run.faults],
        "lost": {kind: len(items) for kind, items in lost.items()},
        "lost_items": {kind: items[:20] for kind, items in lost.items() if items},
        "answers": dict(sorted(ledger.answers.items())),
        "answers_503": ledger.answers_503,
        "reasons_503": dict(ledger.reasons_503),
        "redelivered_at_bot": redelivered,
        "refused_participants": len(ledger.refused_participants),
        "refused_participants_items": ledger.refused_participants[:10],
        "leader_terms_seen": sorted(ledger.leaders),
        "agent_reconnects": sum(a.reconnects for a in run.agents),
        "longest_call_seconds": round(ledger.longest_call, 2),
        "longest_call_what": ledger.longest_call_what,
        "longest_call_at": round(ledger.longest_call_at, 1),
        "longest_until_ack_seconds": round(ledger.longest_until_ack, 2),
        "cpu_cores": os.cpu_count(),
        "machine_cpu_busy_seconds": round(run.cpu[0], 1),
        "driver_cpu_seconds": round(run.cpu[1], 1),
    }


def table(result: dict[str, Any]) -> str:
    """The faults injected and what was lost, as text tables."""
    lines = ["", "| # | fault | target | at s | lasted s | whole again after s | 503s |",
             "|---|---|---|---|---|---|---|"]
    for number, fault in enumerate(result["faults"], 1):
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(fault["reasons_503"].items()))
        lines.append(f"| {number} | {fault['name']} | {fault['target']} | {fault['at']:.1f} "
                     f"| {fault['lasted']:.1f} | {fault['recovered_in']:.1f} "
                     f"| {fault['answers_503']}{f' ({reasons})' if reasons else ''} |")
    lines += ["", "| check | lost |", "|---|---|"]
    lines += [f"| {kind} | {count} |" for kind, count in result["lost"].items()]
    lines += ["", f"{result['user_messages_acked']} user messages answered 202 and "
              f"{result['agent_messages_acked']} agent messages acked in "
              f"{result['load_seconds']} s ({result['pairs_per_second']} pairs/s) over "
              f"{result['conversations']} conversations; {result['requests_accepted']} "
              f"requests accepted; {result['answers_503']} answers 503; "
              f"{result['redelivered_at_bot']} events redelivered to the bot under the same "
              f"Idempotency-Key; {result['agent_reconnects']} agent reconnects; "
              f"{result['refused_participants']} agent messages refused as not in the "
              "conversation after an acked accept (resent)",
              f"longest a caller waited: {result['longest_call_seconds']} s for one call "
              f"({result['longest_call_what']}, answered at {result['longest_call_at']} s), "
              f"{result['longest_until_ack_seconds']} s from first attempt to 2xx/ack",
              f"CPU during the load: the machine ({result['cpu_cores']} cores) was busy "
              f"{result['machine_cpu_busy_seconds']} s of {result['load_seconds']} s, this "
              f"driver used {result['driver_cpu_seconds']} s of it"]
    for kind, items in result["lost_items"].items():
        lines.append(f"{kind}: {items[:5]}")
    return "\n".join(lines)


@asynccontextmanager
async def chaos_cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, PrivatePostgres,
                                                               dict[str, TcpProxy]]]:
    """Three instances on a private PostgreSQL and a private Redis, each reaching Redis
    through a proxy of its own."""
    proxies: dict[str, TcpProxy] = {}
    async with trio.open_nursery() as nursery:

        async def through_proxy(redis: RedisServer, name: str) -> str:
            proxy = TcpProxy(redis.port)
            await nursery.start(proxy.run)
            proxies[name] = proxy
            return f"redis://127.0.0.1:{proxy.port}/0"

        with PrivatePostgres() as postgres:
            async with running_cluster(tmp_path, store_url=postgres.url,
                                       redis_link=through_proxy) as cluster:
                yield cluster, postgres, proxies
        nursery.cancel_scope.cancel()


def _copy_logs(cluster: Cluster, postgres: PrivatePostgres, logs: Path) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    for process in cluster.instances.values():
        shutil.copy(process.log_path, logs / process.log_path.name)
    shutil.copy(postgres.root / "server.log", logs / "postgres.log")


async def chaos(plan: ChaosPlan, tmp_path: Path, *, say: Callable[[str], None] = print,
                json_path: Path | None = None, logs: Path | None = None) -> dict[str, Any]:
    """One full chaos run; its result (see :func:`account`), also written to
    ``json_path``; the instances' logs copied into ``logs`` (even when the run fails)."""
    async with chaos_cluster(tmp_path) as (cluster, postgres, proxies):
        run = ChaosRun(plan, cluster, postgres, proxies, say)
        try:
            await run.run()
            result = await account(run)
        finally:
            if logs is not None:
                await trio.to_thread.run_sync(_copy_logs, cluster, postgres, logs)
    result["lease_ms"] = LEASE_MS
    if json_path is not None:
        await trio.Path(json_path).write_text(json.dumps(result, indent=2))
    return result
