"""Transfer from the console: to a user group (back to its queue, with the thread) and to
one agent (the conversation moves into that agent's console at once)."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import Page, expect


def transfer(page: Page, *, group: str = "", agent: str = "") -> None:
    """Open "Transfer" and send the conversation to a group or an agent by keyboard."""
    conversation = page.get_by_role("region", name="Conversation", exact=True)
    conversation.get_by_role("button", name="Transfer", exact=True).click()
    if group:
        expect(conversation.get_by_role("textbox", name="To user group")).to_be_focused()
        page.keyboard.type(group)
    if agent:
        conversation.get_by_role("textbox", name="Or to agent").fill(agent)
    conversation.get_by_role("button", name="Transfer now").click()


def test_transfer_to_a_group_then_to_an_agent_keeps_the_thread(console: ConsoleEnv) -> None:
    alice = console.open_console("alice")
    bob = console.open_console("bob", groups=("g2",))

    console.create_request("u-tr", "Tina")
    alice.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    console.bot_says("u-tr", "t-1", "I want to talk to billing")
    alice_log = alice.get_by_role("log", name="Messages")
    expect(alice_log).to_contain_text("I want to talk to billing")

    # to group g2: Alice loses it, Bob (g2) sees it waiting and gets the thread on accept
    transfer(alice, group="g2")
    alice_list = alice.get_by_role("region", name="Conversations")
    expect(alice_list.get_by_role("button", name="Tina")).to_have_count(0)
    bob_queue = bob.get_by_role("region", name="Queue")
    bob_queue.get_by_role("listitem").filter(has_text="Tina").get_by_role(
        "button", name="Accept").click()
    bob_log = bob.get_by_role("log", name="Messages")
    expect(bob_log).to_contain_text("I want to talk to billing")

    # to agent alice: it moves straight into Alice's console, opened, thread and all
    transfer(bob, agent="alice")
    expect(bob.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Tina")).to_have_count(0)
    expect(alice_list.get_by_role("button", name="Tina")).to_be_visible()
    expect(alice_log).to_contain_text("I want to talk to billing")
    alice.get_by_role("textbox", name="Message").fill("Alice again, billing sorted")
    alice.get_by_role("button", name="Send").click()

    events = wait_until(lambda: (found := [e for e in console.bot.events()
                                           if e["type"] in ("TRANSFER_REQUEST", "MESSAGE")])
                        and len(found) >= 3 and found)
    transfers = [e["data"] for e in events if e["type"] == "TRANSFER_REQUEST"]
    assert [(t["from"]["id"], t.get("toUserGroupId"), t.get("toAgentId"))
            for t in transfers] == [("alice", "g2", None), ("bob", None, "alice")]
    assert events[-1]["data"]["text"] == "Alice again, billing sorted"
