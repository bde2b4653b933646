"""Every error ends in the API.md error envelope, over a real socket on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from quart import Blueprint, request
from support.http import always_ready, serving

from lcx.api.bodies import json_response, read_json
from lcx.api.http_app import AppDeps, LcxApp, create_app
from lcx.errors import Conflict, MailboxFull
from lcx.metrics import Metrics

MAX_BODY = 1024


class Author(msgspec.Struct):
    name: str


class Note(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    author: Author
    tags: list[str] = []


test_routes = Blueprint("test_routes", __name__)


@test_routes.post("/notes")
async def create_note() -> Any:
    note = await read_json(request, Note)
    return json_response({"text": note.text, "author": note.author.name}, 201)


class Counted(msgspec.Struct):
    count: int


@test_routes.post("/counted")
async def counted() -> Any:
    body = await read_json(request, Counted)
    return json_response({"count": body.count})


@test_routes.get("/boom")
async def boom() -> Any:
    raise RuntimeError("secret-internal-detail")


@test_routes.get("/busy")
async def busy() -> Any:
    raise MailboxFull("conversation mailbox is full")


@test_routes.post("/accept")
async def accept() -> Any:
    raise Conflict("request already accepted", details={"requestId": "r1"})


def make_app() -> LcxApp:
    app = create_app(AppDeps(instance_id="i-test", max_body_bytes=MAX_BODY, readiness=always_ready,
                             metrics=Metrics()))
    app.register_blueprint(test_routes)
    return app


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    assert "x-request-id" in response.headers
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert isinstance(error["message"], str)
    return error


async def test_unknown_path_is_not_found() -> None:
    """An unknown path answers 404 not_found in the envelope."""
    async with serving(make_app()) as client:
        response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_wrong_method_is_method_not_allowed_with_allow() -> None:
    """A known path with the wrong method answers 405 with an Allow header."""
    async with serving(make_app()) as client:
        response = await client.delete("/healthz")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


async def test_declared_body_too_large() -> None:
    """A Content-Length over max_body_bytes answers 413 before the body is read."""
    async with serving(make_app()) as client:
        response = await client.post("/notes", content=b"x" * (MAX_BODY * 4),
                                     headers={"content-type": "application/json"})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"maxBytes": MAX_BODY}


async def test_chunked_body_too_large() -> None:
    """A chunked body that outgrows max_body_bytes while read answers 413."""
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        yield b"x" * (MAX_BODY * 2)
        yield b'"}'

    async with serving(make_app()) as client:
        response = await client.post("/notes", content=chunks(),
                                     headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


@pytest.mark.parametrize(("body", "fields"), [
    (b"{not json", ["$"]),
    (b"", ["$"]),
    (b"[1, 2]", ["$"]),
    (b'{"text": 1, "author": {"name": "a"}}', ["text"]),
    (b'{"text": "hi"}', ["author"]),
    (b'{"text": "hi", "author": {}}', ["author.name"]),
    (b'{"text": "hi", "author": {"name": "a"}, "tags": ["ok", 2]}', ["tags[1]"]),
    (b'{"text": "hi", "author": {"name": "a"}, "color": "red"}', ["color"]),
])
async def test_bad_json_body_is_invalid_request(body: bytes, fields: list[str]) -> None:
    """Malformed JSON, wrong types, missing or unknown fields answer 400 naming the field."""
    async with serving(make_app()) as client:
        response = await client.post("/notes", content=body,
                                     headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["details"] == {"fields": fields}


async def test_valid_json_body_is_decoded() -> None:
    """A well-formed body reaches the route as the decoded Struct."""
    async with serving(make_app()) as client:
        response = await client.post("/notes", json={"text": "hi", "author": {"name": "a"}})
    assert response.status_code == 201
    assert response.json() == {"text": "hi", "author": "a"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_is_unsupported(content_type: str) -> None:
    """A body that is not declared as JSON answers 415 unsupported_media_type."""
    async with serving(make_app()) as client:
        response = await client.post("/notes", content=b'{"text": "hi"}',
                                     headers={"content-type": content_type})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


async def test_route_exception_is_internal_with_trace_id(
        caplog: pytest.LogCaptureFixture) -> None:
    """An exception in a route answers 500 internal with a traceId and no traceback; the
    log carries the traceback under the same traceId."""
    caplog.set_level(logging.ERROR, logger="lcx.api.errors")
    async with serving(make_app()) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal"
    trace_id = error["details"]["traceId"]
    assert "Traceback" not in response.text
    assert "secret-internal-detail" not in response.text
    [record] = [r for r in caplog.records if r.name == "lcx.api.errors"]
    assert record.__dict__["traceId"] == trace_id
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_runtime_refusal_is_unavailable() -> None:
    """A full mailbox answers 503 unavailable with Retry-After."""
    async with serving(make_app()) as client:
        response = await client.get("/busy")
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert response.headers["retry-after"] == "1"


async def test_api_error_keeps_its_status_code_and_details() -> None:
    """An ApiError raised by a route answers with its own status, code and details."""
    async with serving(make_app()) as client:
        response = await client.post("/accept")
    assert response.status_code == 409
    assert error_of(response) == {"code": "conflict", "message": "request already accepted",
                                  "details": {"requestId": "r1"}}


async def test_integral_floats_are_integers() -> None:
    """JSON Schema counts 120.0 as an integer, so an integer field takes it; 1.5 is refused."""
    async with serving(make_app()) as client:
        accepted = await client.post("/counted", json={"count": 120.0})
        assert accepted.status_code == 200
        assert accepted.json() == {"count": 120}
        refused = await client.post("/counted", json={"count": 1.5})
        assert error_of(refused)["details"]["fields"] == ["count"]
        for broken in (b"[", b"[1,", b'{"count": 1'):
            truncated = await client.post("/counted", content=broken,
                                          headers={"Content-Type": "application/json"})
            assert truncated.status_code == 400, broken
