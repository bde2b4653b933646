"""The server cuts the socket mid-conversation while the bot keeps writing: the console
shows "Reconnecting…", reconnects, and shows every message once, in seq order."""

from __future__ import annotations

import signal

from browser_env import ConsoleEnv
from playwright.sync_api import expect


def test_cut_socket_reconnects_and_shows_every_message_once_in_order(
        console: ConsoleEnv) -> None:
    page = console.open_console("alice")
    console.create_request("u-cut", "Carl")
    page.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    log = page.get_by_role("region", name="Conversation", exact=True).get_by_role(
        "log", name="Messages")
    expected = []
    for n in range(1, 4):
        console.bot_says("u-cut", f"b-{n}", f"before {n}")
        expected.append(f"before {n}")
    expect(log.get_by_role("listitem")).to_have_count(3)

    # SIGTERM: lcx closes agent sockets with 1012 and stops; it comes back on the same
    # port and store while the console is still backing off.
    console.lcx.stop(signal.SIGTERM)
    status = page.get_by_role("status")
    expect(status).to_have_text("Reconnecting…")
    expect(page.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    console.lcx.start()
    for n in range(1, 6):
        console.bot_says("u-cut", f"a-{n}", f"after {n}")
        expected.append(f"after {n}")

    expect(status).to_have_text("Connected")
    expect(page.get_by_text("Connection lost. Reconnecting…")).to_be_hidden()
    items = log.get_by_role("listitem")
    expect(items).to_have_count(len(expected))
    texts = [text.strip() for text in log.locator("li p").all_inner_texts()]
    assert texts == expected
    seqs = [int(s) for s in log.locator("li").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == list(range(1, len(expected) + 1))

    # and the conversation goes on over the new socket
    page.get_by_role("textbox", name="Message").fill("still here")
    page.get_by_role("button", name="Send").click()
    expect(items).to_have_count(len(expected) + 1)
