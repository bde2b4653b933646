"""A supervisor manages canned responses and the organization's settings in the console."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_supervisor_manages_canned_responses_and_settings(console: ConsoleEnv) -> None:
    page = console.open_console("sue", scope="supervisor")
    page.get_by_role("button", name="Manage").click()
    manage = page.get_by_role("region", name="Manage")

    manage.get_by_role("textbox", name="Shortcut").fill("thanks")
    manage.get_by_role("textbox", name="Title").fill("Thank you")
    manage.get_by_role("textbox", name="Text", exact=True).fill("Thank you for waiting.")
    manage.locator("#canned-form").get_by_role("button", name="Save").click()
    expect(manage.get_by_role("listitem").filter(has_text="/thanks")).to_be_visible()
    listed = console.supervisor_get("/organizations/o1/canned-responses")["items"]
    assert [(c["shortcut"], c["text"]) for c in listed] == [("thanks", "Thank you for waiting.")]

    routing = manage.get_by_role("combobox", name="Routing")
    expect(routing).to_have_value("broadcast")
    routing.select_option("auto")
    manage.get_by_role("spinbutton", name="Chats per agent").fill("5")
    manage.locator("#settings-form").get_by_role("button", name="Save").click()
    wait_until(lambda: console.supervisor_get(
        "/organizations/o1/livechat-settings")["routing"] == "auto")
    settings = console.supervisor_get("/organizations/o1/livechat-settings")
    assert (settings["routing"], settings["maxConcurrentChats"]) == ("auto", 5)

    manage.get_by_role("button", name="Delete /thanks").click()
    expect(manage.get_by_role("listitem").filter(has_text="/thanks")).to_have_count(0)
    assert console.supervisor_get("/organizations/o1/canned-responses")["items"] == []
