"""Tenant pollers run on exactly one instance (the leader); kill -9 of it and the new leader
resumes from the stored cursor: no agent message lost, none delivered twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cluster_env import Cluster, running_cluster
from fakes.zendesk import FakeSunshine, open_fake_sunshine
from support.waiting import eventually, eventually_async

pytestmark = pytest.mark.slow


def zendesk_tenant(sunshine: FakeSunshine, bot_url: str) -> str:
    config = sunshine.config()
    return f"""
[[tenants]]
id = "z1"
organization_id = "o1"
provider = "zendesk"
default_user_group = "support"
bot_events_url = "{bot_url}"

[tenants.zendesk]
api_url = "{config.api_url}"
app_id = "{config.app_id}"
key_id = "{config.key_id}"
key_secret = "{config.key_secret}"
webhook_api_key = "{config.webhook_api_key}"
poll_interval_seconds = 0.2
"""


def messages(cluster: Cluster) -> list[str]:
    """Agent messages the bot accepted, first receipt of each event id."""
    seen: set[str] = set()
    texts = []
    for received in cluster.bot.received:
        event = received.event
        if received.status < 300 and event["type"] == "MESSAGE" and event["id"] not in seen:
            seen.add(event["id"])
            texts.append(event["data"]["text"])
    return texts


async def test_poller_resumes_on_the_new_leader(tmp_path: Path) -> None:
    """Messages before, during and after kill -9 of the polling leader reach the bot once
    each, in order; only the leader polls."""
    async with open_fake_sunshine() as sunshine, running_cluster(
            tmp_path, names=("a", "b"),
            extra=lambda bot_url: zendesk_tenant(sunshine, bot_url)) as cluster:
        response = await cluster.bot_post("a", "/requests", {"tenantId": "z1",
                                                            "subHandle": "u-poll"})
        assert response.status_code == 201, response.text
        await eventually(lambda: len(sunshine.conversations) == 1, timeout=10)
        conversation = next(iter(sunshine.conversations))
        sunshine.agent_says(conversation, "one")
        sunshine.agent_says(conversation, "two")
        await eventually(lambda: messages(cluster) == ["one", "two"], timeout=10)
        leader = (await cluster.status("a"))["leader"]["instanceId"]
        await cluster.kill(leader)
        sunshine.agent_says(conversation, "three")
        survivor = next(iter(cluster.alive))

        async def new_leader() -> Any:
            view = (await cluster.status(survivor))["leader"]
            return view if view and view["instanceId"] == survivor else None

        await eventually_async(new_leader, timeout=2 * 1.2 + 2)
        sunshine.agent_says(conversation, "four")
        await eventually(lambda: len(messages(cluster)) >= 4, timeout=10)
        assert messages(cluster) == ["one", "two", "three", "four"]
