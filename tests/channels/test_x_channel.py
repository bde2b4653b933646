"""X direct messages through a real ``lcx serve``: the CRC check, signed activity
(forged and replayed deliveries change nothing; our own sends coming back are ignored),
a customer → lcx agent → customer round trip with the customer's typing, a 429 honoured
until ``x-rate-limit-reset``, an outage recovered in order, and the spam threshold."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from channel_env import ChannelEnv, accepted, answer, channel_env, received, seen
from fakes.x import FakeX, open_fake_x, sign
from support.agent_client import agent_connection
from support.waiting import eventually

SPAM_THRESHOLD = 4
GRACE = "7001"


Env = ChannelEnv[FakeX]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_fake_x() as fake, channel_env(
            tmp_path, fake, tenant="x1", channel="x",
            spam_threshold=SPAM_THRESHOLD) as running:
        yield running


async def test_crc_is_answered_quickly(env: Env) -> None:
    """GET ?crc_token: the response token X expects, well within its 3 s."""
    began = trio.current_time()
    answered = await env.http.get("/events/x", params={"crc_token": "challenge-1"})
    assert trio.current_time() - began < 3
    assert answered.status_code == 200
    assert answered.json() == {"response_token": sign(b"challenge-1",
                                                      env.fake.consumer_secret)}
    assert (await env.http.get("/events/x")).status_code == 400


async def test_round_trip_with_typing_and_media(env: Env) -> None:
    """The customer's DM (with a photo) and typing reach the agent; the agent's answer
    goes back as a DM; our own DM echoed by X is ignored."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        body = env.fake.activity(env.fake.dm(GRACE, "hello", media_url="https://pbs.example/1.jpg"))
        assert (await env.fake.post(body)).status_code == 200
        conversation_id = await accepted(alice)
        await eventually(lambda: received(alice, conversation_id), timeout=10)
        (message,) = received(alice, conversation_id)
        assert (message["type"], message["text"]) == ("file", "hello")
        assert message["attachments"][0]["url"] == "https://pbs.example/1.jpg"
        await env.fake.post(env.fake.activity(typing=[GRACE]))
        typing = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_TYPING",
                                      timeout=10)
        assert typing["data"] == {"conversationId": conversation_id, "subscriber": True,
                                  "typing": True}
        await answer(alice, conversation_id, "Hi Grace")
        await eventually(lambda: env.fake.texts(GRACE) == ["Hi Grace"], timeout=10)
        read = json.dumps({"for_user_id": env.fake.user_id, "direct_message_mark_read_events": [
            {"created_timestamp": "1764633600000", "sender_id": GRACE,
             "target": {"recipient_id": env.fake.user_id},
             "last_read_event_id": env.fake.sent[-1]["id"]}]}).encode()
        assert (await env.fake.post(read)).status_code == 200
        receipt = await alice.wait_for(lambda f: f.get("event") == "CONVERSATION_READ",
                                       timeout=10)
        assert receipt["data"]["at"] == "2025-12-02T00:00:00.000Z"
        echo = env.fake.dm(GRACE, "Hi Grace")
        echo["message_create"]["sender_id"] = env.fake.user_id
        echo["message_create"]["target"]["recipient_id"] = GRACE
        assert (await env.fake.post(env.fake.activity(echo))).status_code == 200
        await trio.sleep(0.5)
        assert [m["author"]["type"] for m in received(alice, conversation_id)] == [
            "subscriber", "agent"]


async def test_forged_and_replayed_deliveries_change_nothing(env: Env) -> None:
    """A wrong signature or another account is 401; the same event twice counts once."""
    body = env.fake.activity(env.fake.dm(GRACE, "once", event_id="900"))
    assert (await env.fake.post(body, signature="sha256=AAAA")).status_code == 401
    other = body.replace(f'"for_user_id": "{env.fake.user_id}"'.encode(),
                         b'"for_user_id": "666"')
    assert (await env.fake.post(other)).status_code == 401
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        assert (await env.fake.post(body)).status_code == 200
        assert (await env.fake.post(body)).status_code == 200
        conversation_id = await accepted(alice)
        await eventually(lambda: seen(alice, conversation_id), timeout=10)
        await trio.sleep(0.5)
        assert seen(alice, conversation_id) == ["once"]


async def test_429_waits_for_the_reset_and_an_outage_recovers(env: Env) -> None:
    """Past the per-user limit X answers 429 with x-rate-limit-reset: the answers wait
    for it; a 503 outage is retried; all arrive once, in order."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        await env.fake.customer_says(GRACE, "help")
        conversation_id = await accepted(alice)
        env.fake.limit = 2
        env.fake.fail_next(503, times=2)
        for n in range(4):
            await answer(alice, conversation_id, f"answer {n}")
        await eventually(lambda: len(env.fake.texts(GRACE)) == 4, timeout=30)
        assert env.fake.texts(GRACE) == [f"answer {n}" for n in range(4)]


async def test_spam_threshold_drops_and_counts(env: Env) -> None:
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        for n in range(SPAM_THRESHOLD + 2):
            assert (await env.fake.customer_says(GRACE, f"spam {n}")).status_code == 200
        conversation_id = await accepted(alice)
        await eventually(lambda: len(seen(alice, conversation_id)) == SPAM_THRESHOLD,
                         timeout=10)
        await trio.sleep(0.5)
        assert len(seen(alice, conversation_id)) == SPAM_THRESHOLD
    metrics = (await env.http.get("/metrics")).text
    assert f'lcx_edge_spam_dropped_total{{account="x:{env.fake.user_id}"}} 2.0' in metrics


async def test_typing_before_the_first_dm_holds_nothing_back(env: Env) -> None:
    """The customer typing before any conversation exists is dropped at once: the DM
    that follows reaches the agents without waiting for it."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        assert (await env.fake.post(env.fake.activity(typing=[GRACE]))).status_code == 200
        assert (await env.fake.customer_says(GRACE, "first words")).status_code == 200
        with trio.fail_after(5):  # well before the inbox would give up on the typing
            conversation_id = await accepted(alice)
            await eventually(lambda: seen(alice, conversation_id) == ["first words"],
                             timeout=5)
