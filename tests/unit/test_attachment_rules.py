"""The pure rules of attachments: signed URLs, file names, content types, storage keys."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from lcx.attachments import (
    MAX_NAME_CHARS,
    UrlSigner,
    looks_like_text,
    refusal_reason,
    sanitize_name,
    sniff_content_type,
    storage_key,
)

NOW = 1_800_000_000.0
ID = "0193a6b2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"


def signer(now: float = NOW) -> UrlSigner:
    return UrlSigner.from_secret("a-secret", clock=lambda: now)


def png() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


# --- signed URLs -----------------------------------------------------------------------------

def test_signed_url_verifies_until_it_expires() -> None:
    """A URL made now verifies during its ttl and not at or after its expiry."""
    url = signer().url("http://lcx.example/", ID, 60)
    parts = urlsplit(url)
    assert parts.path == f"/livechat-attachments/{ID}"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["expires"] == str(int(NOW) + 60)
    assert signer(NOW + 59).verify(ID, query["expires"], query["signature"])
    assert not signer(NOW + 60).verify(ID, query["expires"], query["signature"])


@pytest.mark.parametrize("tamper", ["id", "expires", "signature", "missing", "garbage"])
def test_tampered_urls_are_refused(tamper: str) -> None:
    """Changing the id, the expiry or the signature, or dropping one, fails verification."""
    expires = str(int(NOW) + 600)
    signature = signer().signature(ID, int(expires))
    attachment_id = ID
    if tamper == "id":
        attachment_id = ID[:-1] + "c"
    elif tamper == "expires":
        expires = str(int(expires) + 1)
    elif tamper == "signature":
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    elif tamper == "missing":
        signature = ""
    else:
        expires = "1e99"
    assert not signer().verify(attachment_id, expires, signature)
    assert signer().verify(ID, str(int(NOW) + 600), signer().signature(ID, int(NOW) + 600))


def test_other_secret_or_odd_input_never_verifies() -> None:
    """Another secret's signature, non-ASCII input or absurd expiries fail without raising."""
    expires = int(NOW) + 600
    other = UrlSigner.from_secret("another", clock=lambda: NOW).signature(ID, expires)
    assert not signer().verify(ID, str(expires), other)
    assert not signer().verify(ID, str(expires), "é" * 64)
    assert not signer().verify(ID, "9" * 5000, "00")
    assert not signer().verify(ID, None, None)


def test_signature_is_case_insensitive_hex() -> None:
    """An upper-cased signature (some clients normalise URLs) still verifies."""
    expires = int(NOW) + 600
    assert signer().verify(ID, str(expires), signer().signature(ID, expires).upper())


# --- names -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ada\\cv.docx", "cv.docx"),
    ("evil\u202egpj.exe", "evilgpj.exe"),
    ("line\r\nbreak\x00.txt", "linebreak.txt"),
    ("  spaced.txt. . ", "spaced.txt"),
    ("..", "attachment"),
    ("", "attachment"),
    (None, "attachment"),
    ("dir/", "attachment"),
])
def test_names_are_sanitized(raw: str | None, expected: str) -> None:
    """Only the last path part is kept, without control or bidi characters; never empty."""
    assert sanitize_name(raw) == expected


def test_long_names_are_cut_keeping_the_extension() -> None:
    """A name over 255 characters is cut to 255, keeping a short extension."""
    name = sanitize_name("x" * 400 + ".jpeg")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith("x.jpeg")
    assert len(sanitize_name("y" * 400)) == MAX_NAME_CHARS


# --- content types ---------------------------------------------------------------------------

def test_png_declared_as_text_is_png() -> None:
    """The bytes decide: a PNG declared as text/plain is image/png."""
    assert sniff_content_type(png(), "text/plain") == "image/png"


def test_plain_text_is_text_plain() -> None:
    """UTF-8 text with no declared type is text/plain."""
    assert sniff_content_type("Grüße, world!\nline 2\n".encode()) == "text/plain"


def test_unknown_binary_is_octet_stream() -> None:
    """Bytes with no known signature that are not text are application/octet-stream."""
    assert sniff_content_type(bytes(range(256)) * 4, "image/png") == "application/octet-stream"


def test_declared_type_breaks_ties_only() -> None:
    """A harmless declared text type is kept for text; HTML and SVG become text/plain."""
    assert sniff_content_type(b"a,b\n1,2\n", "text/csv; charset=utf-8") == "text/csv"
    assert sniff_content_type(b"<html><script>x</script></html>", "text/html") == "text/plain"
    assert sniff_content_type(b"<svg onload='x'/>", "image/svg+xml") == "text/plain"


def test_text_that_starts_like_a_signature_stays_text() -> None:
    """Text starting with a short signature ("BM", "MZ") is text unless declared so."""
    assert sniff_content_type(b"BM is a fine sentence opener.\n") == "text/plain"
    assert sniff_content_type(b"MZ text\n") == "text/plain"


def test_text_heuristic() -> None:
    """NULs or invalid UTF-8 are not text; a cut multibyte character at the end is."""
    assert looks_like_text("é".encode() * 10, complete=True)
    assert looks_like_text("é".encode()[:1], complete=False)
    assert not looks_like_text(b"abc\x00def", complete=True)
    assert not looks_like_text(b"\xc3\x28\xa0\xa1", complete=True)
    assert looks_like_text("hi\n".encode("utf-16"), complete=True)


@pytest.mark.parametrize(("data", "name"), [
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", "tool.bin"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(56), "a.out"),
    (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(24), "app"),
    (b"echo hi\r\n", "run.bat"),
    (b"Write-Host hi\n", "Run.PS1"),
])
def test_executables_are_refused(data: bytes, name: str) -> None:
    """Native programs (by bytes) and double-click script names (by extension) are refused."""
    assert refusal_reason(name, sniff_content_type(data)) == "executable"


def test_ordinary_files_are_accepted() -> None:
    """Images, text and unknown binaries are accepted."""
    assert refusal_reason("a.png", sniff_content_type(png())) is None
    assert refusal_reason("notes", "text/plain") is None
    assert refusal_reason("data.bin", "application/octet-stream") is None


# --- keys ------------------------------------------------------------------------------------

def test_storage_key_is_dated_and_refuses_paths() -> None:
    """Keys are ``YYYY/MM/DD/<id>``; an id with path characters is refused."""
    moment = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)
    assert storage_key(ID, moment) == f"2026/11/21/{ID}"
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="plain id"):
            storage_key(bad, moment)
