"""An instance that was paused (or cut off) longer than a lease comes back owning the
conversations it owned before; meanwhile another instance owned them and wrote to them.
What it held in memory is then stale: it must serve from the store, not from memory."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from cluster_env import Cluster, running_cluster, token
from support.agent_client import AgentClient, agent_connection
from support.postgres import scratch_schema

pytestmark = pytest.mark.slow

VICTIM = "a"
"""The instance paused while a request it owns is accepted elsewhere."""
AGENT_HOME = "b"
"""Where the agent's socket lives (never paused)."""


@asynccontextmanager
async def cluster_on_schema(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    """The three-instance cluster, and the URL of its store (to look ids up)."""
    with scratch_schema() as store_url:
        async with running_cluster(tmp_path, store_url=store_url) as cluster:
            yield cluster, store_url


def conversation_of(store_url: str, request_id: str) -> str:
    """The conversation id reserved for a request (shown to the bot only once accepted)."""
    with psycopg.connect(store_url) as conn:
        row = conn.execute("SELECT id FROM conversations WHERE request_id = %s",
                           (request_id,)).fetchone()
    assert row is not None, request_id
    return str(row[0])


async def request_owned_by(cluster: Cluster, store_url: str, name: str) -> dict[str, Any]:
    """Create requests through ``name`` until one's conversation is owned by ``name``
    (its actor then lives there); that request, with its ``conversationId``."""
    for index in range(60):
        created = await cluster.create_request(name, f"iso-{index}")
        conversation_id = await trio.to_thread.run_sync(conversation_of, store_url,
                                                        created["id"])
        if cluster.owner("conversation", conversation_id) == name:
            return {**created, "conversationId": conversation_id, "subHandle": f"iso-{index}"}
    raise AssertionError(f"no request owned by {name} in 60 tries")


async def until_acked(client: AgentClient, event: str | None, data: dict[str, Any], *,
                      kind: str = "event", timeout: float = 15.0) -> dict[str, Any]:
    """Send a frame again while the cluster answers ``unavailable`` (owners moving); the
    first other answer."""
    with trio.fail_after(timeout):
        while True:
            answer = await client.call(event, data, kind=kind, timeout=timeout)
            if answer["type"] == "ack" or answer["data"].get("code") != "unavailable":
                return answer
            await trio.sleep(0.2)


async def pause(cluster: Cluster, name: str) -> None:
    """SIGSTOP ``name`` and wait until the others no longer count it as a member."""
    cluster.instances[name].send_signal(signal.SIGSTOP)
    cluster.alive.discard(name)
    await cluster.wait_members(set(cluster.alive))


async def resume(cluster: Cluster, name: str) -> None:
    """SIGCONT ``name`` and wait until every instance counts all three again."""
    cluster.instances[name].send_signal(signal.SIGCONT)
    cluster.alive.add(name)
    await cluster.wait_members(set(cluster.alive))


async def test_an_accept_made_while_the_owner_was_paused_holds_when_it_is_back(
        tmp_path: Path) -> None:
    """The owner of a pending request is paused past its lease; an agent accepts the
    request through another instance (acked); the owner resumes and owns the
    conversation again: the agent's messages are acked, not refused as "not in the
    conversation", and its RESUME replays the conversation."""
    async with cluster_on_schema(tmp_path) as (cluster, store_url):
        alice = token("alice", "agent", groups=["g1"], name="Alice")
        async with agent_connection(cluster.url(AGENT_HOME), alice) as agent:
            request = await request_owned_by(cluster, store_url, VICTIM)
            conversation_id = request["conversationId"]
            await pause(cluster, VICTIM)
            try:
                accepted = await until_acked(agent, "REQUEST_ACCEPT",
                                             {"requestId": request["id"]})
            finally:
                await resume(cluster, VICTIM)
            assert accepted["type"] == "ack", accepted
            assert cluster.owner("conversation", conversation_id) == VICTIM

            answer = await until_acked(agent, None, {
                "conversationId": conversation_id, "id": "a-1", "text": "hello"},
                kind="message")
            assert answer["type"] == "ack", answer
            resumed = await until_acked(agent, "RESUME",
                                        {"conversations": {conversation_id: 0}})
            assert resumed["type"] == "ack", resumed
            assert resumed["data"]["conversations"] == {conversation_id: 1}


async def test_a_supervisor_who_joined_while_the_owner_was_paused_gets_its_messages(
        tmp_path: Path) -> None:
    """The owner of an active conversation is paused past its lease; a supervisor joins
    it through another instance; the owner resumes and owns it again: the next user
    message reaches the supervisor's socket at once (the owner rebuilt the conversation
    from the store, it did not go on with the participants it remembered)."""
    async with cluster_on_schema(tmp_path) as (cluster, store_url):
        alice = token("alice", "agent", groups=["g1"], name="Alice")
        sue = token("sue", "supervisor", groups=["g1"], name="Sue")
        async with agent_connection(cluster.url(AGENT_HOME), alice) as agent, \
                agent_connection(cluster.url("c"), sue) as supervisor:
            request = await request_owned_by(cluster, store_url, VICTIM)
            conversation_id = request["conversationId"]
            accepted = await until_acked(agent, "REQUEST_ACCEPT", {"requestId": request["id"]})
            assert accepted["type"] == "ack", accepted
            await pause(cluster, VICTIM)
            try:
                joined = await until_acked(supervisor, "CONVERSATION_JOIN",
                                           {"conversationId": conversation_id})
            finally:
                await resume(cluster, VICTIM)
            assert joined["type"] == "ack", joined
            assert cluster.owner("conversation", conversation_id) == VICTIM

            response = await cluster.post_message(AGENT_HOME, request["subHandle"], "u-1",
                                                  "hello")
            assert response.status_code == 202, response.text
            await supervisor.wait_for(lambda f: f.get("type") == "message"
                                      and f["data"]["messageId"] == response.json()["id"])
            await agent.wait_for(lambda f: f.get("type") == "message"
                                 and f["data"]["messageId"] == response.json()["id"])
