"""Facebook Messenger customers through a real ``lcx serve``: the subscription handshake,
signed webhooks (forged and replayed ones change nothing), a customer → lcx agent →
customer round trip with typing, the 24 h window (HUMAN_AGENT after it), a rate limit and
an outage of the Send API recovered, and the spam threshold."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from channel_env import ChannelEnv, accepted, answer, channel_env, received, seen
from fakes.messenger import DAY_MS, FakeMessenger, open_fake_messenger, sign
from support.agent_client import agent_connection
from support.waiting import eventually

SPAM_THRESHOLD = 5


Env = ChannelEnv[FakeMessenger]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_fake_messenger() as fake, channel_env(
            tmp_path, fake, tenant="m1", channel="messenger",
            spam_threshold=SPAM_THRESHOLD) as running:
        yield running


async def test_handshake_echoes_the_challenge_or_refuses(env: Env) -> None:
    """hub.verify_token right: 200 with the challenge; wrong: 403; HEAD: 200."""
    ok = await env.http.get("/events/messenger", params={
        "hub.mode": "subscribe", "hub.challenge": "1158201444",
        "hub.verify_token": env.fake.verify_token})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = await env.http.get("/events/messenger", params={
        "hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"
    assert (await env.http.head("/events/messenger")).status_code == 200


async def test_round_trip_with_typing_attachments_and_postbacks(env: Env) -> None:
    """A customer's text, image and quick reply reach the agent; the agent's answer and
    typing reach the customer; our own echo is ignored; the customer's read receipt
    reaches the agent."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        assert (await env.fake.user_says("psid-1", "hello page")).status_code == 200
        conversation_id = await accepted(alice)
        image = env.fake.user_message("psid-1", None, attachments=[
            {"type": "image", "payload": {"url": "https://cdn.example.com/cat.png"}}])
        quick = env.fake.user_message("psid-1", "Yes", quick_reply={"payload": "YES"})
        echo = env.fake.event(env.fake.page_id, message={"mid": "m_echo", "text": "ours",
                                                     "is_echo": True})
        assert (await env.fake.post(env.fake.body(image, quick, echo))).status_code == 200
        await eventually(lambda: len(received(alice, conversation_id)) == 3, timeout=10)
        got = received(alice, conversation_id)
        assert got[0]["text"] == "hello page"
        assert got[1]["attachments"][0]["url"] == "https://cdn.example.com/cat.png"
        assert (got[2]["type"], got[2]["payload"]) == ("postback", {"payload": "YES"})
        typing = await alice.call("CONVERSATION_TYPING", {"conversationId": conversation_id,
                                                          "typing": True})
        assert typing["type"] == "ack", typing
        await answer(alice, conversation_id, "Hi, Alice here")
        await eventually(lambda: env.fake.texts("psid-1") == ["Hi, Alice here"], timeout=10)
        assert env.fake.actions("psid-1") == ["typing_on"]
        assert env.fake.sent[-1]["messaging_type"] == "RESPONSE"
        read = env.fake.event("psid-1", read={"watermark": env.fake.now_ms})
        assert (await env.fake.post(env.fake.body(read))).status_code == 200
        receipt = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_READ",
                                       timeout=10)
        assert receipt["data"]["subscriber"] is True
        assert receipt["data"]["conversationId"] == conversation_id


async def test_forged_and_replayed_webhooks_change_nothing(env: Env) -> None:
    """A wrong secret, a missing header or a re-serialised body is 401 and starts
    nothing; the same signed delivery twice is applied once."""
    body = env.fake.body(env.fake.user_message("psid-2", "héllo"))
    forged = await env.fake.post(body, signature="sha256=" + "0" * 64)
    assert forged.status_code == 401
    # the same JSON re-serialised (other spacing, unescaped unicode) under the signature
    # of the original bytes: refused
    reserialised = json.dumps(json.loads(body), ensure_ascii=False,
                              separators=(",", ":")).encode()
    altered = await env.http.post("/events/messenger", content=reserialised, headers={
        "X-Hub-Signature-256": sign(body, env.fake.app_secret),
        "Content-Type": "application/json"})
    assert altered.status_code == 401
    unsigned = await env.http.post("/events/messenger", content=body,
                                   headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        first = await env.fake.post(body)
        again = await env.fake.post(body)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json()["stored"] == 0
        conversation_id = await accepted(alice)
        await eventually(lambda: seen(alice, conversation_id), timeout=10)
        await trio.sleep(0.5)
        assert seen(alice, conversation_id) == ["héllo"]


async def test_rate_limit_and_outage_are_retried_in_order(env: Env) -> None:
    """Code 613 (rate limited) and 500s from the Send API are retried, through the open
    breaker and its half-open trials, without using up the answers' attempts: every
    answer arrives once, in order; past 24 h the answer goes with the HUMAN_AGENT tag."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        await env.fake.user_says("psid-3", "help")
        conversation_id = await accepted(alice)
        env.fake.fail_next("rate_limit", 2)
        env.fake.fail_next("outage", 4)  # 6 in a row: the breaker opens (at 5)
        for n in range(3):
            await answer(alice, conversation_id, f"answer {n}")
        await eventually(lambda: len(env.fake.texts("psid-3")) == 3, timeout=20)
        assert env.fake.texts("psid-3") == ["answer 0", "answer 1", "answer 2"]
        env.fake.now_ms += DAY_MS + 1
        await answer(alice, conversation_id, "a day later")
        await eventually(lambda: len(env.fake.texts("psid-3")) == 4, timeout=10)
        assert (env.fake.sent[-1]["messaging_type"], env.fake.sent[-1]["tag"]) == (
            "MESSAGE_TAG", "HUMAN_AGENT")


async def test_spam_threshold_drops_and_counts(env: Env) -> None:
    """Past the threshold a sender's messages are dropped before the queue and counted
    in /metrics; another sender is unaffected."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        for n in range(SPAM_THRESHOLD + 3):
            assert (await env.fake.user_says("psid-spam", f"spam {n}")).status_code == 200
        conversation_id = await accepted(alice)
        await eventually(lambda: len(seen(alice, conversation_id)) == SPAM_THRESHOLD,
                         timeout=10)
        await trio.sleep(0.5)
        assert seen(alice, conversation_id) == [f"spam {n}" for n in range(SPAM_THRESHOLD)]
    metrics = (await env.http.get("/metrics")).text
    assert 'lcx_edge_spam_dropped_total{account="messenger:page-1"} 3.0' in metrics
