"""Queues and routing through the real server: broadcast, auto, bursts, limits, draining."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack

import trio
from e2e_env import ORG, Env
from support.agent_client import AgentClient, agent_connection
from support.waiting import eventually


async def test_broadcast_first_accept_wins(env: Env) -> None:
    """Every online agent is offered the request; one accept wins, the other gets 409, and
    the agents who did not take it are told it was taken."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice, \
            agent_connection(env.url, env.agent_token("bob")) as bob, \
            agent_connection(env.url, env.agent_token("carol")) as carol:
        created = await env.create_request("u-b1")
        for agent in (alice, bob, carol):
            await agent.notification("request_created", requestId=created["id"])
        answers: dict[str, dict[str, object]] = {}

        async def accept(name: str, agent: AgentClient) -> None:
            answers[name] = await agent.call("REQUEST_ACCEPT", {"requestId": created["id"]})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept, "alice", alice)
            nursery.start_soon(accept, "bob", bob)
        kinds = sorted(str(a["type"]) for a in answers.values())
        assert kinds == ["ack", "event"]
        loser = next(a for a in answers.values() if a["type"] == "event")
        assert loser["data"]["code"] == "conflict"  # type: ignore[index]
        taken = await carol.notification("request_accepted", requestId=created["id"])
        winner = next(name for name, a in answers.items() if a["type"] == "ack")
        assert taken["data"]["agentId"] == winner


async def test_auto_routing_burst_never_double_assigns(env: Env) -> None:
    """50 simultaneous requests with 5 agents of 3 slots: 15 assigned, no request twice, no
    agent over its limit; the rest wait, and a chat that ends frees a slot that is used."""
    await env.put_settings(routing="auto", maxConcurrentChats=3)
    names = ["a1", "a2", "a3", "a4", "a5"]
    async with AsyncExitStack() as stack:
        agents = {name: await stack.enter_async_context(
            agent_connection(env.url, env.agent_token(name))) for name in names}
        created: list[dict[str, object]] = []

        async def create(index: int) -> None:
            created.append(await env.create_request(f"burst-{index}"))

        async with trio.open_nursery() as nursery:
            for index in range(50):
                nursery.start_soon(create, index)
        assert len(created) == 50

        def assignments() -> dict[str, list[str]]:
            return {name: [f["data"]["requestId"] for f in agent.frames
                           if f.get("event") == "NOTIFICATION"
                           and f["data"]["kind"] == "request_assigned"]
                    for name, agent in agents.items()}

        await eventually(lambda: sum(len(v) for v in assignments().values()) >= 15,
                         timeout=10)
        await trio.sleep(0.3)  # anything more would be a bug: give it a chance to show
        given = assignments()
        every = [request for requests in given.values() for request in requests]
        assert len(every) == 15
        assert len(set(every)) == 15
        assert all(len(requests) == 3 for requests in given.values())
        pending = await env.http.head(f"/organizations/{ORG}/requests",
                                      params={"status": "pending"})
        assert pending.headers["x-total-count"] == "35"

        first = next(f for f in agents["a1"].frames if f.get("event") == "NOTIFICATION"
                     and f["data"]["kind"] == "request_assigned")
        ended = await agents["a1"].call("CONVERSATION_END", {
            "conversationId": first["data"]["conversationId"]})
        assert ended["type"] == "ack"
        await eventually(lambda: len(assignments()["a1"]) >= 4, timeout=5)
        counts = Counter(r for requests in assignments().values() for r in requests)
        assert max(counts.values()) == 1


async def test_away_agents_get_no_new_requests(env: Env) -> None:
    """An agent who sets AGENT_STATUS away is not assigned requests until back online."""
    await env.put_settings(routing="auto", maxConcurrentChats=2)
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        away = await alice.call("AGENT_STATUS", {"status": "away"})
        assert away["data"] == {"status": "away"}
        created = await env.create_request("u-away")
        await trio.sleep(0.3)
        assert not [f for f in alice.frames if f.get("event") == "NOTIFICATION"
                    and f["data"]["kind"] == "request_assigned"]
        await alice.call("AGENT_STATUS", {"status": "online"})
        assigned = await alice.notification("request_assigned", requestId=created["id"])
        assert assigned["data"]["conversationId"]
