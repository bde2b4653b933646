"""Two agents accept the same request at once: one gets it, the other sees it gone."""

from __future__ import annotations

from browser_env import ConsoleEnv
from playwright.sync_api import expect


def test_two_agents_racing_to_accept_one_wins_and_the_other_sees_it_gone(
        console: ConsoleEnv) -> None:
    alice = console.open_console("alice")
    bob = console.open_console("bob")
    console.create_request("u-race", "Rita")
    buttons = []
    for page in (alice, bob):
        item = page.get_by_role("region", name="Queue").get_by_role("listitem").filter(
            has_text="Rita")
        expect(item).to_be_visible()
        buttons.append(item.get_by_role("button", name="Accept"))
    # both clicks are dispatched before either answer can arrive
    for page in (alice, bob):
        page.evaluate("() => { window.__accept = [...document.querySelectorAll("
                      "'#queue-list button')].find(b => b.textContent === 'Accept'); }")
    alice.evaluate("() => window.__accept.click()")
    bob.evaluate("() => window.__accept.click()")

    for page in (alice, bob):
        queue = page.get_by_role("region", name="Queue")
        expect(queue.get_by_role("listitem").filter(has_text="Rita")).to_have_count(0)
    owners = []
    for name, page in (("alice", alice), ("bob", bob)):
        conversations = page.get_by_role("region", name="Conversations")
        has_it = conversations.get_by_role("button", name="Rita")
        expect(has_it.or_(page.get_by_role("alert").filter(
            has_text="taken by someone else"))).to_be_visible()
        if has_it.count():
            owners.append(name)
    assert len(owners) == 1, owners
    loser = bob if owners == ["alice"] else alice
    expect(loser.get_by_role("alert")).to_contain_text("Rita was taken by someone else.")
    expect(loser.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Rita")).to_have_count(0)

    detail = console.supervisor_get("/organizations/o1/livechat-requests?status=accepted")
    assert [(r["subscriber"]["name"], r["acceptedBy"]) for r in detail["items"]] == [
        ("Rita", owners[0])]
