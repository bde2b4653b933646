"""A Genesys link lives on one instance; kill -9 of that instance and the survivor reopens
the stored session: nothing the Genesys agent says is lost or repeated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cluster_env import Cluster, running_cluster, token
from fakes.genesys import FakeGenesys, open_fake_genesys
from support.waiting import eventually, eventually_async

pytestmark = pytest.mark.slow


def genesys_tenant(genesys: FakeGenesys, bot_url: str) -> str:
    """A tenant g1 whose humans are in the fake Genesys."""
    config = genesys.config()
    return f"""
[[tenants]]
id = "g1"
organization_id = "o1"
provider = "genesys"
default_user_group = "support"
bot_events_url = "{bot_url}"

[tenants.genesys]
api_url = "{config.api_url}"
login_url = "{config.login_url}"
client_id = "{config.client_id}"
client_secret = "{config.client_secret}"
organization_id = "{config.organization_id}"
deployment_id = "{config.deployment_id}"
queue_name = "{config.queue_name}"
"""


def delivered(cluster: Cluster, kind: str) -> list[dict[str, Any]]:
    """Events of one type the bot accepted, the first receipt of each id."""
    seen: set[str] = set()
    found = []
    for received in cluster.bot.received:
        event = received.event
        if received.status < 300 and event["type"] == kind and event["id"] not in seen:
            seen.add(event["id"])
            found.append(event)
    return found


async def test_genesys_link_taken_over_after_kill(tmp_path: Path) -> None:
    """Messages before and after kill -9 of the link's instance reach the bot once each,
    in order, and the customer's messages still reach Genesys."""
    async with open_fake_genesys(heartbeat_seconds=1.0) as genesys, \
            running_cluster(tmp_path, names=("a", "b"),
                            extra=lambda bot_url: genesys_tenant(genesys, bot_url)) as cluster:
        response = await cluster.http.post(f"{cluster.url('a')}/requests", json={
            "tenantId": "g1", "subHandle": "u-take"}, headers={
            "Authorization": f"Bearer {token('bot-1', 'bot')}"})
        assert response.status_code == 201, response.text
        await genesys.wait_until(lambda: len(genesys.chats) == 1, timeout=10)
        chat_id = next(iter(genesys.chats))
        await genesys.wait_connected(chat_id, timeout=10)
        genesys.agent_joins(chat_id, name="Gina")
        await eventually(lambda: delivered(cluster, "CONVERSATION_BEGIN"), timeout=10)
        conversation_id = delivered(cluster, "CONVERSATION_BEGIN")[0]["conversationId"]
        genesys.agent_says(chat_id, "before")
        await eventually(lambda: len(delivered(cluster, "MESSAGE")) == 1, timeout=10)
        link_owner = cluster.owner("provider_link", conversation_id)
        await cluster.kill(link_owner)
        genesys.agent_says(chat_id, "after")
        await eventually(lambda: genesys.connections(chat_id) >= 2, timeout=15)
        await eventually(lambda: len(delivered(cluster, "MESSAGE")) == 2, timeout=15)
        survivor = next(iter(cluster.alive))

        async def sent() -> bool:
            response = await cluster.bot_post(survivor, "/messages", {
                "tenantId": "g1", "subHandle": "u-take", "id": "take-1",
                "text": "still there?"})
            assert response.status_code in (202, 503), response.text
            return response.status_code == 202

        await eventually_async(sent, timeout=15, interval=0.2)
        await eventually(lambda: "still there?" in genesys.guest_messages(chat_id), timeout=15)
        assert [e["data"]["text"] for e in delivered(cluster, "MESSAGE")] == [
            "before", "after"]
        assert genesys.guest_messages(chat_id) == ["still there?"]
