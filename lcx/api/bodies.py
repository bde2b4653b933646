"""JSON request and response bodies (API.md section 1), encoded and decoded with msgspec."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, cast

import msgspec
from quart.wrappers import Request
from quart_trio.wrappers import TrioResponse

from lcx.errors import InvalidRequest, UnsupportedMediaType

__all__ = ["JSON_CONTENT_TYPE", "MAX_JSON_DEPTH", "decode_json", "field_path", "json_response",
           "read_json", "refuse_deep_nesting", "refuse_huge_integers", "refuse_nul",
           "require_json"]

T = TypeVar("T")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `(?P<field>[^`]+)`")
_encoder = msgspec.json.Encoder()
_msgpack_probe = msgspec.msgpack.Encoder()


def json_response(payload: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> TrioResponse:
    """Return ``payload`` (anything msgspec encodes, Structs included) as a JSON response."""
    return TrioResponse(_encoder.encode(payload), status=status, headers=dict(headers or {}),
                        content_type=JSON_CONTENT_TYPE)


_decoders: dict[object, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: object) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


def field_path(error: msgspec.ValidationError) -> str:
    """Return the path of the field ``error`` is about: ``user.name``, ``items[0]``, ``$``.

    ``$`` stands for the whole body (for example an array where an object was expected).
    """
    message = str(error)
    at = _AT_PATH.search(message)
    path = at["path"] if at else ""
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named['field']}"
    return path.removeprefix(".") or "$"


async def read_json(request: Request, type_: type[T]) -> T:
    """Read the request body as JSON and decode it into ``type_`` (usually a Struct).

    Raises:
        UnsupportedMediaType: the content type is not ``application/json`` (or ``+json``).
        InvalidRequest: the body is not JSON or nests deeper than ``MAX_JSON_DEPTH``, or
            a field has the wrong type, is missing or is unknown to a Struct that forbids
            unknown fields, or a kept integer does not fit 64 bits; ``details.fields``
            lists the offending paths (msgspec stops at the first one, so there is one).
        werkzeug.exceptions.RequestEntityTooLarge: the body outgrew ``MAX_CONTENT_LENGTH``
            while being read (the error handlers render it as 413 ``payload_too_large``).
    """
    require_json(request.mimetype)
    body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    return decode_json(body, type_)


def require_json(mimetype: str) -> None:
    """Refuse a body whose (lowercased, parameter-free) media type is not JSON.

    Raises:
        UnsupportedMediaType: not ``application/json`` nor ``application/*+json``.
    """
    if not _is_json(mimetype):
        raise UnsupportedMediaType(
            f"expected a JSON body (application/json), got {mimetype or 'none'}",
            details={"expected": "application/json"})


def decode_json(body: bytes, type_: type[T]) -> T:
    """Decode a JSON request body into ``type_`` with every check of :func:`read_json`
    (NUL, depth, types, 64-bit integers); the Quart routes and the lean routes share it.

    Raises:
        InvalidRequest: as :func:`read_json`.
    """
    refuse_nul(body)
    refuse_deep_nesting(body)
    try:
        decoded = cast(T, _decoder(type_).decode(body))
    except msgspec.ValidationError as exc:
        decoded = _decode_leniently(body, type_, exc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _not_json(exc) from exc
    _refuse_64_bit_overflow(decoded)
    return decoded


def _not_json(exc: msgspec.DecodeError | UnicodeDecodeError) -> InvalidRequest:
    # msgspec raises UnicodeDecodeError for a string that is not UTF-8
    reason = "a string is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
    return InvalidRequest(f"request body is not valid JSON: {reason}",
                          details={"fields": ["$"]})


def _refuse_64_bit_overflow(decoded: object) -> None:
    """Free-form values (metadata, payloads) may hold any JSON number, but the bus and the
    stores carry 64-bit integers only; typed fields have tighter bounds of their own.
    Unknown fields are gone by now, so only what would be kept is checked."""
    try:
        _msgpack_probe.encode(decoded)
    except OverflowError:
        raise InvalidRequest("an integer in the body is outside the 64-bit range",
                             details={"fields": ["$"]}) from None


def _decode_leniently(body: bytes, type_: type[T], error: msgspec.ValidationError) -> T:
    """Second chance for a body the typed decoder refused: JSON does not tell ``120.0``
    from ``120`` (JSON Schema calls both integers), so integral floats become ints."""
    try:
        loose = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _not_json(exc) from exc
    try:
        return msgspec.convert(_integral_floats_as_ints(loose), type_)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidRequest(f"invalid request body: {error}",
                             details={"fields": [field_path(error)]}) from error


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


Timestamp = Annotated[str, msgspec.Meta(
    min_length=20, max_length=40, extra_json_schema={"format": "date-time"},
    description="RFC 3339 timestamp with a timezone, e.g. 2026-11-21T10:00:00.000Z")]
"""A timestamp as clients send it in queries and bodies (parsed by the handler)."""


MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects a JSON body or websocket frame may have."""

_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def refuse_deep_nesting(text: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON whose arrays and objects nest deeper than ``limit``, before decoding it.

    msgspec cannot bound the depth it decodes: it recurses until Python's recursion
    limit and raises ``RecursionError``. Bodies that cannot reach the limit (fewer
    opening brackets than ``limit``) pass without a scan; otherwise everything but the
    brackets outside strings is dropped and each pass removes the innermost pairs, so
    ``limit`` passes leave brackets only when something nests deeper. Every step is a
    bytes method, linear in the body.

    Raises:
        InvalidRequest: too deeply nested (``details.maxDepth`` is the limit), or the
            brackets outside strings do not pair up (not JSON, and msgspec would recurse
            into them all the same).
    """
    raw = text.encode() if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    brackets = _outside_strings(raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return
        if shorter == brackets:  # brackets outside strings that never pair up
            raise InvalidRequest("request body is not valid JSON: unbalanced brackets",
                                 details={"fields": ["$"]})
        brackets = shorter
    raise InvalidRequest(f"JSON nests deeper than {limit} levels",
                         details={"fields": ["$"], "maxDepth": limit})


_LONG_INTEGER = re.compile(rb"(?<![.\deE+\-])-?\d{17,}")


def refuse_huge_integers(text: bytes | str) -> None:
    """Refuse JSON holding an integer of 17 digits or more outside strings.

    Every such integer is over ``MAX_SAFE_INTEGER`` (2**53 - 1): no JSON client holds it
    exactly, and past 2**64 the bus cannot carry it. Typed fields check their own range;
    this covers free-form values (metadata, payloads, flag values). Fraction and
    exponent digits do not count.

    Raises:
        InvalidRequest: naming ``$`` (the integer may be anywhere).
    """
    raw = text.encode() if isinstance(text, str) else text
    if _LONG_INTEGER.search(raw) is None or _LONG_INTEGER.search(_outside_strings(raw)) is None:
        return
    raise InvalidRequest("integers may have at most 16 digits (at most 2**53 - 1)",
                         details={"fields": ["$"]})


def _outside_strings(raw: bytes) -> bytes:
    """``raw`` JSON without its strings (escaped backslashes and quotes only occur inside
    strings; once they are gone, the odd pieces between quotes are the strings)."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(text: bytes | str, field: str = "$") -> None:
    """Refuse text holding a NUL character (raw, or ``\\u0000`` in JSON): no store keeps
    it the same way, and no client means it.

    Raises:
        InvalidRequest: naming ``field``.
    """
    raw = text.encode() if isinstance(text, str) else text
    # the escape is searched for only in text that holds one (a plain find is cheap)
    if b"\x00" in raw or (b"\\u0000" in raw and _NUL_ESCAPE.search(raw)):
        raise InvalidRequest("text may not contain NUL characters", details={"fields": [field]})


def refuse_not_utf8(body: bytes) -> None:
    """Refuse a JSON body that is not UTF-8 (RFC 8259 allows no other encoding), before a
    parser that would raise ``UnicodeDecodeError`` instead of a decode error sees it.

    Raises:
        InvalidRequest: naming ``$``.
    """
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8: {exc.reason} at byte {exc.start}",
                             details={"fields": ["$"]}) from exc
