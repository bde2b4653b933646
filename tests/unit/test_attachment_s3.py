"""The S3 storage's own logic, over a recording stand-in for the boto3 client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from adapters.attachments import S3AttachmentStorage
from lcx.attachments import RedirectDownload, UrlSigner
from lcx.config import AttachmentsConfig
from lcx.errors import StoreUnavailable

CONFIG = AttachmentsConfig(backend="s3", s3_bucket="bucket", url_ttl_seconds=90)


@dataclass
class RecordingClient:
    """Answers like boto3's S3 client and records the calls."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    fail: Exception | None = None

    def _record(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((operation, kwargs))
        if self.fail is not None:
            raise self.fail

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self._record("put_object", kwargs)
        return {}

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        self._record("delete_objects", kwargs)
        errors = [{"Key": o["Key"], "Code": "AccessDenied"}
                  for o in kwargs["Delete"]["Objects"] if o["Key"] in self.refuse]
        return {"Errors": errors} if errors else {}

    def generate_presigned_url(self, operation: str, **kwargs: Any) -> str:
        self._record(operation, kwargs)
        return "https://s3.example/bucket/key?X-Amz-Signature=abc"


def storage(client: RecordingClient) -> S3AttachmentStorage:
    return S3AttachmentStorage(CONFIG, signer=UrlSigner.from_secret("s"), client=client)


async def test_put_sends_the_content_type() -> None:
    """``put`` is one PutObject with the bucket, key, bytes and content type."""
    client = RecordingClient()
    await storage(client).put("2026/11/21/abc", b"data", "image/png")
    assert client.calls == [("put_object", {"Bucket": "bucket", "Key": "2026/11/21/abc",
                                            "Body": b"data", "ContentType": "image/png"})]


async def test_presigned_url_downloads_with_the_name_and_ttl() -> None:
    """The presigned GET asks S3 for an attachment disposition, the type and the ttl."""
    client = RecordingClient()
    how = await storage(client).download("k/1", attachment_id="1", name="ré sumé.pdf",
                                         content_type="application/pdf")
    assert how == RedirectDownload("https://s3.example/bucket/key?X-Amz-Signature=abc")
    operation, kwargs = client.calls[0]
    assert operation == "get_object"
    assert kwargs["ExpiresIn"] == 90
    assert kwargs["Params"]["ResponseContentType"] == "application/pdf"
    disposition = kwargs["Params"]["ResponseContentDisposition"]
    assert disposition.startswith('attachment; filename="r_ sum_.pdf"; filename*=UTF-8')


async def test_delete_goes_in_batches_of_1000() -> None:
    """2500 keys are three DeleteObjects calls (1000, 1000, 500), quiet."""
    client = RecordingClient()
    keys = [f"k/{n}" for n in range(2500)]
    assert await storage(client).delete(keys) == 2500
    sizes = [len(kwargs["Delete"]["Objects"]) for _, kwargs in client.calls]
    assert sizes == [1000, 1000, 500]
    assert all(kwargs["Delete"]["Quiet"] for _, kwargs in client.calls)
    assert await storage(client).delete([]) == 0


async def test_refused_deletes_raise() -> None:
    """Keys S3 refuses to delete make ``delete`` raise StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="refused to delete 1"):
        await storage(RecordingClient(refuse={"k/2"})).delete(["k/1", "k/2"])


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "NoSuchBucket", "Message": "x"}}, "PutObject"),
    EndpointConnectionError(endpoint_url="http://s3.invalid"),
])
async def test_library_errors_become_store_unavailable(error: Exception) -> None:
    """botocore's client and connection errors are mapped to StoreUnavailable."""
    with pytest.raises(StoreUnavailable) as caught:
        await storage(RecordingClient(fail=error)).put("k/1", b"1", "text/plain")
    assert caught.value.__cause__ is error


async def test_keys_that_are_not_plain_are_refused() -> None:
    """Keys are checked before any call."""
    client = RecordingClient()
    with pytest.raises(ValueError, match="storage key"):
        await storage(client).put("../x", b"1", "text/plain")
    assert client.calls == []
