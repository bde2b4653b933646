"""The supervisors' live overview (API.md section 6): figures, scopes, and the push."""

from __future__ import annotations

from pathlib import Path

import trio
from support.livechat_app import accept, connect_agent, livechat_app
from support.waiting import eventually


async def test_overview_counts_queues_and_agents(tmp_path: Path) -> None:
    """Waiting and active per group, agents online/away with their load."""
    async with livechat_app(tmp_path) as (client, tokens, hub):
        await connect_agent(hub, "alice", groups=("g1",), name="Alice")
        await connect_agent(hub, "bob", groups=("g1", "g2"))
        for handle in ("u-1", "u-2"):
            created = await client.post("/requests", headers=tokens.bot(), json={
                "tenantId": "t1", "subHandle": handle})
            assert created.status_code == 201
        pending = await client.get("/organizations/o1/livechat-requests?status=pending",
                                   headers=tokens.supervisor())
        first = pending.json()["items"][-1]
        conversation = await hub.store.read(
            lambda tx: tx.fetchone("SELECT id FROM conversations WHERE request_id = ?",
                                   (first["id"],)))
        assert conversation is not None
        await accept(hub, conversation["id"], "alice", name="Alice")

        answer = await client.get("/organizations/o1/livechat-overview",
                                  headers=tokens.supervisor())
        assert answer.status_code == 200, answer.text
        overview = answer.json()
        assert overview["queues"] == [
            {"userGroupId": "g1", "waiting": 1, "longestWaitSeconds": overview["queues"][0][
                "longestWaitSeconds"], "agentsOnline": 2, "agentsAway": 0,
             "activeConversations": 1},
            {"userGroupId": "g2", "waiting": 0, "longestWaitSeconds": 0, "agentsOnline": 1,
             "agentsAway": 0, "activeConversations": 0}]
        assert 0 <= overview["queues"][0]["longestWaitSeconds"] <= 5
        agents = {a["id"]: a for a in overview["agents"]}
        assert (agents["alice"]["activeChats"], agents["alice"]["maxChats"]) == (1, 3)
        assert agents["alice"]["name"] == "Alice"
        assert agents["bob"]["groups"] == ["g1", "g2"]
        assert agents["alice"]["connectedSince"] is not None


async def test_overview_needs_a_supervisor_of_the_org(tmp_path: Path) -> None:
    async with livechat_app(tmp_path) as (client, tokens, _hub):
        path = "/organizations/o1/livechat-overview"
        assert (await client.get(path, headers=tokens.agent())).status_code == 403
        assert (await client.get(path, headers=tokens.supervisor(org="o2"))).status_code == 403
        assert (await client.get(path)).status_code == 401
        empty = await client.get(path, headers=tokens.service())
        assert (empty.json()["queues"], empty.json()["agents"]) == ([], [])


async def test_push_sends_at_once_and_on_change_only(tmp_path: Path) -> None:
    """push_overview sends the first overview, then only when a figure changed."""
    from services.overview_feed import feed_for, push_overview

    async with livechat_app(tmp_path) as (_client, _tokens, hub):
        sent: list[dict[str, object]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push_overview, feed_for(hub), "o1", sent.append)
            await eventually(lambda: sent)
            await trio.sleep(1.5)  # nothing changed: nothing more is sent
            assert len(sent) == 1
            await connect_agent(hub, "carol")
            await eventually(lambda: len(sent) >= 2)
            nursery.cancel_scope.cancel()
        assert sent[0]["data"] == {"kind": "overview", "queues": [], "agents": [],  # type: ignore[comparison-overlap]
                                   "at": sent[0]["data"]["at"]}  # type: ignore[index]
        last = sent[-1]["data"]
        assert [a["id"] for a in last["agents"]] == ["carol"]  # type: ignore[index]
