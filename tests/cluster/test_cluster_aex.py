"""The AEX-compatible hand-over across a cluster: ``initiate`` on instance a, every
``message`` on b and c (no instance affinity); the humans' answers reach the window's
return endpoint in order, with its token and ReturnContext, retried through an outage; with
lcx's own agents and with Genesys agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cluster_env import Cluster, running_cluster, token
from fakes.aex import FakeReturnEndpoint, open_fake_return_endpoint
from fakes.genesys import FakeGenesys, open_fake_genesys
from support.agent_client import agent_connection
from support.waiting import eventually

pytestmark = pytest.mark.slow

CONTEXT = {"conversationRef": "window-42", "locale": "en-GB"}


def aex_tenants(bot_url: str, genesys: FakeGenesys | None = None) -> str:
    """Tenant x1 (lcx agents of group g1) takes deployment dep-lcx; with ``genesys``,
    tenant x2 (Genesys agents) takes dep-genesys."""
    text = f"""
[[tenants]]
id = "x1"
organization_id = "o1"
channel = "aex"
default_user_group = "g1"
bot_events_url = "{bot_url}"

[tenants.aex]
deployment_id = "dep-lcx"
"""
    if genesys is not None:
        config = genesys.config()
        text += f"""
[[tenants]]
id = "x2"
organization_id = "o1"
channel = "aex"
provider = "genesys"
default_user_group = "support"
bot_events_url = "{bot_url}"

[tenants.aex]
deployment_id = "dep-genesys"

[tenants.genesys]
api_url = "{config.api_url}"
login_url = "{config.login_url}"
client_id = "{config.client_id}"
client_secret = "{config.client_secret}"
organization_id = "{config.organization_id}"
deployment_id = "{config.deployment_id}"
queue_name = "{config.queue_name}"
"""
    return text


async def initiate(cluster: Cluster, name: str, deployment: str,
                   window: FakeReturnEndpoint) -> str:
    response = await cluster.bot_post(name, "/aex/initiate", {
        "hostname": "chat.example.com",
        "initiationParams": {"organizationId": "org-x", "deploymentId": deployment,
                             "routingTarget": {"targetType": "QUEUE",
                                               "targetAddress": "Support"},
                             "memberInfo": {"displayName": "Ada"}},
        "ReturnContext": CONTEXT,
        "ReturnEndpoints": {"url": window.url, "token": window.token}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["headers"] == {}
    return str(body["id"])


async def say(cluster: Cluster, name: str, conversation_id: str, text: str) -> None:
    response = await cluster.bot_post(name, "/aex/message", {"id": conversation_id,
                                                             "msg": text})
    assert response.status_code == 200, response.text
    assert response.json() is True


async def test_aex_with_lcx_agents_across_instances(tmp_path: Path) -> None:
    """initiate on a; messages on b and c reach the agent (connected to c); the agent's
    answers (one during a 503 outage of the window) and the end reach the window in
    order, once, with its token and ReturnContext; a message after the end is refused."""
    async with open_fake_return_endpoint() as window, running_cluster(
            tmp_path, names=("a", "b", "c"), extra=aex_tenants) as cluster:
        agent = token("alice", "agent", groups=["g1"], name="Alice")
        async with agent_connection(cluster.url("c"), agent) as alice:
            conversation_id = await initiate(cluster, "a", "dep-lcx", window)
            offer = await alice.notification("request_created", timeout=10)
            accepted = await alice.call("REQUEST_ACCEPT",
                                        {"requestId": offer["data"]["requestId"]})
            assert accepted["data"]["conversationId"] == conversation_id
            await say(cluster, "b", conversation_id, "hello from b")
            await say(cluster, "c", conversation_id, "hello from c")
            await eventually(lambda: len(alice.messages(conversation_id)) == 2, timeout=10)
            assert [m["text"] for m in alice.messages(conversation_id)] == [
                "hello from b", "hello from c"]
            window.fail_next(503, times=2)
            for n in range(3):
                ack = await alice.call(None, {"conversationId": conversation_id,
                                              "text": f"answer {n}"}, kind="message")
                assert ack["type"] == "ack", ack
            await eventually(lambda: len(window.of("message")) == 3, timeout=15)
            end = await alice.call("CONVERSATION_END", {"conversationId": conversation_id})
            assert end["type"] == "ack", end
            await eventually(lambda: window.of("end"), timeout=15)
        assert [b["message"] for b in window.of("message")] == [
            "answer 0", "answer 1", "answer 2"]
        assert all(b["conversationRef"] == "window-42" and b["locale"] == "en-GB"
                   for b in window.received)
        assert window.received[-1]["type"] == "end"
        assert window.refused == 0
        late = await cluster.bot_post("b", "/aex/message", {"id": conversation_id,
                                                            "msg": "still there?"})
        assert late.status_code == 409, late.text
        unknown = await cluster.bot_post("c", "/aex/message", {"id": "nope", "msg": "hi"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["code"] == "not_found"


async def test_aex_with_genesys_agents_across_instances(tmp_path: Path) -> None:
    """The same hand-over in front of Genesys: messages on b and c reach the Genesys
    chat; the Genesys agent's answers reach the window in order."""
    async with open_fake_return_endpoint() as window, \
            open_fake_genesys(heartbeat_seconds=1.0) as genesys, running_cluster(
                tmp_path, names=("a", "b", "c"),
                extra=lambda bot_url: aex_tenants(bot_url, genesys)) as cluster:
        conversation_id = await initiate(cluster, "a", "dep-genesys", window)
        await genesys.wait_until(lambda: len(genesys.chats) == 1, timeout=10)
        chat_id = next(iter(genesys.chats))
        await genesys.wait_connected(chat_id, timeout=10)
        genesys.agent_joins(chat_id, name="Gina")
        await say(cluster, "b", conversation_id, "one from b")
        await say(cluster, "c", conversation_id, "two from c")
        await eventually(lambda: genesys.guest_messages(chat_id) == ["one from b",
                                                                     "two from c"],
                         timeout=15)
        for text in ("first", "second", "third"):
            genesys.agent_says(chat_id, text)
        await eventually(lambda: len(window.of("message")) == 3, timeout=15)
        assert [b["message"] for b in window.of("message")] == ["first", "second", "third"]
        assert all(b["conversationRef"] == "window-42" for b in window.received)
