"""Three real instances on one Redis and one PostgreSQL behave as one lcx, and losing any of
them loses no acknowledged message and strands no visitor."""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cluster_env import Cluster, running_cluster, settled, token
from support.agent_client import AgentClient, agent_connection
from support.waiting import eventually_async

pytestmark = pytest.mark.slow


async def until_accepted(send: Callable[[], Awaitable[httpx.Response]],
                         timeout: float = 15.0) -> httpx.Response:
    """Send until the cluster answers 2xx (503s are expected while ownership moves)."""
    with trio.fail_after(timeout):
        while True:
            response = await send()
            if response.status_code < 300:
                return response
            assert response.status_code == 503, response.text
            await trio.sleep(0.2)


async def accepted_conversation(cluster: Cluster, agent: AgentClient, via: str, owner: str
                                ) -> tuple[str, str]:
    """Create requests through ``via`` until one's conversation is owned by ``owner``;
    the agent accepts each. (subHandle, conversation id)."""
    for attempt in range(30):
        sub = f"span-{attempt}"
        created = await cluster.create_request(via, sub)
        ack = await agent.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        assert ack["type"] == "ack", ack
        conversation_id = ack["data"]["conversationId"]
        if cluster.owner("conversation", conversation_id) == owner:
            return sub, conversation_id
        await agent.call("CONVERSATION_END", {"conversationId": conversation_id})
    raise AssertionError(f"no conversation landed on {owner}")


def contiguous(seqs: list[int]) -> int:
    """The highest seq n such that 1..n were all received."""
    received, last = set(seqs), 0
    while last + 1 in received:
        last += 1
    return last


def message_seqs(agent: AgentClient, conversation_id: str) -> list[int]:
    return [m["seq"] for m in agent.messages(conversation_id)]


async def test_conversation_spans_instances(tmp_path: Path) -> None:
    """Bot on A, agent on B, conversation owned by C: messages flow both ways in order."""
    async with running_cluster(tmp_path) as cluster:
        alice_token = token("alice", "agent", groups=["g1"], name="Alice")
        async with agent_connection(cluster.url("b"), alice_token) as alice:
            sub, conversation_id = await accepted_conversation(cluster, alice, "a", "c")
            for index in range(5):
                response = await cluster.post_message("a", sub, f"m{index}", f"hello {index}")
                assert response.status_code == 202, response.text
            await settled(lambda: len(alice.messages(conversation_id)) == 5)
            assert message_seqs(alice, conversation_id) == [1, 2, 3, 4, 5]
            reply = await alice.call(None, {"conversationId": conversation_id,
                                            "text": "from b"}, kind="message")
            assert reply["data"]["seq"] == 6
        await settled(lambda: any(e["type"] == "MESSAGE" for e in
                                  cluster.bot.events_for(conversation_id)))
        events = cluster.bot.events_for(conversation_id)
        assert [e["type"] for e in events][-2:] == ["CONVERSATION_BEGIN", "MESSAGE"]
        assert events[-1]["data"]["text"] == "from b"


async def test_owner_killed_mid_conversation_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of the owner: the survivors take the conversation over; every message sent
    before and after reaches the agent in seq order and the bot once, in order."""
    async with running_cluster(tmp_path) as cluster:
        alice_token = token("alice", "agent", groups=["g1"], name="Alice")
        async with agent_connection(cluster.url("b"), alice_token) as alice:
            sub, conversation_id = await accepted_conversation(cluster, alice, "a", "c")
            for index in range(3):
                await until_accepted(lambda i=index: cluster.post_message(
                    "a", sub, f"before-{i}", f"before {i}"))
            await alice.call(None, {"conversationId": conversation_id, "text": "agent 1"},
                             kind="message")
            await cluster.kill("c")
            for index in range(3):
                await until_accepted(lambda i=index: cluster.post_message(
                    "a", sub, f"after-{i}", f"after {i}"))
            reply = await until_agent_ack(alice, conversation_id, "agent 2")
            assert reply["data"]["seq"] == 8
            # frames relayed while the agent's session moved may be lost (the relay is at
            # most once); seq is gap-free, so a client resumes after its last contiguous one
            seen = contiguous(message_seqs(alice, conversation_id))
            resumed = await alice.call("RESUME", {"conversations": {conversation_id: seen}})
            assert resumed["type"] == "ack", resumed
            await settled(lambda: set(message_seqs(alice, conversation_id)) >= set(range(1, 9)))
        transcript = await cluster.transcript("a", conversation_id)
        assert [m["seq"] for m in transcript] == list(range(1, 9))
        await settled(lambda: len(delivered(cluster, conversation_id, "MESSAGE")) == 2)
        assert [e["data"]["text"] for e in delivered(cluster, conversation_id, "MESSAGE")] == [
            "agent 1", "agent 2"]


async def until_agent_ack(agent: AgentClient, conversation_id: str, text: str,
                          timeout: float = 15.0) -> dict[str, Any]:
    """Send an agent message until it is acked (ERROR unavailable while ownership moves)."""
    with trio.fail_after(timeout):
        while True:
            answer = await agent.call(None, {"conversationId": conversation_id, "text": text,
                                             "id": f"agent-{text}"}, kind="message",
                                      timeout=timeout)
            if answer["type"] == "ack":
                return answer
            assert answer["data"]["code"] == "unavailable", answer
            await trio.sleep(0.2)


def delivered(cluster: Cluster, conversation_id: str, kind: str) -> list[dict[str, Any]]:
    """Events of a conversation the bot accepted (2xx), first receipt of each id."""
    seen: set[str] = set()
    events = []
    for received in cluster.bot.received:
        event = received.event
        if received.status < 300 and event.get("conversationId") == conversation_id \
                and event["type"] == kind and event["id"] not in seen:
            seen.add(event["id"])
            events.append(event)
    return events


async def test_leader_killed_new_leader_within_two_leases(tmp_path: Path) -> None:
    """kill -9 of the leader: a survivor leads with a higher term within 2 x lease."""
    async with running_cluster(tmp_path) as cluster:
        status = await cluster.status("a")
        leader, term = status["leader"]["instanceId"], status["leader"]["term"]
        shown = await lcx_status(cluster, "b")
        assert f"leader {leader} (term {term})" in shown
        assert all(f"\n{name} " in shown for name in ("a", "b", "c"))
        await cluster.kill(leader)
        survivor = next(iter(cluster.alive))
        began = trio.current_time()

        async def new_leader() -> dict[str, Any] | None:
            view = (await cluster.status(survivor))["leader"]
            return view if view and view["instanceId"] != leader else None

        view = await eventually_async(new_leader, timeout=2 * 1.2 + 2)
        assert view["term"] > term
        assert trio.current_time() - began <= 2 * 1.2 + 0.5


async def lcx_status(cluster: Cluster, name: str) -> str:
    """What ``lcx status`` prints for instance ``name`` (its own config and URL)."""
    process = cluster.instances[name]
    result = await trio.run_process(
        [sys.executable, "-m", "lcx", "status", "--config", str(process.config_path),
         "--url", process.url], capture_stdout=True, capture_stderr=True,
        cwd=process.workdir, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_sigterm_drains_and_hands_over(tmp_path: Path) -> None:
    """SIGTERM: the instance exits 0, its agent sockets close with 1012, the agent
    reconnects elsewhere, RESUMEs and the conversation carries on."""
    async with running_cluster(tmp_path) as cluster:
        alice_token = token("alice", "agent", groups=["g1"], name="Alice")
        async with agent_connection(cluster.url("c"), alice_token) as alice:
            sub, conversation_id = await accepted_conversation(cluster, alice, "a", "c")
            await cluster.post_message("a", sub, "d-1", "one")
            await settled(lambda: len(alice.messages(conversation_id)) == 1)
            cluster.instances["c"].send_signal(signal.SIGTERM)
            cluster.alive.discard("c")
            await settled(lambda: alice.closed_code is not None)
            assert alice.closed_code == 1012
        assert await trio.to_thread.run_sync(cluster.instances["c"].wait, 15) == 0
        await until_accepted(lambda: cluster.post_message("a", sub, "d-2", "two"))
        async with agent_connection(cluster.url("b"), alice_token) as again:
            resumed = await again.call("RESUME", {"conversations": {conversation_id: 1}})
            assert resumed["type"] == "ack", resumed
            assert [m["text"] for m in again.messages(conversation_id)] == ["two"]


async def test_redis_restart_under_load_recovers(tmp_path: Path) -> None:
    """Redis restarted (all its keys gone): readiness fails meanwhile and comes back by
    itself; requests made before and after are all there."""
    async with running_cluster(tmp_path) as cluster:
        before = [await cluster.create_request(name, f"r-{name}") for name in ("a", "b", "c")]
        await cluster.redis.stop()
        await settled(lambda: True)
        down = await cluster.http.get(f"{cluster.url('a')}/readyz")
        assert down.status_code == 503
        await cluster.redis.start()
        for name in ("a", "b", "c"):
            await settled_ready(cluster, name)
        await cluster.wait_members({"a", "b", "c"})
        after = await until_accepted(lambda: cluster.bot_post(
            "b", "/requests", {"tenantId": "t1", "subHandle": "r-after"}))
        pending = await cluster.http.head(
            f"{cluster.url('c')}/organizations/o1/requests", params={"status": "pending"},
            headers={"Authorization": f"Bearer {token('bot-1', 'bot')}"})
        assert pending.headers["x-total-count"] == "4"
        assert len({r["id"] for r in before} | {after.json()["id"]}) == 4


async def settled_ready(cluster: Cluster, name: str, timeout: float = 15.0) -> None:
    async def ready() -> bool:
        return (await cluster.http.get(f"{cluster.url(name)}/readyz")).status_code == 200

    await eventually_async(ready, timeout=timeout, interval=0.2)


async def test_burst_with_agents_spread_over_instances(tmp_path: Path) -> None:
    """50 simultaneous requests through all instances, 6 agents on different instances,
    auto routing with 3 slots each: 18 assigned, none twice, no agent over its limit."""
    async with running_cluster(tmp_path) as cluster:
        response = await cluster.http.put(
            f"{cluster.url('a')}/organizations/o1/livechat-settings",
            json={"routing": "auto", "maxConcurrentChats": 3},
            headers={"Authorization": f"Bearer {token('sue', 'supervisor')}"})
        assert response.status_code == 200
        names = [f"agent{i}" for i in range(6)]
        async with AsyncExitStackAgents(cluster, names) as agents:
            async with trio.open_nursery() as nursery:
                for index in range(50):
                    nursery.start_soon(cluster.create_request, "abc"[index % 3],
                                       f"burst-{index}")

            def assignments() -> dict[str, list[str]]:
                return {name: [f["data"]["requestId"] for f in agent.frames
                               if f.get("event") == "NOTIFICATION"
                               and f["data"]["kind"] == "request_assigned"]
                        for name, agent in agents.items()}

            await settled(lambda: sum(map(len, assignments().values())) >= 18, timeout=20)
            await trio.sleep(0.5)
            given = assignments()
            every = [r for requests in given.values() for r in requests]
            assert len(every) == 18
            assert len(set(every)) == 18
            assert all(len(requests) == 3 for requests in given.values())


class AsyncExitStackAgents:
    """Connect agents round-robin to the instances for the block."""

    def __init__(self, cluster: Cluster, names: list[str]) -> None:
        from contextlib import AsyncExitStack

        self.cluster = cluster
        self.names = names
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> dict[str, AgentClient]:
        agents = {}
        for index, name in enumerate(self.names):
            url = self.cluster.url("abc"[index % 3])
            agents[name] = await self.stack.enter_async_context(agent_connection(
                url, token(name, "agent", groups=["g1"], name=name)))
        return agents

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()
