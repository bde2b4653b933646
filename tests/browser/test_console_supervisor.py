"""The supervisor view: live queue and agent figures that match the API, and a Join."""

from __future__ import annotations

from typing import Any

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import Page, expect


def table_rows(page: Page, name: str) -> list[list[str]]:
    """The body rows of a table, as cell texts."""
    rows: list[list[str]] = page.get_by_role("table", name=name).locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")
    return rows


def stable(overview: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The overview as the tables show it, without the wait (it ticks every second)."""
    queues = [[q["userGroupId"], str(q["waiting"]), str(q["agentsOnline"]), str(q["agentsAway"]),
               str(q["activeConversations"])] for q in overview["queues"]]
    agents = [[a["name"] or a["id"], a["status"].capitalize(),
               f"{a['activeChats']}/{a['maxChats']}", ", ".join(a["groups"])]
              for a in overview["agents"]]
    return queues, agents


def shown(page: Page) -> tuple[list[list[str]], list[list[str]]]:
    queues = [[row[0], row[1], row[3], row[4], row[5]] for row in table_rows(page, "Queues")]
    agents = [row[:4] for row in table_rows(page, "Agents")]
    return queues, agents


def test_supervisor_figures_match_the_api_and_join_then_write(console: ConsoleEnv) -> None:
    alice = console.open_console("alice")
    console.create_request("u-s1", "Sara")
    alice.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    expect(alice.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Sara")).to_be_visible()
    bob = console.open_console("bob")
    bob.get_by_role("combobox", name="Status").select_option("away")
    console.create_request("u-s2", "Tom")

    page = console.open_console("sue", scope="supervisor")
    page.get_by_role("button", name="Supervisor").click()
    supervisor = page.get_by_role("region", name="Supervisor")
    expect(supervisor.get_by_role("table", name="Queues")).to_be_visible()
    expect(supervisor.get_by_role("table", name="Agents")).to_be_visible()

    def matches() -> bool:
        api = stable(console.supervisor_get("/organizations/o1/livechat-overview"))
        return api == shown(page) and api[0][0][1:] == ["1", "2", "1", "1"]

    wait_until(matches)
    api = console.supervisor_get("/organizations/o1/livechat-overview")
    assert {a["id"]: (a["status"], a["activeChats"]) for a in api["agents"]} == {
        "alice": ("online", 1), "bob": ("away", 0), "sue": ("online", 0)}
    assert all(a["connectedSince"] for a in api["agents"])
    wait_shown = int(table_rows(page, "Queues")[0][2].split(":")[1])
    assert abs(wait_shown - api["queues"][0]["longestWaitSeconds"]) <= 2

    # pushed: a change shows without a reload
    bob.get_by_role("combobox", name="Status").select_option("online")
    wait_until(lambda: shown(page)[0][0][2:4] == ["3", "0"])

    # open it read-only first: the thread follows, the composer is not there
    active = supervisor.get_by_role("listitem").filter(has_text="Sara")
    active.get_by_role("button", name="Open").click()
    conversation = page.get_by_role("region", name="Conversation", exact=True)
    expect(conversation).to_contain_text("Read only.")
    expect(conversation.get_by_role("textbox", name="Message")).to_be_hidden()
    console.bot_says("u-s1", "b-ro", "Sara writes while Sue watches")
    expect(conversation.get_by_role("log", name="Messages")).to_contain_text(
        "Sara writes while Sue watches")

    conversation.get_by_role("button", name="Join").click()
    expect(conversation.get_by_role("textbox", name="Message")).to_be_focused()
    conversation.get_by_role("textbox", name="Message").press_sequentially("Supervisor")
    expect(alice.get_by_text("Sue is typing…")).to_be_visible()
    conversation.get_by_role("textbox", name="Message").fill("Supervisor Sue joining")
    conversation.get_by_role("button", name="Send").click()
    expect(alice.get_by_role("log", name="Messages")).to_contain_text("Supervisor Sue joining")
    wait_until(lambda: any(e["type"] == "MESSAGE" and e["data"]["author"]["id"] == "sue"
                           for e in console.bot.events()))
