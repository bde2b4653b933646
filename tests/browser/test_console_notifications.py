"""Notifications: after "Enable sound", a hidden tab gets a tone and a desktop notification
for a new request and a new message; the tab title counts unread messages and waiting
requests; returning to the tab clears the conversation's unread badge."""

from __future__ import annotations

from browser_env import NOTIFY_STUBS, ConsoleEnv
from playwright.sync_api import Page, expect


def _tones(page: Page) -> int:
    count: int = page.evaluate("window.__lcxTones.length")
    return count


def _notifications(page: Page) -> list[dict[str, str]]:
    shown: list[dict[str, str]] = page.evaluate("window.__lcxNotifications")
    return shown


def test_hidden_tab_sounds_and_notifies_only_after_enable_sound(console: ConsoleEnv) -> None:
    page = console.open_console("alice", init_script=NOTIFY_STUBS)
    queue = page.get_by_role("region", name="Queue")
    conversations = page.get_by_role("region", name="Conversations")

    # Before the explicit step: a hidden tab gets the title count but no sound.
    page.evaluate("window.__lcxSetHidden(true)")
    console.create_request("u-1", "Ada")
    expect(queue.get_by_role("listitem").filter(has_text="Ada")).to_be_visible()
    expect(page).to_have_title("(1) lcx console")
    assert _tones(page) == 0
    assert _notifications(page) == []

    page.evaluate("window.__lcxSetHidden(false)")
    enable = page.get_by_role("button", name="Enable sound")
    enable.click()
    expect(page.get_by_role("button", name="Sound on")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__lcxPermissionAsked") == 1

    # A visible tab is not disturbed.
    console.create_request("u-2", "Bob")
    expect(queue.get_by_role("listitem").filter(has_text="Bob")).to_be_visible()
    expect(page).to_have_title("(2) lcx console")
    assert _tones(page) == 0

    # A hidden tab: a new request sounds and notifies.
    page.evaluate("window.__lcxSetHidden(true)")
    console.create_request("u-3", "Cleo")
    expect(queue.get_by_role("listitem").filter(has_text="Cleo")).to_be_visible()
    expect(page).to_have_title("(3) lcx console")
    page.wait_for_function("window.__lcxTones.length === 1")
    assert _notifications(page) == [{"title": "New request from Cleo", "body": ""}]

    # Back in view: take Ada's request, then hide the tab and let Ada write.
    page.evaluate("window.__lcxSetHidden(false)")
    queue.get_by_role("listitem").filter(has_text="Ada").get_by_role(
        "button", name="Accept").click()
    expect(conversations.get_by_role("button", name="Ada")).to_be_visible()
    expect(page).to_have_title("(2) lcx console")
    page.evaluate("window.__lcxSetHidden(true)")
    console.bot_says("u-1", "m-1", "Are you there?")
    expect(conversations.get_by_role("button", name="Ada 1 unread")).to_be_visible()
    expect(page).to_have_title("(3) lcx console")
    page.wait_for_function("window.__lcxTones.length === 2")
    assert _notifications(page)[-1] == {"title": "New message from Ada",
                                        "body": "Are you there?"}

    # Returning to the tab reads the open conversation: badge and title count go.
    page.evaluate("window.__lcxSetHidden(false)")
    expect(conversations.get_by_role("button", name="Ada", exact=True)).to_be_visible()
    expect(page).to_have_title("(2) lcx console")
    assert _tones(page) == 2


def test_refused_desktop_notifications_still_sound(console: ConsoleEnv) -> None:
    page = console.open_console("alice", init_script=NOTIFY_STUBS)
    page.evaluate("window.__lcxPermissionAnswer = 'denied'")
    page.get_by_role("button", name="Enable sound").click()
    expect(page.get_by_role("button", name="Sound on")).to_be_visible()
    page.evaluate("window.__lcxSetHidden(true)")
    console.create_request("u-1", "Ada")
    expect(page).to_have_title("(1) lcx console")
    page.wait_for_function("window.__lcxTones.length === 1")
    assert _notifications(page) == []
