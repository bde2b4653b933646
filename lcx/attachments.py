"""The attachment storage port: where uploaded files live (local files or S3 objects).

``adapters/attachments.py`` implements it twice (``local`` and ``s3``); the composition
root picks one from ``[attachments] backend``. Records of uploads live in the store
(table ``attachments``); this port only moves bytes and makes download URLs.
"""

from __future__ import annotations

from typing import Protocol


class AttachmentStorage(Protocol):
    """Stores and serves the bytes of uploaded files."""

    backend: str
    """``local`` or ``s3`` (recorded with each upload)."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` durably (replacing nothing: keys are fresh ids).

        Raises:
            StoreUnavailable: the storage cannot be written.
        """

    async def url(self, key: str, *, attachment_id: str, name: str,
                  content_type: str) -> str:
        """A signed download URL that expires after ``attachments.url_ttl_seconds``."""

    async def delete(self, keys: list[str]) -> int:
        """Delete the objects (missing ones are ignored); how many were deleted."""
