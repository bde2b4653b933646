"""A JSON body whose strings are not UTF-8 is a 400, not a 500 (msgspec raises
UnicodeDecodeError for it, which is not one of its DecodeErrors)."""

from __future__ import annotations

import msgspec
import pytest

from lcx.api.bodies import decode_json
from lcx.errors import InvalidRequest


class _Body(msgspec.Struct):
    name: str


@pytest.mark.parametrize("body", [b'{"other": "\xff"}', b'{"name": "\xff"}'])
def test_a_string_that_is_not_utf8_is_invalid_json(body: bytes) -> None:
    """Whether the bad string is in a kept field or an ignored one."""
    with pytest.raises(InvalidRequest) as caught:
        decode_json(body, _Body)
    assert caught.value.details == {"fields": ["$"]}
    assert "not UTF-8" in caught.value.message
