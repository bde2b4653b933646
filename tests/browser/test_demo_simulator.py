"""The demo as a newcomer sees it: lcx serve with no configuration, the agent console in
one browser window and the customer simulator in another, a whole conversation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_env import TIMEOUT_MS
from playwright.sync_api import Browser, Page, expect
from support.demo_process import Printed, start_demo


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Printed]:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    lcx, printed = start_demo(workdir)
    try:
        yield printed
    finally:
        lcx.kill()


def window(browser: Browser, url: str) -> Page:
    """A page in a browser context of its own (like a separate browser window)."""
    context = browser.new_context(locale="en-US", viewport={"width": 1300, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    return page


def test_the_simulator_and_the_console_hold_a_conversation(browser: Browser,
                                                           demo: Printed) -> None:
    agent = window(browser, demo.url_of("agent Alice"))
    expect(agent.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    customer = window(browser, demo.url_of("customer simulator"))
    assert "token=" not in customer.url
    chat = customer.get_by_role("region", name="Customer chat")
    events = customer.get_by_role("region", name="Bot events")

    chat.get_by_role("textbox", name="Customer name").fill("Grace")
    chat.get_by_role("button", name="Ask for a human").click()
    expect(customer.get_by_role("status")).to_contain_text("Waiting for an agent")

    request = agent.get_by_role("region", name="Queue").get_by_role("listitem") \
        .filter(has_text="Grace")
    request.get_by_role("button", name="Accept").click()
    expect(customer.get_by_role("status")).to_contain_text("Alice is talking with you")
    expect(events.get_by_role("listitem").filter(has_text="CONVERSATION_BEGIN")) \
        .to_have_count(1)

    chat.get_by_role("textbox", name="Message").fill("My parcel never arrived")
    chat.get_by_role("button", name="Send").click()
    conversation = agent.get_by_role("region", name="Conversation", exact=True)
    expect(conversation.get_by_role("log", name="Messages")) \
        .to_contain_text("My parcel never arrived")

    conversation.get_by_role("textbox", name="Message").fill("Sorry Grace, let me check")
    conversation.get_by_role("button", name="Send").click()
    log = chat.get_by_role("log", name="Conversation")
    expect(log.get_by_role("listitem").filter(has_text="Sorry Grace, let me check")) \
        .to_have_count(1)
    expect(events.get_by_role("listitem").filter(has_text="MESSAGE")) \
        .to_contain_text("Sorry Grace, let me check")

    conversation.get_by_role("button", name="End conversation").click()
    expect(customer.get_by_role("status")).to_contain_text("The conversation ended (by agent")
    expect(events.get_by_role("listitem").filter(has_text="CONVERSATION_END")) \
        .to_have_count(1)
    expect(chat.get_by_role("button", name="Ask for a human again")).to_be_visible()


def test_the_simulator_without_a_token_says_where_to_find_one(browser: Browser,
                                                             demo: Printed) -> None:
    page = window(browser, f"{demo.url}/console/try")
    expect(page.get_by_role("status")).to_contain_text("open the simulator URL that lcx "
                                                       "serve printed")
    expect(page.get_by_role("button", name="Ask for a human")).to_be_disabled()
