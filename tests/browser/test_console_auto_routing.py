"""Auto routing: lcx assigns the request and the console opens it with the queued messages."""

from __future__ import annotations

from browser_env import ConsoleEnv
from playwright.sync_api import expect


def test_auto_routing_assigns_into_the_console(console: ConsoleEnv) -> None:
    console.supervisor_send("PUT", "/organizations/o1/livechat-settings", {"routing": "auto"})
    page = console.open_console("alice")
    console.create_request("u-auto", "Otto")
    console.bot_says("u-auto", "b-1", "queued before anyone took it")

    conversations = page.get_by_role("region", name="Conversations")
    expect(conversations.get_by_role("button", name="Otto")).to_be_visible()
    log = page.get_by_role("region", name="Conversation", exact=True).get_by_role(
        "log", name="Messages")
    expect(log).to_contain_text("queued before anyone took it")
    expect(page.get_by_role("region", name="Queue").get_by_role("listitem")).to_have_count(0)

    page.get_by_role("textbox", name="Message").fill("Otto, I have your chat")
    page.get_by_role("textbox", name="Message").press("Enter")
    expect(log.get_by_role("listitem").filter(has_text="Otto, I have your chat")).to_have_count(1)
