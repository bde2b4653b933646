"""Cluster figures: cross-instance relay latency, leader failover, conversation takeover.

Starts a private redis-server, a scratch PostgreSQL schema, a fake bot and three real
``lcx serve`` instances (the same set-up as tests/cluster), then measures:

- relay latency: a bot message POSTed to instance A, for a conversation owned by C, until
  the agent's socket on B receives it; p50 / p99 at a steady rate;
- leader failover: kill -9 of the leader until a survivor reports a new leader;
- takeover: kill -9 of a conversation's owner until a message to it is accepted again.

Run: ``.venv/bin/python scripts/bench_cluster.py [--rate 50] [--seconds 10]``
(needs redis-server and PostgreSQL as for the test suite).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "cluster")]

from cluster_env import Cluster, running_cluster, token  # noqa: E402
from support.agent_client import AgentClient, agent_connection  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def conversation_on(cluster: Cluster, agent: AgentClient, owner: str,
                          prefix: str) -> tuple[str, str]:
    """A conversation accepted by ``agent`` and owned by ``owner``: (subHandle, id)."""
    for attempt in range(60):
        sub = f"{prefix}-{attempt}"
        created = await cluster.create_request("a", sub)
        ack = await agent.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = ack["data"]["conversationId"]
        if cluster.owner("conversation", conversation_id) == owner:
            return sub, conversation_id
        await agent.call("CONVERSATION_END", {"conversationId": conversation_id})
    raise RuntimeError(f"no conversation landed on {owner}")


async def relay_latency(cluster: Cluster, rate: float, seconds: float) -> list[float]:
    """Milliseconds from POSTing a message on A until the agent's socket on B has it
    (owner C), one message at a time at ``rate`` a second."""
    alice = token("alice2", "agent", groups=["g1"], name="Alice")
    samples: list[float] = []
    async with agent_connection(cluster.url("b"), alice) as agent:
        sub, _ = await conversation_on(cluster, agent, "c", "relay")
        for index in range(int(rate * seconds)):
            began = time.perf_counter()
            mark = len(agent.frames)
            text = f"timed {index}"
            response = await cluster.post_message("a", sub, f"t{index}", text)
            assert response.status_code == 202, response.text
            await agent.wait_for(lambda f, t=text: f["type"] == "message"
                                 and f["data"]["text"] == t, start=mark)
            samples.append((time.perf_counter() - began) * 1000)
            await trio.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
    return samples


async def leader_failover(cluster: Cluster) -> float:
    """Seconds from kill -9 of the leader until a survivor names another leader."""
    leader = (await cluster.status("a"))["leader"]["instanceId"]
    began = time.perf_counter()
    await cluster.kill(leader)
    survivor = sorted(cluster.alive)[0]
    while True:
        view = (await cluster.status(survivor))["leader"]
        if view and view["instanceId"] != leader:
            return time.perf_counter() - began
        await trio.sleep(0.02)


async def takeover(cluster: Cluster) -> float:
    """Seconds from kill -9 of a conversation's owner until a message to it is accepted."""
    owner = sorted(cluster.alive)[-1]
    entry = sorted(cluster.alive - {owner})[0]
    alice = token("alice3", "agent", groups=["g1"], name="Alice")
    async with agent_connection(cluster.url(entry), alice) as agent:
        sub, _ = await conversation_on(cluster, agent, owner, "takeover")
    began = time.perf_counter()
    await cluster.kill(owner)
    index = 0
    while True:
        index += 1
        response = await cluster.post_message(entry, sub, f"k{index}", "after the kill")
        if response.status_code == 202:
            return time.perf_counter() - began
        await trio.sleep(0.02)


async def main(rate: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_cluster(Path(tmp) / "relay") as cluster:
            samples = await relay_latency(cluster, rate, seconds)
            print(f"relay latency A -> owner C -> agent on B over {len(samples)} messages at "
                  f"{rate:g}/s: p50 {percentile(samples, 0.5):.1f} ms, "
                  f"p99 {percentile(samples, 0.99):.1f} ms, "
                  f"mean {statistics.mean(samples):.1f} ms")
            took = await takeover(cluster)
            print(f"conversation takeover after kill -9 of its owner: {took:.2f} s")
        async with running_cluster(Path(tmp) / "leader") as cluster:
            failover = await leader_failover(cluster)
            print(f"leader failover after kill -9: {failover:.2f} s "
                  f"(lease {1.2:g} s, heartbeat 0.2 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    arguments = parser.parse_args()
    trio.run(main, arguments.rate, arguments.seconds)
