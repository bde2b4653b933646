"""Read markers: another participant's CONVERSATION_READ shows as "Read by …" under the
last message they read, and the stored markers give the unread counts after a reload."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_read_by_another_agent_shown_and_unread_counts_survive_a_reload(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    queue = page.get_by_role("region", name="Queue")
    conversations = page.get_by_role("region", name="Conversations")
    log = page.get_by_role("log", name="Messages")
    console.create_request("u-r1", "Rita")
    queue.get_by_role("listitem").filter(has_text="Rita").get_by_role(
        "button", name="Accept").click()
    expect(conversations.get_by_role("button", name="Rita")).to_be_visible()
    console.create_request("u-r2", "Rob")
    queue.get_by_role("listitem").filter(has_text="Rob").get_by_role(
        "button", name="Accept").click()
    expect(conversations.get_by_role("button", name="Rob")).to_be_visible()
    conversations.get_by_role("button", name="Rita").click()

    first = console.bot_says("u-r1", "r-1", "Rita one")
    console.bot_says("u-r1", "r-2", "Rita two")
    console.bot_says("u-r2", "o-1", "Rob one")
    console.bot_says("u-r2", "o-2", "Rob two")
    expect(log.get_by_role("listitem")).to_have_count(2)
    expect(conversations.get_by_role("button", name="Rob")).to_contain_text("2 unread")
    expect(conversations.get_by_role("button", name="Rita")).not_to_contain_text("unread")
    rita_id = first["conversationId"]

    # Sue joins and reads the thread: Alice sees it under the last message
    supervisor = console.open_console("sue", scope="supervisor")
    supervisor.get_by_role("button", name="Supervisor").click()
    supervisor.get_by_role("region", name="Supervisor").get_by_role("listitem").filter(
        has_text="Rita").get_by_role("button", name="Join").click()
    expect(supervisor.get_by_role("log", name="Messages")).to_contain_text("Rita two")
    last = log.get_by_role("listitem").filter(has_text="Rita two")
    expect(last).to_contain_text("Read by Sue")
    expect(log.get_by_role("listitem").filter(has_text="Rita one")).not_to_contain_text("Read by")

    # the markers are stored: after a reload Rob still has 2 unread, Rita none
    wait_until(lambda: console.supervisor_get(
        f"/organizations/o1/livechat-conversations/{rita_id}")["flags"].get(
            "readMarkers", {}).get("alice") == 2)
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(conversations.get_by_role("button", name="Rob")).to_contain_text("2 unread")
    expect(conversations.get_by_role("button", name="Rita")).not_to_contain_text("unread")
    expect(page).to_have_title("(2) lcx console")
    conversations.get_by_role("button", name="Rita").click()
    expect(log.get_by_role("listitem").filter(has_text="Rita two")).to_contain_text(
        "Read by Sue")
