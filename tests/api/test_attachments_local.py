"""Uploads and signed downloads (API.md section 6) with the local backend, over real HTTP."""

from __future__ import annotations

import contextlib
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from support.livechat_app import SECRET, LivechatApp, Tokens, livechat_app

from lcx.attachments import UrlSigner
from lcx.config import AttachmentsConfig
from lcx.store.attachments import get_attachment
from lcx.store.conversations import find_open

UPLOAD = "/livechat-attachments"
TOKENS = Tokens()


def png() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


async def upload(app: LivechatApp, data: bytes, *, name: str = "photo.png",
                 declared: str = "text/plain", headers: dict[str, str] | None = None,
                 **fields: str) -> httpx.Response:
    """POST a multipart upload with an agent token of o1 unless ``headers`` says otherwise."""
    return await app.client.post(
        UPLOAD, files={"file": (name, data, declared)}, data=fields,
        headers=app.tokens.agent() if headers is None else headers)


def local_path(url: str) -> str:
    """The path and query of a signed URL (its host is ``server.public_url``)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def conversation_of(app: LivechatApp, tenant: str, org: str, sub: str = "u1") -> str:
    """Open a request of ``sub`` at ``tenant``; its conversation id."""
    created = await app.client.post("/requests", headers=app.tokens.bot(org=org),
                                    json={"tenantId": tenant, "subHandle": sub})
    assert created.status_code == 201, created.text
    found = await app.hub.store.read(lambda tx: find_open(tx, tenant, sub))
    assert found is not None
    return found.id


async def test_upload_and_download_round_trip(tmp_path: Path) -> None:
    """A PNG declared as text is stored as image/png and downloads byte for byte."""
    async with livechat_app(tmp_path) as app:
        data = png()
        response = await upload(app, data, name="../../me.png")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "me.png"
        assert body["contentType"] == "image/png"
        assert body["size"] == len(data)
        assert body["url"].startswith(f"http://127.0.0.1:8080/livechat-attachments/{body['id']}?")
        downloaded = await app.client.get(local_path(body["url"]))
        assert downloaded.status_code == 200
        assert downloaded.content == data
        assert downloaded.headers["content-type"] == "image/png"
        assert downloaded.headers["content-disposition"] == 'attachment; filename="me.png"'
        assert downloaded.headers["x-content-type-options"] == "nosniff"
        record = await app.hub.store.read(lambda tx: get_attachment(tx, body["id"]))
        assert record is not None
        assert (record.org_id, record.uploaded_by, record.backend) == ("o1", "alice", "local")
        assert (tmp_path / "attachments" / record.storage_key).read_bytes() == data


async def test_text_upload_with_a_conversation(tmp_path: Path) -> None:
    """A bot may upload text tied to its organization's conversation."""
    async with livechat_app(tmp_path) as app:
        cid = await conversation_of(app, "t1", "o1")
        response = await upload(app, "héllo\n".encode(), name="note.txt",
                                declared="application/x-unknown", headers=app.tokens.bot(),
                                conversationId=cid)
        assert response.status_code == 201, response.text
        assert response.json()["contentType"] == "text/plain"
        record = await app.hub.store.read(lambda tx: get_attachment(tx, response.json()["id"]))
        assert record is not None
        assert record.conversation_id == cid


async def test_bad_and_expired_signatures_are_forbidden(tmp_path: Path) -> None:
    """Tampered, missing or expired signatures are 403; a valid one of an unknown id 404."""
    async with livechat_app(tmp_path) as app:
        body = (await upload(app, b"some text")).json()
        path = local_path(body["url"])
        tampered = path[:-1] + ("0" if path[-1] != "0" else "1")
        expired = UrlSigner.from_secret(SECRET, clock=lambda: time.time() - 7200).url(
            "", body["id"], 60)
        other_id = body["id"][:-1] + ("0" if body["id"][-1] != "0" else "1")
        for url in (tampered, f"{UPLOAD}/{body['id']}", expired,
                    path.replace(body["id"], other_id)):
            error_of(await app.client.get(url), 403, "forbidden")
        unknown = UrlSigner.from_secret(SECRET).url("", "0000-unknown", 60)
        error_of(await app.client.get(unknown), 404, "not_found")
        assert (await app.client.get(path)).status_code == 200


async def test_size_limits(tmp_path: Path) -> None:
    """Uploads follow attachments.max_bytes, not server.max_body_bytes; JSON routes keep it."""
    limits = AttachmentsConfig(dir=str(tmp_path / "files"), max_bytes=4000)
    async with livechat_app(tmp_path, max_body_bytes=1000, attachments_config=limits) as app:
        assert (await upload(app, b"a" * 3000)).status_code == 201
        error = error_of(await upload(app, b"a" * 4001), 413, "payload_too_large")
        assert error["details"] == {"maxBytes": 4000}
        # far over the limit the server answers before reading the body and closes, which
        # a client still sending may see as a reset: send it raw and read the answer
        oversized = await declared_post(app, UPLOAD, app.tokens.agent(), b"a" * 200_000)
        assert oversized.startswith(b"HTTP/1.1 413"), oversized[:200]
        assert b'"payload_too_large"' in oversized
        big_json = await app.client.put("/organizations/o1/livechat-settings",
                                        headers=app.tokens.supervisor(),
                                        json={"greeting": "x" * 2000})
        error_of(big_json, 413, "payload_too_large")


async def declared_post(app: LivechatApp, path: str, headers: dict[str, str],
                        body: bytes) -> bytes:
    """POST ``body`` with its Content-Length over a raw socket, tolerating an answer that
    comes (and a connection that closes) before the body is sent; the raw answer."""
    url = app.client.base_url
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.host}:{url.port}",
             f"Content-Length: {len(body)}", "Content-Type: multipart/form-data; boundary=b",
             "Connection: close", *(f"{name}: {value}" for name, value in headers.items())]
    answer = b""
    with trio.fail_after(5):
        async with await trio.open_tcp_stream(url.host, url.port) as stream:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(body)
            try:
                while data := await stream.receive_some():
                    answer += data
            except trio.BrokenResourceError:
                pass
    return answer


async def chunked_post(app: LivechatApp, path: str, headers: dict[str, str],
                       chunks: list[bytes]) -> bytes:
    """POST ``chunks`` with ``Transfer-Encoding: chunked`` (no Content-Length); the answer.

    A raw socket: the server may answer and stop reading before the body ends, which
    httpx reports as an error of its own.
    """
    url = app.client.base_url
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.host}:{url.port}",
             "Transfer-Encoding: chunked", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    answer = b""
    with trio.fail_after(5):
        async with await trio.open_tcp_stream(url.host, url.port) as stream:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            try:
                for chunk in [*chunks, b""]:
                    await stream.send_all(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except trio.BrokenResourceError:
                pass
            while data := await stream.receive_some():
                answer += data
    return answer


async def test_chunked_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A body without Content-Length is counted while it streams and refused with 413."""
    limits = AttachmentsConfig(dir=str(tmp_path / "files"), max_bytes=10_000)
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    headers = {**TOKENS.agent(), "Content-Type": "multipart/form-data; boundary=B"}
    async with livechat_app(tmp_path, attachments_config=limits) as app:
        small = [head, b"z" * 5000, b"\r\n--B--\r\n"]
        assert (await chunked_post(app, UPLOAD, headers, small)).startswith(b"HTTP/1.1 201")
        big = [head, *(b"z" * 1000 for _ in range(200)), b"\r\n--B--\r\n"]
        answer = await chunked_post(app, UPLOAD, headers, big)
        assert answer.startswith(b"HTTP/1.1 413")
        assert answer.endswith(b'"details":{"maxBytes":10000}}}')
    assert len([p for p in (tmp_path / "files").rglob("*") if p.is_file()]) == 1


async def test_request_errors(tmp_path: Path) -> None:
    """415 for non-multipart; 400 without a file, with an empty one or an empty
    conversationId; 422 for programs."""
    async with livechat_app(tmp_path) as app:
        agent = app.tokens.agent()
        error_of(await app.client.post(UPLOAD, json={"file": "x"}, headers=agent), 415,
                 "unsupported_media_type")
        missing = await app.client.post(UPLOAD, files={"other": ("a", b"1")}, headers=agent)
        assert error_of(missing, 400, "invalid_request")["details"] == {"fields": ["file"]}
        empty = await upload(app, b"")
        assert error_of(empty, 400, "invalid_request")["details"] == {"fields": ["file"]}
        blank = await upload(app, b"text", conversationId="")
        assert error_of(blank, 400, "invalid_request")["details"] == {
            "fields": ["conversationId"]}
        program = await upload(app, b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff", name="x.bin")
        assert error_of(program, 422, "unprocessable")["details"]["reason"] == "executable"


async def test_conversation_of_another_org_is_not_found(tmp_path: Path) -> None:
    """A conversationId of another organization (or none) is 404; nothing is stored."""
    async with livechat_app(tmp_path) as app:
        foreign = await conversation_of(app, "t9", "o2")
        for cid in (foreign, "no-such-conversation"):
            error_of(await upload(app, b"text", conversationId=cid), 404, "not_found")
    assert not list((tmp_path / "attachments").rglob("*"))


@pytest.mark.parametrize(("scopes", "status"), [
    ("agent", 201), ("supervisor", 201), ("service", 201), ("bot", 201), ("admin", 403)])
async def test_scopes(tmp_path: Path, scopes: str, status: int) -> None:
    """Agents, supervisors, services and bots may upload; admin tokens (no org) may not."""
    async with livechat_app(tmp_path) as app:
        org = None if scopes == "admin" else "o1"
        headers = app.tokens.headers(sub="x", org=org, scopes=scopes)
        assert (await upload(app, b"text", headers=headers)).status_code == status


async def test_upload_needs_a_token(tmp_path: Path) -> None:
    """No token is 401."""
    async with livechat_app(tmp_path) as app:
        error_of(await upload(app, b"text", headers={}), 401, "unauthorized")
