"""Conversation transcripts as JSON, CSV or PDF downloads (API.md section 6).

Pure functions: the HTTP layer loads the messages (``messages_between``) and the
conversations they belong to, calls :func:`render`, and sends ``Rendered.body`` with
``Rendered.content_type`` and, for downloads, :func:`content_disposition`.

Decisions:

* **JSON** items are the agent ``message`` frame's data (msgspec encoding of
  :class:`~lcx.model.Message`), with ``text`` and ``attachments`` always present (``null``
  and ``[]`` when empty) so consumers see stable keys; ``payload`` only when there is one.
* **CSV** is RFC 4180 (the ``csv`` module, CRLF line ends, minimal quoting), UTF-8 *without*
  a byte-order mark: a BOM turns the first header into ``\\ufeffconversationId`` for every
  program that reads the file, and spreadsheets import UTF-8 when asked. Cells that a
  spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) get
  a leading ``'``: message text is written by end users, and opening a transcript must not
  run their formulas (CSV injection, OWASP). A text of ``-5`` is shown as ``'-5``; that is
  the price.
* **PDF** (fpdf2) uses the built-in Helvetica unless ``font_path`` names a TrueType font to
  embed. The built-in fonts only know Windows-1252, and no dependency ships a Unicode font,
  so without ``font_path`` text is folded: accents outside Windows-1252 are dropped
  (``ő`` → ``o``) and whatever is left unencodable (Greek, CJK, emoji) becomes ``?``. With a
  Unicode font (e.g. DejaVu Sans) every character the font has is shown; missing glyphs
  (emoji) print as the font's blank box. Nothing ever raises on odd text.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import msgspec
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from lcx.model import Conversation, Message, parse_iso

__all__ = ["CSV_HEADER", "Rendered", "TranscriptFormat", "content_disposition", "render"]

TranscriptFormat = Literal["json", "csv", "pdf"]

CSV_HEADER = ("conversationId", "seq", "at", "authorType", "authorId", "authorName", "type",
              "text", "attachments", "private")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CORE_ENCODING = "windows-1252"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SAFE_FILENAME = re.compile(r'[^\x20-\x7e]|["\\/]')
_RFC5987_SAFE = "!#$&+^`|~"
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Rendered:
    """A rendered transcript: the bytes to send, their content type, a download name."""

    body: bytes
    content_type: str
    filename: str | None


def render(messages: Sequence[Message], conversations: Mapping[str, Conversation],
           fmt: TranscriptFormat, *, org_id: str, generated_at: str,
           conversation_id: str | None = None,
           font_path: str | Path | None = None) -> Rendered:
    """Render an organization's transcript in ``fmt``.

    ``messages`` are in transcript order (by conversation, then seq, as
    ``messages_between`` returns them); ``conversations`` maps ids to the conversations
    named in the PDF headings (missing ones get a heading with only the id).
    ``conversation_id`` is the request's filter and names the download (``all`` when
    ``None``); ``font_path`` is a TrueType font to embed in PDFs (see the module notes).

    Raises:
        ValueError: unknown ``fmt``, or ``generated_at`` is not a timestamp (PDF only).
        OSError, fpdf.errors.FPDFException: ``font_path`` cannot be read as a font.
    """
    if fmt == "json":
        return Rendered(render_json(messages), "application/json; charset=utf-8", None)
    name = f"transcript-{org_id}-{conversation_id or 'all'}.{fmt}"
    if fmt == "csv":
        return Rendered(render_csv(messages), "text/csv; charset=utf-8", name)
    if fmt == "pdf":
        body = render_pdf(messages, conversations, org_id=org_id, generated_at=generated_at,
                          font_path=font_path)
        return Rendered(body, "application/pdf", name)
    raise ValueError(f"unknown transcript format: {fmt!r}")


def content_disposition(filename: str) -> str:
    """A ``Content-Disposition: attachment`` value naming ``filename``.

    ``filename`` carries an ASCII stand-in (non-ASCII, control characters, quotes, slashes
    and backslashes become ``_``); when that differs from the real name, ``filename*``
    (RFC 5987, UTF-8, percent-encoded) carries the real one for clients that read it.
    """
    fallback = _SAFE_FILENAME.sub("_", filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe=_RFC5987_SAFE)}"
    return value


# --- JSON -----------------------------------------------------------------------------


def json_item(message: Message) -> dict[str, Any]:
    """One message as the agent ``message`` frame's data, with stable keys."""
    item: dict[str, Any] = msgspec.to_builtins(message)
    item.setdefault("text", None)
    item.setdefault("attachments", [])
    return item


def render_json(messages: Iterable[Message]) -> bytes:
    """``{"items": [...]}`` with one :func:`json_item` per message."""
    return _json.encode({"items": [json_item(m) for m in messages]})


# --- CSV ------------------------------------------------------------------------------


def neutralise(cell: str) -> str:
    """``cell`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def csv_row(message: Message) -> list[str | int]:
    """One message as a CSV row in :data:`CSV_HEADER` order."""
    author = message.author
    cells = (message.conversation_id, message.at, author.type, author.id or "",
             author.name or "", message.type, message.text or "",
             " ".join(a.url for a in message.attachments))
    conversation, at, *rest = (neutralise(c) for c in cells)
    return [conversation, message.seq, at, *rest, "true" if message.private else ""]


def render_csv(messages: Iterable[Message]) -> bytes:
    """A header line and one row per message, RFC 4180, UTF-8 without a BOM."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_row(m) for m in messages)
    return out.getvalue().encode("utf-8")


# --- PDF ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    try:
        char.encode(_CORE_ENCODING)
    except UnicodeEncodeError:
        pass
    else:
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char)
                   if not unicodedata.combining(c))
    try:
        base.encode(_CORE_ENCODING)
    except UnicodeEncodeError:
        return "?"
    return base or "?"


def fold_to_core(text: str) -> str:
    """``text`` reduced to what the built-in PDF fonts can show (Windows-1252)."""
    try:
        text.encode(_CORE_ENCODING)
    except UnicodeEncodeError:
        return "".join(_fold_char(c) for c in text)
    return text


def _clean(text: str) -> str:
    """Line ends to ``\\n``, tabs to spaces, other control characters dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return _CONTROL.sub("", text)


class _TranscriptPdf(FPDF):
    """A4 portrait pages, a page-number footer, and word wrap measured once per character."""

    def __init__(self, font_path: str | Path | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.font_name = "Helvetica"
        self.core_fonts_encoding = _CORE_ENCODING
        if font_path is not None:
            self.font_name = "TranscriptFont"
            self.add_font(self.font_name, "", font_path)
        self.char_widths: dict[tuple[str, str, float, str], float] = {}
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 15, 15)

    def text_for_font(self, text: str) -> str:
        """``text`` cleaned, and folded when the font is a built-in one."""
        text = _clean(text)
        return text if self.font_name != "Helvetica" else fold_to_core(text)

    def style(self, size: float, *, bold: bool = False) -> None:
        """Select the transcript font at ``size`` points (bold only for the built-in one)."""
        core = self.font_name == "Helvetica"
        self.set_font(self.font_name, "B" if bold and core else "", size)

    def paragraph(self, text: str, *, size: float = 10, bold: bool = False,
                  height: float = 5) -> None:
        """Write ``text`` wrapped to the page width, then move to the next line."""
        self.style(size, bold=bold)
        width = self.epw
        for raw in self.text_for_font(text).split("\n"):
            for piece in self.wrap(raw, width):
                self.cell(width, height, piece, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def measure(self, text: str) -> float:
        """Width of ``text`` in the current font: the sum of its (cached) character widths.

        Equal to ``get_string_width`` for unshaped text, which costs ~30 µs a call.
        """
        key = (self.font_family, self.font_style, self.font_size_pt)
        total = 0.0
        for char in text:
            width = self.char_widths.get((*key, char))
            if width is None:
                width = self.char_widths[(*key, char)] = self.get_string_width(char)
            total += width
        return total

    def wrap(self, text: str, width: float) -> list[str]:
        """Greedy word wrap of one line of ``text`` to ``width`` in the current font.

        fpdf2's ``multi_cell`` re-measures the whole line for every character it adds
        (quadratic in the line length, about 1 ms per message); measuring each word once
        (:meth:`measure`) makes a 5,000-message transcript several times faster.
        """
        lines: list[str] = []
        line, line_width = "", 0.0
        space = self.measure(" ")
        for word in text.split(" "):
            word_width = self.measure(word)
            if line and line_width + space + word_width <= width:
                line, line_width = f"{line} {word}", line_width + space + word_width
                continue
            if line:
                lines.append(line)
            if word_width > width:
                *parts, word = self.split_word(word, width)
                lines.extend(parts)
                word_width = self.measure(word)
            line, line_width = word, word_width
        lines.append(line)
        return lines

    def split_word(self, word: str, width: float) -> list[str]:
        """``word`` cut into pieces no wider than ``width`` (at least one character each)."""
        pieces, piece, piece_width = [], "", 0.0
        for char in word:
            char_width = self.measure(char)
            if piece and piece_width + char_width > width:
                pieces.append(piece)
                piece, piece_width = "", 0.0
            piece, piece_width = piece + char, piece_width + char_width
        return [*pieces, piece]

    def footer(self) -> None:
        """Page ``n/total`` at the bottom of each page."""
        self.set_y(-12)
        self.style(8)
        self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="C")


def _participant(name: str | None, ident: str | None) -> str:
    if name and ident and name != ident:
        return f"{name} ({ident})"
    return name or ident or "-"


def conversation_heading(conversation_id: str,
                         conversation: Conversation | None) -> list[str]:
    """The lines that open one conversation in the PDF."""
    if conversation is None:
        return [f"Conversation {conversation_id}", "(conversation details unavailable)"]
    c = conversation
    return [
        f"Conversation {c.id}",
        f"Tenant: {c.tenant_id}    Subscriber: "
        f"{_participant(c.subscriber.name, c.sub_handle)}    "
        f"Agent: {_participant(c.agent_name, c.agent_id)}",
        f"Started: {c.accepted_at or c.created_at}    Ended: {c.ended_at or '-'}    "
        f"Status: {c.status}",
    ]


def message_line(message: Message) -> str:
    """``[at] author (author type): text``, with attachments listed after the text and
    internal notes marked ``[internal note]`` after the author."""
    author = message.author
    who = author.name or author.id or author.type
    text = message.text if message.text is not None else f"<{message.type}>"
    attached = "".join(f"\n    attachment: {a.name or a.url} <{a.url}>"
                       for a in message.attachments)
    note = " [internal note]" if message.private else ""
    return f"[{message.at}] {who} ({author.type}){note}: {text}{attached}"


def _conversation_order(messages: Sequence[Message],
                        conversations: Mapping[str, Conversation]) -> list[str]:
    seen = dict.fromkeys(m.conversation_id for m in messages)
    return [*seen, *sorted(c for c in conversations if c not in seen)]


def _write_conversation(pdf: _TranscriptPdf, conversation_id: str,
                        conversation: Conversation | None,
                        messages: Sequence[Message]) -> None:
    title, *details = conversation_heading(conversation_id, conversation)
    pdf.ln(4)
    pdf.paragraph(title, size=12, bold=True, height=6)
    for detail in details:
        pdf.paragraph(detail, size=9, height=4.5)
    pdf.ln(2)
    if not messages:
        pdf.paragraph("No messages.")
    for message in messages:
        pdf.paragraph(message_line(message))


def render_pdf(messages: Sequence[Message], conversations: Mapping[str, Conversation], *,
               org_id: str, generated_at: str,
               font_path: str | Path | None = None) -> bytes:
    """A PDF transcript: a title block, then each conversation's heading and messages.

    Raises:
        ValueError: ``generated_at`` is not a timestamp.
    """
    pdf = _TranscriptPdf(font_path)
    pdf.set_creation_date(parse_iso(generated_at))
    pdf.set_title("Transcript")
    pdf.set_creator("lcx")
    pdf.add_page()
    pdf.paragraph("Transcript", size=18, bold=True, height=9)
    pdf.paragraph(f"Organization: {org_id}")
    pdf.paragraph(f"Generated at: {generated_at}")
    pdf.paragraph(f"Messages: {len(messages)}")
    by_conversation: dict[str, list[Message]] = {}
    for message in messages:
        by_conversation.setdefault(message.conversation_id, []).append(message)
    order = _conversation_order(messages, conversations)
    if not order:
        pdf.ln(4)
        pdf.paragraph("No messages.")
    for conversation_id in order:
        _write_conversation(pdf, conversation_id, conversations.get(conversation_id),
                            by_conversation.get(conversation_id, []))
    return bytes(pdf.output())
