"""A customer typing on a channel that reports it (X direct messages) is shown in the
console: "Customer is typing…" under the open conversation (X sends no "stopped": the
indicator lapses after 10 s). The X webhooks are signed as X signs them and posted to
lcx's real endpoint."""

from __future__ import annotations

import json
import time

import httpx
from browser_env import ConsoleEnv
from fakes.x import sign
from playwright.sync_api import expect

CONSUMER_SECRET = "x-consumer-secret"
LCX_USER = "9001"
GRACE = "7001"
LCX_EXTRA_CONFIG = f"""
[[tenants]]
id = "x1"
organization_id = "o1"
channel = "x"
default_user_group = "g1"

[tenants.x]
api_url = "http://127.0.0.1:9"
user_id = "{LCX_USER}"
consumer_secret = "{CONSUMER_SECRET}"
access_token = "x-access-token"
"""


def post_activity(console: ConsoleEnv, body: dict[str, object]) -> None:
    """POST one account activity delivery to lcx, signed with the consumer secret."""
    raw = json.dumps({"for_user_id": LCX_USER, **body}).encode()
    response = httpx.post(f"{console.url}/events/x", content=raw, timeout=10, headers={
        "Content-Type": "application/json",
        "x-twitter-webhooks-signature": sign(raw, CONSUMER_SECRET)})
    assert response.status_code == 200, response.text


def now_ms() -> str:
    """X's ``created_timestamp``: milliseconds since the epoch, as a string."""
    return str(int(time.time() * 1000))


def test_the_customer_typing_on_x_shows_under_the_open_conversation(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    post_activity(console, {
        "direct_message_events": [{
            "type": "message_create", "id": "100000000000000001",
            "created_timestamp": now_ms(),
            "message_create": {"target": {"recipient_id": LCX_USER}, "sender_id": GRACE,
                               "message_data": {"text": "hello from X"}}}],
        "users": {GRACE: {"id": GRACE, "name": "Grace Hopper", "screen_name": "grace"}}})
    queue = page.get_by_role("region", name="Queue")
    queue.get_by_role("listitem").filter(has_text="Grace Hopper").get_by_role(
        "button", name="Accept").click()
    conversation = page.get_by_role("region", name="Conversation", exact=True)
    expect(conversation.get_by_role("log", name="Messages")).to_contain_text("hello from X")
    typing = conversation.get_by_text("is typing")
    expect(typing).to_have_count(0)

    post_activity(console, {"direct_message_indicate_typing_events": [{
        "created_timestamp": now_ms(), "sender_id": GRACE,
        "target": {"recipient_id": LCX_USER}}]})
    expect(conversation.get_by_text("Customer is typing…")).to_be_visible()
