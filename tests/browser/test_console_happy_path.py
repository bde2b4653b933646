"""The whole happy path in the console: queue, accept, messages both ways, typing, end."""

from __future__ import annotations

import time
from pathlib import Path

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_request_accepted_answered_and_ended_with_every_event_at_the_bot(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    queue = page.get_by_role("region", name="Queue")

    created = console.create_request("u-1", "Ada", context={
        "transcript": [{"author": "user", "text": "I need a human"}]})
    started = time.monotonic()
    request = queue.get_by_role("listitem").filter(has_text="Ada")
    expect(request).to_be_visible(timeout=1000)
    assert time.monotonic() - started < 1.0
    expect(request).to_contain_text("0:0")
    expect(page).to_have_title("(1) lcx console")  # the waiting request counts in the tab

    request.get_by_role("button", name="Accept").click()
    expect(queue.get_by_role("listitem").filter(has_text="Ada")).to_have_count(0)
    conversations = page.get_by_role("region", name="Conversations")
    expect(conversations.get_by_role("button", name="Ada")).to_be_visible()
    customer = page.get_by_role("region", name="Customer")
    expect(customer).to_contain_text("I need a human")

    conversation = page.get_by_role("region", name="Conversation", exact=True)
    log = conversation.get_by_role("log", name="Messages")
    console.bot_says("u-1", "b-1", "Hello, is anyone there?")
    expect(log).to_contain_text("Hello, is anyone there?")

    box = conversation.get_by_role("textbox", name="Message")
    box.fill("Hi Ada, Alice here")
    conversation.get_by_role("button", name="Send").click()
    expect(log.get_by_role("listitem").filter(has_text="Hi Ada, Alice here")).to_have_count(1)
    expect(box).to_have_value("")

    box.press_sequentially("typing now")
    conversation_id = wait_until(lambda: next(
        (e["conversationId"] for e in console.bot.events()
         if e["type"] == "CONVERSATION_TYPING" and e["data"]["typing"]), None))

    conversation.get_by_role("button", name="End conversation").click()
    expect(conversation).to_contain_text("This conversation has ended.")

    events = wait_until(lambda: (found := console.events_of(conversation_id))
                        and found[-1]["type"] == "CONVERSATION_END" and found)
    types = [e["type"] for e in events]
    assert types[0] == "CONVERSATION_BEGIN"
    assert "CONVERSATION_TYPING" in types
    messages = [e["data"]["text"] for e in events if e["type"] == "MESSAGE"]
    assert messages == ["Hi Ada, Alice here"]
    assert events[-1]["data"]["endedBy"] == "agent"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert created["id"] == events[0]["requestId"]

    # the ended conversation is in the agent's history, with its transcript downloads
    page.get_by_role("button", name="History").click()
    history = page.get_by_role("region", name="History")
    row = history.get_by_role("row").filter(has_text="Ada")
    expect(row).to_be_visible()
    with page.expect_download() as download:
        row.get_by_role("button", name="CSV Ada").click()
    assert download.value.suggested_filename.endswith(".csv")
    csv_text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "Hi Ada, Alice here" in csv_text
