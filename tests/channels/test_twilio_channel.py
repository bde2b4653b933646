"""Twilio SMS and WhatsApp customers through a real ``lcx serve``: signed webhooks
(forged and replayed ones change nothing; TwiML answered), a customer → lcx agent →
customer round trip with media, a 429 honoured and an outage recovered in order,
WhatsApp's 24 h window told to the agent, and the spam threshold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from channel_env import ChannelEnv, accepted, answer, channel_env, received, seen
from fakes.twilio import FakeTwilio, open_fake_twilio
from support.agent_client import agent_connection
from support.waiting import eventually

SPAM_THRESHOLD = 4
CUSTOMER = "+14155550100"


Env = ChannelEnv[FakeTwilio]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_fake_twilio() as fake, channel_env(
            tmp_path, fake, tenant="s1", channel="twilio",
            spam_threshold=SPAM_THRESHOLD) as running:
        yield running


async def test_sms_round_trip_with_media(env: Env) -> None:
    """An SMS with a photo reaches the agent; TwiML is answered; the agent's answer with
    an attachment goes back from our number."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        sent = await env.fake.customer_texts(CUSTOMER, "my order", media=[
            ("https://api.twilio.com/media/ME1", "image/jpeg")])
        assert sent.status_code == 200
        assert sent.headers["content-type"].startswith("text/xml")
        assert "<Response/>" in sent.text
        conversation_id = await accepted(alice)
        await eventually(lambda: received(alice, conversation_id), timeout=10)
        (message,) = received(alice, conversation_id)
        assert (message["type"], message["text"]) == ("file", "my order")
        assert message["attachments"][0]["url"] == "https://api.twilio.com/media/ME1"
        await answer(alice, conversation_id, "On its way")
        await eventually(lambda: env.fake.bodies(CUSTOMER) == ["On its way"], timeout=10)
        assert env.fake.sent[-1]["From"] == env.fake.number


async def test_forged_and_replayed_webhooks_change_nothing(env: Env) -> None:
    """A wrong signature or an unknown number is 403 and starts nothing; the same
    MessageSid twice is applied once."""
    forged = await env.fake.customer_texts(CUSTOMER, "forged", signature="AAAA")
    assert forged.status_code == 403
    other_url = await env.fake.customer_texts(CUSTOMER, "elsewhere",
                                                url="https://attacker.example/hook")
    assert other_url.status_code == 403
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        sid = env.fake.sid()
        first = await env.fake.customer_texts(CUSTOMER, "once", sid=sid)
        again = await env.fake.customer_texts(CUSTOMER, "once", sid=sid)
        assert (first.status_code, again.status_code) == (200, 200)
        conversation_id = await accepted(alice)
        await eventually(lambda: seen(alice, conversation_id), timeout=10)
        await trio.sleep(0.5)
        assert seen(alice, conversation_id) == ["once"]


async def test_429_and_outage_are_retried_in_order(env: Env) -> None:
    """429 (code 20429, Retry-After) then 500s: every answer once, in order."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        await env.fake.customer_texts(CUSTOMER, "hello")
        conversation_id = await accepted(alice)
        env.fake.fail_next(429)
        env.fake.fail_next(500, times=2)
        for n in range(3):
            await answer(alice, conversation_id, f"answer {n}")
        await eventually(lambda: len(env.fake.bodies(CUSTOMER)) == 3, timeout=20)
        assert env.fake.bodies(CUSTOMER) == ["answer 0", "answer 1", "answer 2"]


async def test_whatsapp_outside_its_window_is_told_to_the_agent(env: Env) -> None:
    """WhatsApp messages keep their whatsapp: addresses; error 63016 is not retried and
    the agent is told that a template is needed."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        await env.fake.customer_texts(CUSTOMER, "hola", whatsapp=True)
        conversation_id = await accepted(alice)
        await answer(alice, conversation_id, "Hi there")
        await eventually(lambda: env.fake.bodies(f"whatsapp:{CUSTOMER}"), timeout=10)
        assert env.fake.sent[-1]["From"] == f"whatsapp:{env.fake.number}"
        env.fake.whatsapp_window_closed.add(f"whatsapp:{CUSTOMER}")
        await answer(alice, conversation_id, "A day later")
        told = await alice.notification("message_undeliverable", timeout=10)
        assert "template" in told["data"]["reason"]
        assert told["data"]["conversationId"] == conversation_id
        assert env.fake.bodies(f"whatsapp:{CUSTOMER}") == ["Hi there"]


async def test_spam_threshold_drops_and_counts(env: Env) -> None:
    """Past the threshold a sender's SMS are dropped and counted."""
    async with agent_connection(env.lcx.url, env.agent()) as alice:
        for n in range(SPAM_THRESHOLD + 2):
            assert (await env.fake.customer_texts(CUSTOMER, f"spam {n}")).status_code == 200
        conversation_id = await accepted(alice)
        await eventually(lambda: len(seen(alice, conversation_id)) == SPAM_THRESHOLD,
                         timeout=10)
        await trio.sleep(0.5)
        assert len(seen(alice, conversation_id)) == SPAM_THRESHOLD
    metrics = (await env.http.get("/metrics")).text
    account = env.fake.account_sid
    assert f'lcx_edge_spam_dropped_total{{account="twilio:{account}"}} 2.0' in metrics


