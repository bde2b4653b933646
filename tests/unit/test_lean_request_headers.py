"""The lean routes' reading of a request head: the headers they use, decoded once.

The few headers read are those Quart's request would give (first of repeated ones, names
in any case), the header size is what Quart counts, and the bearer token found in an
``Authorization`` value is remembered without ever accepting a malformed one.
"""

from __future__ import annotations

from typing import Any

import pytest

from lcx.api.auth import token_of_header
from lcx.api.lean_routes import RawRequest
from lcx.errors import Unauthorized


def _scope(headers: list[tuple[bytes, bytes]], version: str = "1.1") -> Any:
    return {"type": "http", "http_version": version, "method": "POST", "path": "/messages",
            "headers": headers, "client": ("127.0.0.1", 5000)}


def test_the_used_headers_are_read_first_wins_in_any_case() -> None:
    request = RawRequest(_scope([
        (b"host", b"lcx"), (b"Content-Type", b"application/json"),
        (b"content-type", b"text/plain"), (b"authorization", b"Bearer abc"),
        (b"x-other", b"ignored"), (b"content-length", b"12")]))
    assert request.headers == {"host": "lcx", "content-type": "application/json",
                               "authorization": "Bearer abc", "content-length": "12"}
    assert request.mimetype == "application/json"
    assert request.content_length == 12


@pytest.mark.parametrize(("content_type", "mimetype"), [
    (b"application/json", "application/json"),
    (b"Application/JSON; charset=utf-8", "application/json"),
    (b"application/problem+json", "application/problem+json"),
    (b"", ""),
])
def test_the_mimetype_is_werkzeugs_for_any_content_type(content_type: bytes,
                                                         mimetype: str) -> None:
    assert RawRequest(_scope([(b"content-type", content_type)])).mimetype == mimetype


def test_a_chunked_body_has_no_declared_length() -> None:
    request = RawRequest(_scope([(b"content-length", b"5"),
                                 (b"transfer-encoding", b"chunked")]))
    assert request.content_length is None


def test_the_header_size_counts_every_header_as_quart_does() -> None:
    headers = [(b"host", b"lcx"), (b"x-long", b"v" * 100), (b"content-type", b"a/b")]
    expected = sum(len(n) + len(v) for n, v in headers) + len("Remote-Addr") + len("127.0.0.1")
    assert RawRequest(_scope(headers)).header_bytes() == expected
    no_host = [(b"x-long", b"v" * 100)]
    assert RawRequest(_scope(no_host, "1.0")).header_bytes() == \
        106 + len("Remote-Addr") + len("127.0.0.1") + len("Host")


def test_a_remembered_token_is_the_one_of_its_own_header() -> None:
    assert token_of_header("Bearer one.two.three") == "one.two.three"
    assert token_of_header("Bearer one.two.three") == "one.two.three"
    assert token_of_header("bearer   four.five") == "four.five"
    with pytest.raises(Unauthorized):
        token_of_header("Bearer one.two.three extra")
    with pytest.raises(Unauthorized):
        token_of_header("Basic one.two.three")
    with pytest.raises(Unauthorized):
        token_of_header("")
