"""The attachment storage port: where uploaded files live (local files or S3 objects).

``adapters/attachments.py`` implements it twice (``local`` and ``s3``); the composition
root picks one from ``[attachments] backend``. Records of uploads live in the store
(table ``attachments``, :mod:`lcx.store.attachments`); this port only moves bytes and
makes download URLs.

Besides the port, this module holds the pure rules every backend and the HTTP layer share:

- :class:`UrlSigner`: lcx's own signed download URLs
  (``/livechat-attachments/{id}?expires=<unix>&signature=<hex>``), HMAC-SHA256 over the id
  and the expiry with a key derived from a secret (:meth:`UrlSigner.from_secret`);
- :func:`sanitize_name`: the file name kept for an upload (no path, no control characters,
  at most :data:`MAX_NAME_CHARS`);
- :func:`sniff_content_type`: the content type decided from the bytes (the client's
  declared type only breaks ties) and :func:`refusal_reason`, which refuses executables;
- :func:`storage_key`: the object key of an upload, made from its fresh id only.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

import filetype

__all__ = [
    "MAX_NAME_CHARS", "AttachmentStorage", "Download", "FileDownload", "RedirectDownload",
    "UrlSigner", "looks_like_text", "refusal_reason", "sanitize_name", "sniff_content_type",
    "storage_key",
]

MAX_NAME_CHARS = 255
DEFAULT_NAME = "attachment"
OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain"
DOWNLOAD_PATH = "/livechat-attachments"
"""Path of lcx's download route; signed URLs are ``{public_url}{DOWNLOAD_PATH}/{id}?...``."""

_SIGNING_LABEL = b"lcx/attachment-download-url/v1"
_SNIFF_BYTES = 8192
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class FileDownload:
    """Serve the bytes of a local file (the ``local`` backend)."""

    path: Path


@dataclass(frozen=True, slots=True)
class RedirectDownload:
    """Redirect the client to a URL that serves the bytes (a presigned S3 URL)."""

    url: str


Download = FileDownload | RedirectDownload
"""How the download route answers for one stored object."""


class AttachmentStorage(Protocol):
    """Stores and serves the bytes of uploaded files."""

    backend: str
    """``local`` or ``s3`` (recorded with each upload)."""

    signer: UrlSigner
    """Signs and checks lcx's own download URLs (whatever the backend)."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` durably (replacing nothing: keys are fresh ids).

        Raises:
            StoreUnavailable: the storage cannot be written.
        """

    async def url(self, key: str, *, attachment_id: str, name: str,
                  content_type: str) -> str:
        """A signed download URL that expires after ``attachments.url_ttl_seconds``."""

    async def download(self, key: str, *, attachment_id: str, name: str,
                       content_type: str) -> Download:
        """How to answer a (verified) download of ``key``.

        Raises:
            NotFound: the object is gone (``local``; S3 answers 404 itself).
            StoreUnavailable: the storage cannot be read.
        """

    async def delete(self, keys: list[str]) -> int:
        """Delete the objects (missing ones are ignored); how many were deleted.

        Raises:
            StoreUnavailable: some objects could not be deleted (others may have been).
        """


# -- signed URLs ------------------------------------------------------------------------------

class UrlSigner:
    """Makes and checks ``expires``/``signature`` pairs for download URLs; immutable.

    ``signature = hex(HMAC-SHA256(key, "<attachment id>\\n<expires>"))`` where ``expires``
    is a Unix time in whole seconds. ``clock`` returns the current Unix time (tests pass a
    fixed one).
    """

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if not key:
            raise ValueError("the URL signing key must not be empty")
        self._key = key
        self._clock = clock

    @classmethod
    def from_secret(cls, secret: str, *, clock: Callable[[], float] = time.time) -> UrlSigner:
        """A signer whose key is ``HMAC-SHA256(secret, fixed label)``.

        Deriving it (rather than using ``secret`` itself) keeps a download signature from
        ever being usable as anything signed with ``secret``, such as a JWT.
        """
        key = hmac.new(secret.encode("utf-8"), _SIGNING_LABEL, hashlib.sha256).digest()
        return cls(key, clock=clock)

    def signature(self, attachment_id: str, expires: int) -> str:
        """The hex signature of ``attachment_id`` valid until ``expires`` (Unix seconds)."""
        message = f"{attachment_id}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def query(self, attachment_id: str, ttl_seconds: int) -> str:
        """``expires=<now + ttl>&signature=<hex>`` for a URL of ``attachment_id``."""
        expires = int(self._clock()) + ttl_seconds
        return urlencode({"expires": expires,
                          "signature": self.signature(attachment_id, expires)})

    def url(self, public_url: str, attachment_id: str, ttl_seconds: int) -> str:
        """The full download URL of ``attachment_id`` under ``public_url``."""
        base = public_url.rstrip("/")
        return (f"{base}{DOWNLOAD_PATH}/{quote(attachment_id, safe='')}"
                f"?{self.query(attachment_id, ttl_seconds)}")

    def verify(self, attachment_id: str, expires: str | None, signature: str | None) -> bool:
        """Whether the pair is genuine for ``attachment_id`` and not expired; never raises."""
        if not expires or not signature or not _UNIX_TIME.fullmatch(expires):
            return False
        if int(expires) <= self._clock() or not signature.isascii():
            return False
        return hmac.compare_digest(self.signature(attachment_id, int(expires)),
                                   signature.lower())


# -- names and keys ---------------------------------------------------------------------------

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MAX_EXTENSION_CHARS = 16


def sanitize_name(raw: str | None) -> str:
    """The name an upload is kept and offered under; never empty, never a path.

    Keeps the last path component (``/`` and ``\\`` both separate), drops control and
    format characters (including bidirectional overrides), trims spaces and trailing
    dots, and cuts it to :data:`MAX_NAME_CHARS` characters keeping a short extension.
    An empty result becomes ``attachment``.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = name.strip().rstrip(". ")
    if name in ("", "."):
        return DEFAULT_NAME
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= _MAX_EXTENSION_CHARS:
        return f"{stem[:MAX_NAME_CHARS - len(extension) - 1]}.{extension}"
    return name[:MAX_NAME_CHARS]


def storage_key(attachment_id: str, created: datetime) -> str:
    """The object key of an upload: ``YYYY/MM/DD/<id>`` (UTC date of the upload).

    Raises:
        ValueError: ``attachment_id`` is not a plain id (letters, digits, ``-``, ``_``).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", attachment_id):
        raise ValueError(f"not a plain id: {attachment_id!r}")
    return f"{created:%Y/%m/%d}/{attachment_id}"


# -- content types ----------------------------------------------------------------------------

_TEXT_TYPES = frozenset({
    "text/plain", "text/csv", "text/tab-separated-values", "text/markdown", "text/calendar",
    "text/vcard", "text/x-vcard", "application/json",
})
"""Text types a client may declare for bytes that look like text; any other (HTML, SVG,
XML, scripts) is kept as ``text/plain``."""

_ZIP_CONTAINERS = frozenset({
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/epub+zip",
})
"""Formats that are ZIP archives inside: sniffed as ZIP, they keep the declared type."""

_MACH_O = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
           b"\xca\xfe\xba\xbe")
EXECUTABLE_TYPES = frozenset({
    "application/x-msdownload", "application/x-executable", "application/x-mach-binary",
})
"""Sniffed types that are refused: native programs (PE, ELF, Mach-O)."""

BLOCKED_EXTENSIONS = frozenset({
    "exe", "com", "scr", "pif", "cpl", "msi", "msp", "bat", "cmd", "ps1", "vbs", "vbe",
    "jse", "wsf", "wsh", "hta", "lnk", "reg",
})
"""Name extensions refused whatever the bytes: Windows runs these on a double click."""

_TEXT_CONTROLS = frozenset("\t\n\r\f\v\b\x1b")


def _media_type(declared: str | None) -> str:
    """``Text/CSV; charset=utf-8`` -> ``text/csv``."""
    return (declared or "").split(";", 1)[0].strip().lower()


def looks_like_text(head: bytes, *, complete: bool) -> bool:
    """Whether ``head`` (the first bytes; all of them when ``complete``) reads as text.

    Text is UTF-8 (or UTF-16 with a byte-order mark) with no NUL and at most one other
    control character in a hundred (tabs, newlines, form feeds and ESC are fine).
    """
    try:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = codecs.getincrementaldecoder("utf-16")().decode(
                head[:len(head) - len(head) % 2], final=complete)
        elif b"\x00" in head:
            return False
        else:
            text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    controls = sum(1 for ch in text
                   if (ch < " " and ch not in _TEXT_CONTROLS) or ch == "\x7f")
    return controls * 100 <= len(text)


def _magic_type(head: bytes) -> str | None:
    if head.startswith(_MACH_O):
        return "application/x-mach-binary"
    kind = filetype.guess(head)
    return None if kind is None else str(kind.mime)


def sniff_content_type(data: bytes, declared: str | None = None) -> str:
    """The content type of ``data``, decided from its bytes.

    A file signature wins unless the bytes also read as text (short signatures such as
    ``BM`` or ``MZ`` start ordinary sentences too): then the signature is kept only when
    the client declared that very type. Text is ``text/plain``, or the declared type when
    it is one of a few harmless text types (CSV, Markdown, JSON...). A ZIP keeps a
    declared ZIP-based office type. Anything else is ``application/octet-stream``.
    """
    head = data[:_SNIFF_BYTES]
    wanted = _media_type(declared)
    magic = _magic_type(head)
    text = looks_like_text(head, complete=len(data) <= _SNIFF_BYTES)
    if magic is not None and (not text or wanted == magic):
        return wanted if magic == "application/zip" and wanted in _ZIP_CONTAINERS else magic
    if text:
        return wanted if wanted in _TEXT_TYPES else TEXT_PLAIN
    return OCTET_STREAM


def refusal_reason(name: str, content_type: str) -> str | None:
    """Why an upload is refused (``"executable"``), or ``None`` when it is accepted."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    if content_type in EXECUTABLE_TYPES or extension in BLOCKED_EXTENSIONS:
        return "executable"
    return None
