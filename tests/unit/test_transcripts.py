"""Transcript rendering: JSON, CSV and PDF bodies, and the download header."""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from pathlib import Path

import pytest

from lcx.model import Attachment, Author, Context, Conversation, Message, Subscriber
from lcx.transcripts import CSV_HEADER, Rendered, content_disposition, fold_to_core, render

GENERATED_AT = "2026-11-21T12:00:00.000Z"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FORMATS = ("json", "csv", "pdf")


def _message(seq: int, text: str | None = "hello", *, conversation_id: str = "c1",
             attachments: list[Attachment] | None = None, payload: object = None) -> Message:
    author = Author(type="agent", id="alice", name="Alice") if seq % 2 else \
        Author(type="subscriber", id="u-42", name="Ada")
    return Message(conversation_id=conversation_id, seq=seq, message_id=f"m{seq}",
                   author=author, type="text" if text is not None else "file",
                   at=f"2026-11-21T10:00:{seq:02d}.000Z", text=text, payload=payload,
                   attachments=attachments or [])


def _conversation(conversation_id: str = "c1") -> Conversation:
    at = "2026-11-21T10:00:00.000Z"
    return Conversation(
        id=conversation_id, request_id="r1", org_id="o1", tenant_id="t1", sub_handle="u-42",
        user_group_id="g1", provider="helvia", channel="bot", status="ended",
        subscriber=Subscriber(name="Ada"), context=Context(), participants=[], flags={},
        created_at=at, queued_at=at, last_activity_at=at, agent_id="alice",
        agent_name="Alice", accepted_at=at, ended_at="2026-11-21T11:00:00.000Z")


def _render(messages: list[Message], fmt: str, **kwargs: object) -> Rendered:
    conversations = {m.conversation_id: _conversation(m.conversation_id) for m in messages}
    return render(messages, conversations, fmt, org_id="o1",  # type: ignore[arg-type]
                  generated_at=GENERATED_AT, **kwargs)  # type: ignore[arg-type]


def _csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def _pdf_text(body: bytes) -> str:
    """The PDF's streams inflated, as Latin-1 text with string escapes undone (core fonts)."""
    chunks = [body.decode("latin-1")]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S):
        try:
            chunks.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            chunks.append(stream.decode("latin-1"))
    return re.sub(r"\\([()\\])", r"\1", "\n".join(chunks))


def test_json_items_are_agent_frame_data() -> None:
    """JSON has one item per message with the frame's camelCase fields and stable keys."""
    attachment = Attachment(url="https://f/a.png", name="a.png", content_type="image/png")
    messages = [_message(1, "hi", payload={"k": 1}), _message(2, None, attachments=[attachment])]
    rendered = _render(messages, "json")
    assert rendered.content_type == "application/json; charset=utf-8"
    assert rendered.filename is None
    first, second = json.loads(rendered.body)["items"]
    assert first == {"conversationId": "c1", "seq": 1, "messageId": "m1",
                     "author": {"type": "agent", "id": "alice", "name": "Alice"},
                     "type": "text", "text": "hi", "payload": {"k": 1}, "attachments": [],
                     "at": "2026-11-21T10:00:01.000Z"}
    assert second["text"] is None
    assert "payload" not in second
    assert second["attachments"] == [{"url": "https://f/a.png", "name": "a.png",
                                      "contentType": "image/png"}]


def test_csv_parses_back_with_quoting_of_commas_quotes_and_newlines() -> None:
    """Commas, quotes and line breaks in text survive a round trip through the csv module."""
    tricky = 'a, "quoted" word\nsecond line\r\nthird'
    attachments = [Attachment(url="https://f/1"), Attachment(url="https://f/2")]
    rendered = _render([_message(1, tricky, attachments=attachments)], "csv",
                       conversation_id="c1")
    assert rendered.content_type == "text/csv; charset=utf-8"
    assert rendered.filename == "transcript-o1-c1.csv"
    assert not rendered.body.startswith(b"\xef\xbb\xbf")
    header, row = _csv_rows(rendered.body)
    assert header == list(CSV_HEADER)
    assert row == ["c1", "1", "2026-11-21T10:00:01.000Z", "agent", "alice", "Alice", "text",
                   tricky, "https://f/1 https://f/2", ""]


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx",
                                  '=HYPERLINK("http://evil","x")'])
def test_csv_neutralises_formula_injection(text: str) -> None:
    """A cell a spreadsheet would run as a formula starts with a single quote."""
    message = Message(conversation_id="c1", seq=2, message_id="m2", type="text",
                      author=Author(type="subscriber", name=text), at=GENERATED_AT, text=text)
    row = _csv_rows(_render([message], "csv").body)[1]
    assert row[CSV_HEADER.index("text")] == "'" + text
    assert row[CSV_HEADER.index("authorName")] == "'" + text


def test_csv_leaves_ordinary_cells_alone() -> None:
    """Cells that are not formulas, including those with a sign inside, are unchanged."""
    row = _csv_rows(_render([_message(1, "1-2 = 3 'ok'")], "csv").body)[1]
    assert row[CSV_HEADER.index("text")] == "1-2 = 3 'ok'"


def test_pdf_is_a_pdf_holding_headings_and_messages() -> None:
    """The PDF starts with %PDF-, and its text has the title, heading and each message."""
    messages = [_message(1, "Hello (there) Ada"), _message(2, "Thanks, Alice"),
                _message(3, "bye", conversation_id="c2")]
    rendered = _render(messages, "pdf")
    assert rendered.content_type == "application/pdf"
    assert rendered.filename == "transcript-o1-all.pdf"
    assert rendered.body.startswith(b"%PDF-")
    assert rendered.body.rstrip().endswith(b"%%EOF")
    text = _pdf_text(rendered.body)
    for expected in ("Transcript", "Organization: o1", f"Generated at: {GENERATED_AT}",
                     "Conversation c1", "Conversation c2", "Status: ended",
                     "Alice (agent): Hello (there) Ada", "Ada (subscriber): Thanks, Alice",
                     "Alice (agent): bye"):
        assert expected in text


def test_pdf_wraps_long_text_without_losing_words() -> None:
    """A long message, and an unbroken run longer than a line, are wrapped onto lines."""
    words = " ".join(f"word{i}" for i in range(300))
    rendered = _render([_message(1, words + " " + "x" * 500)], "pdf")
    text = _pdf_text(rendered.body)
    assert all(f"word{i}" in text for i in range(300))
    assert "x" * 500 not in text
    assert text.count("x" * 50) >= 5


def test_pdf_heading_without_conversation_details() -> None:
    """A message whose conversation is not in the mapping still gets a heading."""
    rendered = render([_message(1)], {}, "pdf", org_id="o1", generated_at=GENERATED_AT)
    assert "Conversation c1" in _pdf_text(rendered.body)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unicode_does_not_crash_any_format(fmt: str) -> None:
    """Greek, emoji, accents, control characters and odd names render in every format."""
    text = "Καλημέρα 😀 ő “quoted” \u2013 €\x00\x07 \u200b 中文 e\u0301"
    message = Message(conversation_id="c1", seq=1, message_id="m1", type="text",
                      author=Author(type="subscriber", name="Ἀθηνᾶ 🦉"), at=GENERATED_AT,
                      text=text)
    rendered = _render([message], fmt)
    assert rendered.body
    if fmt == "csv":
        assert _csv_rows(rendered.body)[1][CSV_HEADER.index("text")] == text
    if fmt == "json":
        assert json.loads(rendered.body)["items"][0]["text"] == text


def test_pdf_core_font_folds_what_it_cannot_show() -> None:
    """Without a font file, accents fold to the base letter and the rest becomes '?'."""
    assert fold_to_core("ő ŝ é “x” \u2013 €") == "o s é “x” \u2013 €"
    assert fold_to_core("Καλή 😀") == "???? ?"
    text = _pdf_text(_render([_message(1, "Ωmega ő")], "pdf").body)
    assert "?mega o" in text


@pytest.mark.skipif(not DEJAVU.exists(), reason="no DejaVu Sans on this machine")
def test_pdf_embeds_a_unicode_font_when_given_one() -> None:
    """With font_path the font is embedded and Greek and emoji text renders."""
    rendered = _render([_message(1, "Καλημέρα 😀")], "pdf", font_path=DEJAVU)
    assert rendered.body.startswith(b"%PDF-")
    assert b"DejaVuSans" in rendered.body


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_transcript_renders(fmt: str) -> None:
    """No messages still gives a valid body in every format."""
    rendered = render([], {}, fmt, org_id="o1", generated_at=GENERATED_AT)  # type: ignore[arg-type]
    if fmt == "json":
        assert json.loads(rendered.body) == {"items": []}
    elif fmt == "csv":
        assert _csv_rows(rendered.body) == [list(CSV_HEADER)]
    else:
        assert rendered.body.startswith(b"%PDF-")
        assert "No messages." in _pdf_text(rendered.body)


def test_filtered_conversation_without_messages_shows_its_heading() -> None:
    """A conversation passed in with no messages is listed with 'No messages.'."""
    rendered = render([], {"c9": _conversation("c9")}, "pdf", org_id="o1",
                      generated_at=GENERATED_AT, conversation_id="c9")
    assert rendered.filename == "transcript-o1-c9.pdf"
    text = _pdf_text(rendered.body)
    assert "Conversation c9" in text
    assert "No messages." in text


def test_unknown_format_is_refused() -> None:
    """A format other than json, csv or pdf raises ValueError."""
    with pytest.raises(ValueError, match="xml"):
        render([], {}, "xml", org_id="o1", generated_at=GENERATED_AT)  # type: ignore[arg-type]


def test_content_disposition_plain_ascii() -> None:
    """A plain ASCII name is quoted as is, with no filename* part."""
    assert content_disposition("transcript-o1-all.csv") == \
        'attachment; filename="transcript-o1-all.csv"'


@pytest.mark.parametrize(("name", "fallback", "encoded"), [
    ('a"b.csv', "a_b.csv", "a%22b.csv"),
    ("a\\b/c.pdf", "a_b_c.pdf", "a%5Cb%2Fc.pdf"),
    ("x\r\nSet-Cookie: y.csv", "x__Set-Cookie: y.csv", "x%0D%0ASet-Cookie%3A%20y.csv"),
    ("Καλή 😀.pdf", "____ _.pdf", "%CE%9A%CE%B1%CE%BB%CE%AE%20%F0%9F%98%80.pdf"),
])
def test_content_disposition_escapes(name: str, fallback: str, encoded: str) -> None:
    """Quotes, slashes, control and non-ASCII characters get an ASCII stand-in and filename*."""
    assert content_disposition(name) == \
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
