"""History: the agent's ended conversations in cursor pages ("More" follows nextCursor),
and each transcript downloaded from the browser as a real CSV and a real PDF."""

from __future__ import annotations

import csv
import io
import re
import zlib
from pathlib import Path

from browser_env import ConsoleEnv
from playwright.sync_api import expect

CONVERSATIONS = 21
"""One more than the console's page of 20, so the history needs a second page."""


def _pdf_text(body: bytes) -> str:
    """The PDF's streams inflated, as Latin-1 text with string escapes undone."""
    chunks = [body.decode("latin-1")]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S):
        try:
            chunks.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            chunks.append(stream.decode("latin-1"))
    return re.sub(r"\\([()\\])", r"\1", "\n".join(chunks))


def test_history_pages_and_downloads_real_csv_and_pdf(console: ConsoleEnv) -> None:
    console.supervisor_send("PUT", "/organizations/o1/livechat-settings",
                            {"routing": "auto", "maxConcurrentChats": CONVERSATIONS + 5})
    page = console.open_console("alice")
    conversations = page.get_by_role("region", name="Conversations")
    names = [f"Subscriber {n:02d}" for n in range(CONVERSATIONS)]
    for n, name in enumerate(names):
        console.create_request(f"u-{n}", name)
        expect(conversations.get_by_role("button", name=name)).to_be_visible()
    console.bot_says("u-0", "b-1", "Please keep this transcript")
    log = page.get_by_role("region", name="Conversation", exact=True).get_by_role(
        "log", name="Messages")
    page.get_by_role("button", name=names[0]).click()
    expect(log).to_contain_text("Please keep this transcript")
    for n in range(CONVERSATIONS):
        response = console.http.delete(f"/sessions/tenants/t1/subscribers/u-{n}",
                                       headers=console.bearer())
        assert response.status_code == 204, response.text

    page.get_by_role("button", name="History").click()
    history = page.get_by_role("region", name="History")
    rows = history.get_by_role("table").locator("tbody").get_by_role("row")
    expect(rows).to_have_count(20)
    more = history.get_by_role("button", name="More")
    more.click()
    expect(rows).to_have_count(CONVERSATIONS)
    expect(more).to_be_hidden()
    shown = sorted(rows.nth(i).get_by_role("cell").first.inner_text()
                   for i in range(CONVERSATIONS))
    assert shown == names  # every ended conversation once, across the two pages

    with page.expect_download() as csv_download:
        history.get_by_role("button", name=f"CSV {names[0]}").click()
    csv_path = Path(csv_download.value.path())
    table = list(csv.reader(io.StringIO(csv_path.read_bytes().decode("utf-8-sig"),
                                        newline="")))
    assert len(table) >= 2
    assert any("Please keep this transcript" in cell for row in table[1:] for cell in row)
    assert csv_download.value.suggested_filename.endswith(".csv")

    with page.expect_download() as pdf_download:
        history.get_by_role("button", name=f"PDF {names[0]}").click()
    pdf = Path(pdf_download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")
    assert "Please keep this transcript" in _pdf_text(pdf)
    assert pdf_download.value.suggested_filename.endswith(".pdf")
