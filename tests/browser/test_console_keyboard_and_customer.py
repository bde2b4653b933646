"""Keyboard and the Customer panel: Alt+↑/↓ moves between conversations (focus stays in
"Message"), Enter sends, Shift+Enter is a new line; the panel shows the open conversation's
subscriber (name, email, locale, custom fields)."""

from __future__ import annotations

import re

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_alt_arrows_switch_conversations_and_enter_sends_shift_enter_breaks(
        console: ConsoleEnv) -> None:
    console.supervisor_send("PUT", "/organizations/o1/livechat-settings", {"routing": "auto"})
    page = console.open_console("alice")
    conversations = page.get_by_role("region", name="Conversations")
    customer = page.get_by_role("region", name="Customer")
    console.create_request("u-ada", "Ada", subscriber={
        "email": "ada@example.com", "locale": "en-GB",
        "custom": {"plan": "gold", "orders": 3}})
    expect(conversations.get_by_role("button", name="Ada")).to_be_visible()
    console.create_request("u-bob", "Bob", subscriber={"email": "bob@example.com",
                                                       "locale": "el"})
    expect(conversations.get_by_role("button", name="Bob")).to_be_visible()

    ada = conversations.get_by_role("button", name="Ada")
    bob = conversations.get_by_role("button", name="Bob")
    expect(ada).to_have_attribute("aria-current", "true")  # the first assigned opens
    expect(customer.get_by_role("definition")).to_contain_text(
        ["Ada", "ada@example.com", "en-GB", "g1", "gold", "3"])
    expect(customer).to_contain_text("Custom fields")

    box = page.get_by_role("textbox", name="Message")
    box.focus()
    box.press("Alt+ArrowDown")
    expect(bob).to_have_attribute("aria-current", "true")
    expect(ada).not_to_have_attribute("aria-current", "true")
    expect(box).to_be_focused()
    expect(customer.get_by_role("definition")).to_contain_text(
        ["Bob", "bob@example.com", "el", "g1"])
    expect(customer).not_to_contain_text("Custom fields")

    box.press("Alt+ArrowUp")
    expect(ada).to_have_attribute("aria-current", "true")
    expect(box).to_be_focused()
    box.press("Alt+ArrowUp")  # wraps round to the last
    expect(bob).to_have_attribute("aria-current", "true")
    box.press("Alt+ArrowDown")
    expect(ada).to_have_attribute("aria-current", "true")

    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    expect(box).to_have_value("first line\nsecond line")  # Shift+Enter did not send
    box.press("Enter")
    expect(box).to_have_value("")
    log = page.get_by_role("region", name="Conversation", exact=True).get_by_role(
        "log", name="Messages")
    expect(log.get_by_role("listitem").filter(has_text="second line")).to_have_count(1)

    sent = wait_until(lambda: [e for e in console.bot.events()
                               if e["type"] == "MESSAGE" and e["data"].get("text")])
    assert [e["data"]["text"] for e in sent] == ["first line\nsecond line"]
    assert sent[0]["subHandle"] == "u-ada"


def test_queue_position_and_live_wait_and_accept_by_tab_with_visible_focus(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    queue = page.get_by_role("region", name="Queue")
    console.create_request("u-1", "Ada")
    first = queue.get_by_role("listitem").filter(has_text="Ada")
    expect(first).to_contain_text("g1 · position 1")
    console.create_request("u-2", "Bob")
    second = queue.get_by_role("listitem").filter(has_text="Bob")
    expect(second).to_contain_text("g1 · position 2")
    expect(first).to_contain_text(re.compile(r"waiting 0:0[1-9]"))  # the wait runs live

    # Tab alone reaches Ada's "Accept"; the focused control shows an outline.
    accept = first.get_by_role("button", name="Accept")
    for _ in range(60):
        page.keyboard.press("Tab")
        if accept.evaluate("(button) => button === document.activeElement"):
            break
    expect(accept).to_be_focused()
    outline = accept.evaluate(
        "(b) => [getComputedStyle(b).outlineStyle, getComputedStyle(b).outlineWidth]")
    assert outline[0] != "none", outline
    assert outline[1] != "0px", outline
    page.keyboard.press("Enter")
    expect(page.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Ada")).to_be_visible()
    expect(second).to_contain_text("g1 · position 1")
