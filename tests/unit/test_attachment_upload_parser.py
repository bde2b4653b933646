"""The I/O-free multipart reader of uploads: the file part, fields, limits and errors."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from lcx.api.attachments import MAX_FIELD_BYTES, UploadParser
from lcx.errors import InvalidRequest, PayloadTooLarge

BOUNDARY = "b0undary"


def part(name: str, data: bytes, *, filename: str | None = None,
         content_type: str | None = None) -> bytes:
    """One multipart part."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def parse(data: bytes, *, chunk: int = 7, max_file_bytes: int = 1000) -> UploadParser:
    """Feed ``data`` in small chunks, then finish."""
    parser = UploadParser(BOUNDARY.encode(), max_file_bytes=max_file_bytes)
    for start in range(0, len(data), chunk):
        parser.feed(data[start:start + chunk])
    parser.finish()
    return parser


def test_file_and_fields_are_read_across_chunks() -> None:
    """The file's bytes, name and declared type and the fields come through in any chunking."""
    content = bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    parser = parse(body(part("conversationId", b"c-1"),
                        part("file", content, filename="a.bin", content_type="image/png"),
                        part("other", b"ignored")))
    assert bytes(parser.data) == content
    assert parser.filename == "a.bin"
    assert parser.declared_type == "image/png"
    assert parser.fields == {"conversationId": "c-1", "other": "ignored"}


def test_missing_file_part_names_the_field() -> None:
    """No ``file`` part is 400 naming ``file``."""
    with pytest.raises(InvalidRequest) as caught:
        parse(body(part("conversationId", b"c-1")))
    assert caught.value.details == {"fields": ["file"]}


def test_empty_file_is_refused() -> None:
    """A ``file`` part with no bytes is 400 naming ``file``."""
    with pytest.raises(InvalidRequest, match="empty") as caught:
        parse(body(part("file", b"", filename="empty.txt")))
    assert caught.value.details == {"fields": ["file"]}


def test_two_file_parts_are_refused() -> None:
    """Exactly one file per upload."""
    with pytest.raises(InvalidRequest, match="exactly one"):
        parse(body(part("file", b"1", filename="a"), part("file", b"2", filename="b")))


def test_file_over_the_limit_stops_the_read() -> None:
    """The file is refused as soon as it outgrows the limit, before the body ends."""
    parser = UploadParser(BOUNDARY.encode(), max_file_bytes=100)
    parser.feed(part("file", b"x" * 50, filename="a")[:-2])
    parser.feed(b"x" * 40)
    with pytest.raises(PayloadTooLarge) as caught:
        parser.feed(b"x" * 40)
    assert caught.value.details == {"maxBytes": 100}


def test_long_field_is_refused() -> None:
    """A field longer than the field limit is 400 naming it."""
    with pytest.raises(InvalidRequest) as caught:
        parse(body(part("conversationId", b"c" * (MAX_FIELD_BYTES + 1)),
                   part("file", b"1", filename="a")))
    assert caught.value.details == {"fields": ["conversationId"]}


def test_truncated_or_garbage_bodies_are_invalid() -> None:
    """A body that ends mid-part, or is not multipart at all, is 400."""
    with pytest.raises(InvalidRequest, match="malformed"):
        parse(body(part("file", b"abc", filename="a"))[:-10])
    with pytest.raises(InvalidRequest, match="malformed"):
        parse(b"just some text")


def test_too_many_parts_are_refused() -> None:
    """More parts than the limit is refused (werkzeug's 413)."""
    with pytest.raises(RequestEntityTooLarge):
        parse(body(*(part(f"f{i}", b"v") for i in range(40)), part("file", b"1", filename="a")))
