"""An internal note: shown to the agents, kept in the transcript, never sent to the bot."""

from __future__ import annotations

from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect


def test_internal_note_reaches_agents_and_transcripts_but_never_the_bot(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    console.create_request("u-note", "Nina")
    page.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    conversation = page.get_by_role("region", name="Conversation", exact=True)
    log = conversation.get_by_role("log", name="Messages")
    box = conversation.get_by_role("textbox", name="Message")
    expect(box).to_be_enabled()

    conversation.get_by_role("checkbox", name="Internal note").check()
    box.fill("Nina is a VIP: refund without questions")
    box.press("Enter")
    note = log.get_by_role("listitem").filter(has_text="Nina is a VIP")
    expect(note).to_contain_text("internal note")
    expect(conversation.get_by_role("checkbox", name="Internal note")).not_to_be_checked()
    box.fill("Hello Nina, refund on its way")
    box.press("Enter")
    public = log.get_by_role("listitem").filter(has_text="refund on its way")
    expect(public).to_be_visible()
    expect(public).not_to_contain_text("internal note")

    # a supervisor who joins sees the note in the thread as well
    supervisor = console.open_console("sue", scope="supervisor")
    supervisor.get_by_role("button", name="Supervisor").click()
    supervisor.get_by_role("region", name="Supervisor").get_by_role("listitem").filter(
        has_text="Nina").get_by_role("button", name="Join").click()
    expect(supervisor.get_by_role("log", name="Messages").get_by_role("listitem").filter(
        has_text="Nina is a VIP")).to_contain_text("internal note")

    # the bot got the public message (delivered in order, after the note's seq) ...
    events = wait_until(lambda: (found := [e for e in console.bot.events()
                                           if e["type"] == "MESSAGE"]) and found)
    assert [e["data"]["text"] for e in events] == ["Hello Nina, refund on its way"]
    conversation_id = events[0]["conversationId"]
    # ... and nothing of the note, in any event
    assert all("VIP" not in str(e) for e in console.bot.events())

    transcript = console.supervisor_get(
        f"/organizations/o1/livechat-messages?conversationId={conversation_id}")
    assert [(m["text"], m.get("private", False)) for m in transcript["items"]] == [
        ("Nina is a VIP: refund without questions", True),
        ("Hello Nina, refund on its way", False)]
    csv = console.http.get("/organizations/o1/livechat-messages", params={
        "conversationId": conversation_id, "format": "csv"},
        headers=console.bearer("sue", "supervisor")).text.splitlines()
    assert csv[1].endswith(",true")
    assert not csv[2].endswith(",true")
