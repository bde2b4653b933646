"""A canned response found and inserted with the keyboard alone, then sent with Enter."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_canned_response_inserted_with_the_keyboard_alone(console: ConsoleEnv) -> None:
    for shortcut, title, text in (
            ("refund", "Refund policy", "Refunds take 5 working days."),
            ("refund-late", "Late refund", "We are sorry your refund is late."),
            ("hello", "Greeting", "Hello! How can I help?")):
        console.supervisor_send("POST", "/organizations/o1/canned-responses",
                                {"shortcut": shortcut, "title": title, "text": text})
    console.supervisor_send("PUT", "/organizations/o1/livechat-settings", {"routing": "auto"})
    page = console.open_console("alice")
    console.create_request("u-kb", "Kim")
    expect(page.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Kim")).to_be_visible()

    # keyboard only from here: Alt+ArrowDown moves to the conversation and its textbox
    page.keyboard.press("Alt+ArrowDown")
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    page.keyboard.type("/ref")
    listbox = page.get_by_role("listbox", name="Canned responses")
    expect(listbox).to_be_visible()
    expect(listbox.get_by_role("option")).to_have_count(2)
    expect(listbox.get_by_role("option", selected=True)).to_contain_text("/refund ")
    page.keyboard.press("ArrowDown")
    expect(listbox.get_by_role("option", selected=True)).to_contain_text("/refund-late")
    page.keyboard.press("Enter")
    expect(listbox).to_be_hidden()
    expect(box).to_have_value("We are sorry your refund is late.")
    page.keyboard.press("Enter")

    log = page.get_by_role("log", name="Messages")
    expect(log).to_contain_text("We are sorry your refund is late.")
    expect(box).to_have_value("")
    wait_until(lambda: any(e["type"] == "MESSAGE" and e["data"]["text"] ==
                           "We are sorry your refund is late." for e in console.bot.events()))

    # Escape closes the list without inserting; Shift+Enter is a new line, not a send
    page.keyboard.type("/hel")
    expect(listbox.get_by_role("option")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    expect(box).to_have_value("/hel")
    page.keyboard.press("Shift+Enter")
    expect(box).to_have_value("/hel\n")
