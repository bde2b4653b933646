"""The lean routes answer ``POST /messages`` and ``POST /requests`` as the Quart routes do.

One list of cases (good bodies, bad JSON, nesting, wrong types, huge values, bad, expired
and other-organization tokens, missing headers, idempotent replays, wrong content types,
oversized and chunked bodies, other methods on the same paths) is driven through a real
server twice: once with the lean routes in front of Quart (the default) and once with
Quart serving everything. Each answer must match the documented contract (docs/api.md:
status, error code, ``X-Request-Id``, JSON content type) and the two runs must give the
same status, headers and body, up to the ids lcx makes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from support.livechat_app import LivechatApp, Tokens, livechat_app

import lcx.instance
from lcx.api.http_app import HOT_ROUTES, create_app
from lcx.api.lean_routes import LEAN_ROUTES, LeanRoutes

MAX_BODY = 100_000
_TOKENS = Tokens()
_BOT = _TOKENS.bot()
_JSON = {"Content-Type": "application/json"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VARYING_HEADERS = frozenset({"date", "x-request-id", "content-length"})


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _msg(**fields: Any) -> bytes:
    return _json({"tenantId": "t1", "subHandle": "u1", "text": "hi", **fields})


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@dataclass(frozen=True)
class Case:
    """One request and what the contract says of its answer."""

    name: str
    method: str
    path: str
    status: int
    code: str | None = None
    """The error envelope's code (None: a success body)."""
    body: bytes | Callable[[], AsyncIterator[bytes]] | None = None
    headers: dict[str, str] = field(default_factory=lambda: {**_BOT, **_JSON})


def _cases() -> list[Case]:
    deep = b"[" * 40 + b"]" * 40
    other_org = _TOKENS.bot(org="o2")
    return [
        Case("create", "POST", "/requests", 201, body=_json({"tenantId": "t1",
                                                             "subHandle": "u1"})),
        Case("create again is a conflict", "POST", "/requests", 409, "conflict",
             _json({"tenantId": "t1", "subHandle": "u1"})),
        Case("create without a group", "POST", "/requests", 400, "invalid_request",
             _json({"tenantId": "t2", "subHandle": "u2"})),
        Case("create for an unknown tenant", "POST", "/requests", 404, "not_found",
             _json({"tenantId": "nope", "subHandle": "u2"})),
        Case("create with an unconfigured provider", "POST", "/requests", 422,
             "unprocessable", _json({"tenantId": "t1", "subHandle": "u3",
                                     "provider": "genesys"})),
        Case("create missing subHandle", "POST", "/requests", 400, "invalid_request",
             _json({"tenantId": "t1"})),
        Case("create, subscriber of the wrong type", "POST", "/requests", 400,
             "invalid_request", _json({"tenantId": "t1", "subHandle": "u4",
                                       "subscriber": "Ada"})),
        Case("create, an array body", "POST", "/requests", 400, "invalid_request", b"[]"),
        Case("message", "POST", "/messages", 202, body=_msg()),
        Case("message with an id", "POST", "/messages", 202, body=_msg(id="m-1")),
        Case("the same id again (replay)", "POST", "/messages", 202, body=_msg(id="m-1")),
        Case("file without attachments", "POST", "/messages", 400, "invalid_request",
             _msg(type="file", text=None)),
        Case("rich without payload", "POST", "/messages", 400, "invalid_request",
             _msg(type="rich")),
        Case("postback with payload", "POST", "/messages", 202,
             body=_msg(type="postback", payload={"a": [1, 2.5, None]})),
        Case("unknown type", "POST", "/messages", 400, "invalid_request",
             _msg(type="video")),
        Case("text of the wrong type", "POST", "/messages", 400, "invalid_request",
             _msg(text=42)),
        Case("integral float where an int goes", "POST", "/messages", 202,
             body=_msg(attachments=[{"url": "https://x.example/a", "size": 12.0}],
                       type="file")),
        Case("text too long", "POST", "/messages", 400, "invalid_request",
             _msg(text="x" * 65_537)),
        Case("huge integer in a payload", "POST", "/messages", 400, "invalid_request",
             _msg(type="rich", payload={"n": 2**70})),
        Case("bad JSON", "POST", "/messages", 400, "invalid_request", b'{"tenantId": '),
        Case("not UTF-8", "POST", "/messages", 400, "invalid_request", b'{"a": "\xff"}'),
        Case("NUL in text", "POST", "/messages", 400, "invalid_request",
             _msg(text="a\u0000b")),
        Case("nested too deep", "POST", "/messages", 400, "invalid_request", deep),
        Case("unbalanced brackets", "POST", "/messages", 400, "invalid_request",
             b"[" * 40 + b"}" * 40),
        Case("nobody open", "POST", "/messages", 404, "not_found", _msg(subHandle="u9")),
        Case("other-org tenant", "POST", "/messages", 403, "forbidden", _msg(tenantId="t9")),
        Case("other-org token", "POST", "/messages", 403, "forbidden", _msg(),
             {**other_org, **_JSON}),
        Case("token limited to other tenants", "POST", "/messages", 403, "forbidden",
             _msg(), {**_TOKENS.bot(tenants=["t2"]), **_JSON}),
        Case("agent token", "POST", "/messages", 403, "forbidden", _msg(),
             {**_TOKENS.agent(), **_JSON}),
        Case("expired token", "POST", "/messages", 401, "unauthorized", _msg(),
             {"Authorization": f"Bearer {_TOKENS.token(ttl_seconds=-60)}", **_JSON}),
        Case("wrongly signed token", "POST", "/messages", 401, "unauthorized", _msg(),
             {"Authorization": "Bearer " + Tokens(secret="x" * 40).token(), **_JSON}),
        Case("malformed Authorization", "POST", "/requests", 401, "unauthorized", _msg(),
             {"Authorization": "Basic abc", **_JSON}),
        Case("no Authorization", "POST", "/messages", 401, "unauthorized", _msg(), _JSON),
        Case("bad token and bad JSON: 401 first", "POST", "/messages", 401, "unauthorized",
             b"{", {"Authorization": "Bearer nope", **_JSON}),
        Case("no content type", "POST", "/messages", 415, "unsupported_media_type", _msg(),
             _BOT),
        Case("text/plain", "POST", "/requests", 415, "unsupported_media_type", _msg(),
             {**_BOT, "Content-Type": "text/plain"}),
        Case("JSON with a charset", "POST", "/messages", 202, body=_msg(),
             headers={**_BOT, "Content-Type": "Application/JSON; charset=utf-8"}),
        Case("a +json type", "POST", "/messages", 202, body=_msg(),
             headers={**_BOT, "Content-Type": "application/vnd.bot+json"}),
        Case("oversized body", "POST", "/messages", 413, "payload_too_large",
             _msg(text="x" * MAX_BODY)),
        Case("oversized chunked body", "POST", "/messages", 413, "payload_too_large",
             partial(_chunks, b'{"text": "', b"x" * MAX_BODY, b'"}')),
        Case("chunked body", "POST", "/messages", 202,
             body=partial(_chunks, b'{"tenantId": "t1", ', b'"subHandle": "u1", "text": "c"}')),
        Case("empty body", "POST", "/messages", 400, "invalid_request", b""),
        Case("huge header", "POST", "/messages", 431, "request_header_fields_too_large",
             _msg(), {**_BOT, **_JSON, "X-Padding": "p" * 40_000}),
        Case("sane request id kept", "POST", "/messages", 202, body=_msg(),
             headers={**_BOT, **_JSON, "X-Request-Id": "bot.req-1"}),
        Case("GET /messages", "GET", "/messages", 405, "method_not_allowed", None, _BOT),
        Case("HEAD /requests", "HEAD", "/requests", 405, None, None, _BOT),
        Case("OPTIONS /messages", "OPTIONS", "/messages", 200, None, None, {}),
        Case("trailing slash", "POST", "/messages/", 404, "not_found", _msg()),
    ]


@dataclass(frozen=True)
class Answer:
    """What a server answered, with lcx's fresh ids replaced by ``<id>``."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


def _answer(response: httpx.Response) -> Answer:
    headers = tuple((name.decode("latin-1").lower(), value.decode("latin-1"))
                    for name, value in response.headers.raw
                    if name.decode("latin-1").lower() not in _VARYING_HEADERS)
    return Answer(response.status_code, headers, _UUID.sub("<id>", response.text))


def _check_contract(case: Case, response: httpx.Response) -> None:
    assert response.status_code == case.status, (case.name, response.text)
    assert response.headers.get("x-content-type-options") == "nosniff", case.name
    request_id = response.headers.get("x-request-id", "")
    if "X-Request-Id" in case.headers:
        assert request_id == case.headers["X-Request-Id"], case.name
    else:
        assert _UUID.fullmatch(request_id), (case.name, request_id)
    if case.method == "HEAD" or case.method == "OPTIONS":
        return
    assert response.headers["content-type"] == "application/json; charset=utf-8", case.name
    body = response.json()
    if case.code is None:
        assert "error" not in body, (case.name, body)
        return
    assert set(body) == {"error"}, case.name
    assert body["error"]["code"] == case.code, (case.name, body)
    assert isinstance(body["error"]["message"], str), case.name
    if case.status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), case.name
    if case.status == 400:
        assert body["error"]["details"]["fields"], (case.name, body)


async def _run(app: LivechatApp) -> list[Answer]:
    answers = []
    for case in _cases():
        content = case.body() if callable(case.body) else case.body
        response = await app.client.request(case.method, case.path, content=content,
                                            headers=case.headers)
        _check_contract(case, response)
        answers.append(_answer(response))
    metrics = (await app.client.get("/metrics")).text
    counted = sorted(line for line in metrics.splitlines()
                     if line.startswith("lcx_http_requests_total{"))
    answers.append(Answer(0, (), "\n".join(counted)))  # the same counts by route/status
    return answers


async def test_the_lean_routes_are_the_hot_routes() -> None:
    """The lean routes serve exactly the hot routes the app dispatches to them."""
    assert LEAN_ROUTES == HOT_ROUTES


async def test_lean_and_quart_answer_the_same(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case meets the contract on both paths, and both paths answer alike."""
    served: list[str] = []
    serve = LeanRoutes.serve

    async def counting(self: LeanRoutes, scope: Any, *args: Any) -> None:
        served.append(scope["path"])
        await serve(self, scope, *args)

    monkeypatch.setattr(LeanRoutes, "serve", counting)
    async with livechat_app(tmp_path / "lean", max_body_bytes=MAX_BODY) as app:
        lean = await _run(app)
    lean_calls = len(served)
    monkeypatch.setattr(lcx.instance, "create_app", partial(create_app, lean=False))
    async with livechat_app(tmp_path / "quart", max_body_bytes=MAX_BODY) as app:
        quart = await _run(app)
    posts = sum(1 for case in _cases() if (case.method, case.path) in LEAN_ROUTES)
    assert lean_calls == posts  # the default app serves them lean ...
    assert len(served) == posts  # ... and without, Quart serves them all
    names = [case.name for case in _cases()] + ["metrics"]
    for name, one, other in zip(names, lean, quart, strict=True):
        assert one == other, name
