"""An instance dying is invisible to bots and agents: calls for the actors it owned wait
for their new owner instead of failing, within two leases and a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cluster_env import LEASE_MS, running_cluster, token
from support.agent_client import agent_connection

pytestmark = pytest.mark.slow

SETTLE_SECONDS = 2 * LEASE_MS / 1000 + 1.0
"""The bound a caller may wait while an owner's keys are placed again."""


async def test_messages_to_a_dead_owner_are_accepted_by_the_survivors(tmp_path: Path) -> None:
    """kill -9 of the leader, then at once one POST /messages per open request through the
    survivors: every one is answered 202 on the first try (none 5xx), within the bound."""
    async with running_cluster(tmp_path) as cluster:
        leader = (await cluster.status("a"))["leader"]["instanceId"]
        subs = [f"fo-{index}" for index in range(13)]
        for sub in subs:  # about a third of them are owned by the leader
            await cluster.create_request("a", sub)
        await cluster.kill(leader)
        survivors = sorted(cluster.alive)
        answers: dict[str, tuple[int, float]] = {}

        async def post(index: int, sub: str) -> None:
            began = trio.current_time()
            response = await cluster.post_message(survivors[index % 2], sub, f"m-{sub}", "hi")
            answers[sub] = (response.status_code, trio.current_time() - began)

        with trio.fail_after(SETTLE_SECONDS + 10):
            async with trio.open_nursery() as nursery:
                for index, sub in enumerate(subs):
                    nursery.start_soon(post, index, sub)
        assert {sub: status for sub, (status, _) in answers.items()} == \
            dict.fromkeys(subs, 202)
        assert max(waited for _, waited in answers.values()) <= SETTLE_SECONDS + 1.0


async def test_an_agent_reconnecting_after_its_instance_died_is_granted(tmp_path: Path
                                                                        ) -> None:
    """An agent whose socket was on the killed instance reconnects to a survivor at once
    and is granted on the first try, within the bound (its session is placed again)."""
    async with running_cluster(tmp_path) as cluster:
        alice = token("alice", "agent", groups=["g1"], name="Alice")
        session_owner = cluster.owner("agent_session", "o1/alice")
        async with agent_connection(cluster.url(session_owner), alice) as first:
            assert first.frames[0]["event"] == "AUTHORIZATION_GRANTED"
            await cluster.kill(session_owner)
        survivor = sorted(cluster.alive)[0]
        began = trio.current_time()
        async with agent_connection(cluster.url(survivor), alice) as again:
            granted = again.frames[0]
            assert granted.get("event") == "AUTHORIZATION_GRANTED", granted
            assert trio.current_time() - began <= SETTLE_SECONDS + 1.0
            created = await cluster.create_request(survivor, "after-failover")
            ack = await again.call("REQUEST_ACCEPT", {"requestId": created["id"]},
                                   timeout=SETTLE_SECONDS + 5)
            assert ack["type"] == "ack", ack
