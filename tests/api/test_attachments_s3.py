"""Uploads with the s3 backend against a real S3 protocol endpoint (moto's server mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions
import httpx
import pytest
import trio
from fakes.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3
from support.livechat_app import SECRET, livechat_app

from adapters.attachments import S3AttachmentStorage
from lcx.attachments import UrlSigner
from lcx.config import AttachmentsConfig
from lcx.errors import StoreUnavailable
from lcx.store.attachments import get_attachment, keys_for_org

BUCKET = "lcx-attachments"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """One moto S3 server for this module, with an empty bucket; always stopped."""
    with MotoS3(tmp_path_factory.mktemp("moto")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def s3_config(moto: MotoS3, tmp_path: Path, bucket: str = BUCKET) -> AttachmentsConfig:
    return AttachmentsConfig(backend="s3", dir=str(tmp_path / "unused"), s3_endpoint=moto.url,
                             s3_bucket=bucket, s3_region=REGION, s3_access_key=ACCESS_KEY,
                             s3_secret_key=SECRET_KEY, url_ttl_seconds=120)


def head(moto: MotoS3, key: str) -> dict[str, Any] | None:
    """The object's metadata, or None when it does not exist."""
    try:
        found: dict[str, Any] = moto.client().head_object(Bucket=BUCKET, Key=key)
    except botocore.exceptions.ClientError:
        return None
    return found


async def test_s3_round_trip_and_delete(moto: MotoS3, tmp_path: Path) -> None:
    """Upload to S3, download through the presigned URL and lcx's redirect, then delete."""
    config = s3_config(moto, tmp_path)
    async with livechat_app(tmp_path, attachments_config=config) as app:
        response = await app.client.post(
            "/livechat-attachments", headers=app.tokens.agent(),
            files={"file": ("report.pdf", PDF, "application/octet-stream")})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["contentType"] == "application/pdf"
        assert body["url"].startswith(f"{moto.url}/{BUCKET}/")
        record = await app.hub.store.read(lambda tx: get_attachment(tx, body["id"]))
        assert record is not None
        assert record.backend == "s3"

        with trio.fail_after(5):
            async with httpx.AsyncClient() as outside:
                fetched = await outside.get(body["url"])
        assert fetched.status_code == 200
        assert fetched.content == PDF
        assert fetched.headers["content-disposition"] == 'attachment; filename="report.pdf"'
        stored = head(moto, record.storage_key)
        assert stored is not None
        assert stored["ContentType"] == "application/pdf"

        signed = urlsplit(UrlSigner.from_secret(SECRET).url("", body["id"], 60))
        redirect = await app.client.get(f"{signed.path}?{signed.query}")
        assert redirect.status_code == 302
        assert redirect.headers["location"].startswith(f"{moto.url}/{BUCKET}/")

    storage = S3AttachmentStorage(config, signer=UrlSigner.from_secret(SECRET))
    assert await storage.delete([record.storage_key, "2026/01/01/never-stored"]) == 2
    assert head(moto, record.storage_key) is None


async def test_s3_failures_are_unavailable(moto: MotoS3, tmp_path: Path) -> None:
    """A missing bucket makes the upload 503 ``unavailable``, and stores no record."""
    config = s3_config(moto, tmp_path, bucket="no-such-bucket")
    async with livechat_app(tmp_path, attachments_config=config) as app:
        response = await app.client.post("/livechat-attachments", headers=app.tokens.agent(),
                                          files={"file": ("a.txt", b"text", "text/plain")})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert await app.hub.store.read(lambda tx: keys_for_org(tx, "o1")) == []
    storage = S3AttachmentStorage(config, signer=UrlSigner.from_secret(SECRET))
    with pytest.raises(StoreUnavailable):
        await storage.put("2026/01/01/x", b"1", "text/plain")
