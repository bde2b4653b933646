"""An agent attaches a file: it is uploaded, shown inline (images) and opens by its link."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from browser_env import ConsoleEnv, wait_until
from playwright.sync_api import expect

# a 2x2 red PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAA"
    "AABJRU5ErkJggg==")


def test_attachment_sent_shown_inline_and_opened(console: ConsoleEnv, tmp_path: Path) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(PNG)
    notes = tmp_path / "notes.txt"
    notes.write_text("order 42: two blue mugs\n")
    page = console.open_console("alice")
    console.create_request("u-file", "Fay")
    page.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    conversation = page.get_by_role("region", name="Conversation", exact=True)
    log = conversation.get_by_role("log", name="Messages")

    for path in (image, notes):
        with page.expect_file_chooser() as chooser:
            conversation.get_by_role("button", name="Attach file").click()
        chooser.value.set_files(str(path))
    picture = log.get_by_role("img", name="red.png")
    expect(picture).to_be_visible()
    wait_until(lambda: picture.evaluate("img => img.complete && img.naturalWidth === 2"))
    link = log.get_by_role("link", name="notes.txt")
    expect(link).to_be_visible()

    href = link.get_attribute("href")
    assert href is not None
    assert "signature=" in href
    opened = httpx.get(href, timeout=5)
    assert opened.status_code == 200
    assert opened.content == notes.read_bytes()

    events = wait_until(lambda: [e for e in console.bot.events() if e["type"] == "MESSAGE"
                                 and e["data"]["attachments"]] if len(
        [e for e in console.bot.events() if e["type"] == "MESSAGE"]) >= 2 else None)
    sent = [(a["name"], a["contentType"]) for e in events for a in e["data"]["attachments"]]
    assert sent == [("red.png", "image/png"), ("notes.txt", "text/plain")]
