"""Flag and Leave in the console: a flag is stored and pushed to the other participants;
leaving drops the conversation from the agent's list while a colleague carries on."""

from __future__ import annotations

from browser_env import ConsoleEnv
from playwright.sync_api import expect


def test_flag_is_stored_and_pushed_and_leave_hands_over_to_who_stays(
        console: ConsoleEnv) -> None:
    alice = console.open_console("alice")
    console.create_request("u-fl", "Fred")
    alice.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    conversation = alice.get_by_role("region", name="Conversation", exact=True)
    expect(conversation.get_by_role("textbox", name="Message")).to_be_enabled()

    sue = console.open_console("sue", scope="supervisor")
    sue.get_by_role("button", name="Supervisor").click()
    sue.get_by_role("region", name="Supervisor").get_by_role("listitem").filter(
        has_text="Fred").get_by_role("button", name="Join").click()
    sue_conversation = sue.get_by_role("region", name="Conversation", exact=True)
    expect(sue_conversation.get_by_role("textbox", name="Message")).to_be_focused()

    flag = conversation.get_by_role("button", name="Flag")
    flag.click()
    expect(flag).to_have_attribute("aria-pressed", "true")
    expect(conversation).to_contain_text("Flagged")
    expect(sue_conversation).to_contain_text("Flagged")  # pushed by PARTICIPANT_FLAG
    listed = console.supervisor_get(
        "/agent/organizations/o1/livechat-conversations?status=active")["items"]
    assert [c["flags"].get("flagged") for c in listed] == [True]
    flag.click()
    expect(flag).to_have_attribute("aria-pressed", "false")
    expect(sue_conversation).not_to_contain_text("Flagged")

    # Alice leaves: gone from her list; Sue stays in a conversation that goes on
    conversation.get_by_role("button", name="Leave").click()
    expect(alice.get_by_role("region", name="Conversations").get_by_role(
        "button", name="Fred")).to_have_count(0)
    expect(conversation).to_contain_text("Open a conversation from the list.")
    console.bot_says("u-fl", "f-1", "still there?")
    expect(sue.get_by_role("log", name="Messages")).to_contain_text("still there?")
    detail = console.supervisor_get(f"/organizations/o1/livechat-conversations/{listed[0]['id']}")
    assert detail["status"] == "active"
    assert {p["id"]: p.get("leftAt") is not None for p in detail["participants"]} == {
        "alice": True, "sue": False}
    assert not any(e["type"] == "CONVERSATION_END" for e in console.bot.events())
