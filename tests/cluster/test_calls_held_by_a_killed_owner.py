"""Calls that an owner holds when it is killed (sent to it, not yet answered) are served by
the survivors, within two leases and a second: the caller never sees the death.

To hold calls deterministically the owner is first paused (SIGSTOP, for less than a
lease: it stays a member and keeps its subscriptions, so calls are published to it and
wait), then killed (kill -9): Redis drops its subscriptions at once, its membership
record only at lease expiry.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest
import trio
from cluster_env import LEASE_MS, running_cluster, token
from support.agent_client import agent_connection
from support.postgres import scratch_schema

pytestmark = pytest.mark.slow

SETTLE_SECONDS = 2 * LEASE_MS / 1000 + 1.0
"""The bound a caller may wait while an owner's keys are placed again."""
HOLD_SECONDS = 0.4
"""How long the calls wait on the paused owner before it is killed (under a lease)."""


def conversations_of(store_url: str) -> dict[str, str]:
    """subHandle -> conversation id of every stored conversation."""
    with psycopg.connect(store_url) as conn:
        rows = conn.execute("SELECT sub_handle, id FROM conversations").fetchall()
    return {str(sub): str(conversation) for sub, conversation in rows}


async def test_messages_held_by_a_killed_owner_are_accepted_by_the_survivors(
        tmp_path: Path) -> None:
    """13 open requests; their owner is paused, one POST /messages per request of it goes
    through the survivors (the calls are published to the owner and wait), the owner is
    killed: every POST is answered 202, within the bound after the kill, and stored once."""
    with scratch_schema() as store_url:
        async with running_cluster(tmp_path, store_url=store_url) as cluster:
            subs = [f"held-{index}" for index in range(13)]
            for sub in subs:
                await cluster.create_request("a", sub)
            conversations = await trio.to_thread.run_sync(conversations_of, store_url)
            owners = {sub: cluster.owner("conversation", conversations[sub]) for sub in subs}
            victim = max(sorted(cluster.alive), key=list(owners.values()).count)
            held = [sub for sub in subs if owners[sub] == victim]
            assert held
            survivors = sorted(cluster.alive - {victim})
            answers: dict[str, tuple[int, str, float]] = {}
            killed_at: list[float] = []

            async def post(index: int, sub: str) -> None:
                response = await cluster.post_message(survivors[index % 2], sub,
                                                      f"m-{sub}", "hi")
                answers[sub] = (response.status_code, response.text, trio.current_time())

            with trio.fail_after(HOLD_SECONDS + SETTLE_SECONDS + 10):
                async with trio.open_nursery() as nursery:
                    cluster.instances[victim].send_signal(signal.SIGSTOP)
                    for index, sub in enumerate(held):
                        nursery.start_soon(post, index, sub)
                    await trio.sleep(HOLD_SECONDS)
                    await cluster.kill(victim)
                    killed_at.append(trio.current_time())
            assert {sub: (status, text) for sub, (status, text, _) in answers.items()
                    if status != 202} == {}
            waited = max(at for _, _, at in answers.values()) - killed_at[0]
            assert waited <= SETTLE_SECONDS, waited
            for sub in held:
                transcript = await cluster.transcript(survivors[0], conversations[sub])
                assert [m["text"] for m in transcript if m.get("text") == "hi"] == ["hi"]


async def test_an_agent_connecting_while_its_session_owner_dies_is_granted(
        tmp_path: Path) -> None:
    """An agent connects to a survivor while its session's owner is paused (the connect
    is held there), then the owner is killed: the socket is granted within the bound,
    never closed."""
    async with running_cluster(tmp_path) as cluster:
        alice = token("alice", "agent", groups=["g1"], name="Alice")
        session_owner = cluster.owner("agent_session", "o1/alice")
        survivor = sorted(cluster.alive - {session_owner})[0]
        frames: list[dict[str, object]] = []
        granted_at: list[float] = []

        async def connect() -> None:
            async with agent_connection(cluster.url(survivor), alice) as client:
                frames.append(client.frames[0])
                granted_at.append(trio.current_time())

        with trio.fail_after(HOLD_SECONDS + SETTLE_SECONDS + 10):
            async with trio.open_nursery() as nursery:
                cluster.instances[session_owner].send_signal(signal.SIGSTOP)
                nursery.start_soon(connect)
                await trio.sleep(HOLD_SECONDS)
                await cluster.kill(session_owner)
                killed_at = trio.current_time()
        assert frames, "never granted"
        assert frames[0].get("event") == "AUTHORIZATION_GRANTED", frames
        assert granted_at[0] - killed_at <= SETTLE_SECONDS, granted_at[0] - killed_at
