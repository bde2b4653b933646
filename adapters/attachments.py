"""The two attachment storages (:class:`lcx.attachments.AttachmentStorage`): files or S3.

- :class:`LocalAttachmentStorage` keeps each upload as a file under ``attachments.dir``
  (written to a temporary file, fsynced, renamed into place, directory fsynced; all in a
  worker thread) and hands out lcx's own signed URLs, served by
  ``GET /livechat-attachments/{id}``.
- :class:`S3AttachmentStorage` keeps them as objects of ``attachments.s3_bucket`` on S3 or
  any S3-compatible store (MinIO, moto), through one boto3 client created at start and
  called in worker threads, and hands out presigned ``GetObject`` URLs that make the
  browser download (``Content-Disposition: attachment``).

:func:`open_attachment_storage` picks one from ``[attachments] backend``. Library errors
are mapped at this boundary: an ``OSError`` or a boto3/botocore error becomes
:class:`~lcx.errors.StoreUnavailable` (503 ``unavailable``), never a 500.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trio

from lcx.attachments import (
    AttachmentStorage,
    Download,
    FileDownload,
    RedirectDownload,
    UrlSigner,
)
from lcx.auth import resolve_secret
from lcx.config import AttachmentsConfig, AuthConfig
from lcx.errors import NotFound, StoreUnavailable
from lcx.transcripts import content_disposition

__all__ = ["LocalAttachmentStorage", "S3AttachmentStorage", "open_attachment_storage",
           "signing_secret"]

T = TypeVar("T")

S3_DELETE_BATCH = 1000
"""The most keys one ``DeleteObjects`` call takes."""
DEFAULT_S3_REGION = "us-east-1"

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9_-]*)*")
_log = logging.getLogger(__name__)


def _check_key(key: str) -> str:
    """``key`` when it is a relative path of plain segments (no ``..``, no absolute path)."""
    if len(key) > 512 or not _SAFE_KEY.fullmatch(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


# -- local files ------------------------------------------------------------------------------

class LocalAttachmentStorage:
    """Files under one directory; safe to share between tasks.

    The directory is created on the first upload. Keys are relative paths made by
    :func:`lcx.attachments.storage_key` (fresh ids only), checked again here.
    """

    backend = "local"

    def __init__(self, directory: str | os.PathLike[str], *, public_url: str,
                 signer: UrlSigner, ttl_seconds: int) -> None:
        self.root = Path(directory).absolute()
        self.public_url = public_url
        self.signer = signer
        self.ttl_seconds = ttl_seconds

    def path_of(self, key: str) -> Path:
        """The file of ``key``. Raises ``ValueError`` for a key that is not a plain path."""
        return self.root / _check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write ``data`` durably: temp file, fsync, rename, fsync of the directories.

        Raises:
            StoreUnavailable: the file cannot be written (disk full, permissions...).
        """
        path = self.path_of(key)
        await _in_thread("write", _write_durably, path, data)

    async def url(self, key: str, *, attachment_id: str, name: str,
                  content_type: str) -> str:
        """lcx's signed URL of the upload, valid for ``url_ttl_seconds``."""
        return self.signer.url(self.public_url, attachment_id, self.ttl_seconds)

    async def download(self, key: str, *, attachment_id: str, name: str,
                       content_type: str) -> Download:
        """The file to send.

        Raises:
            NotFound: the file is gone.
        """
        path = self.path_of(key)
        if not await _in_thread("read", path.is_file):
            raise NotFound(f"attachment {attachment_id!r} is no longer stored",
                           details={"attachmentId": attachment_id})
        return FileDownload(path)

    async def delete(self, keys: list[str]) -> int:
        """Delete the files (missing ones are ignored) and directories left empty.

        Raises:
            StoreUnavailable: a file could not be deleted (those before it were).
        """
        paths = [self.path_of(key) for key in keys]
        return await _in_thread("delete", _delete_files, paths, self.root)


async def _in_thread(action: str, fn: Callable[..., T], *args: Any) -> T:
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except OSError as exc:
        _log.warning("attachment storage could not %s: %r", action, exc)
        raise StoreUnavailable(f"the attachment storage could not {action} a file") from exc


def _write_durably(path: Path, data: bytes) -> None:
    _make_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents; make each new entry durable."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(new.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete_files(paths: list[Path], root: Path) -> int:
    deleted = 0
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        deleted += 1
        _remove_empty_parents(path.parent, root)
    return deleted


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty (or already gone): keep it
            return
        directory = directory.parent


# -- S3 ---------------------------------------------------------------------------------------

class S3AttachmentStorage:
    """Objects of one bucket on S3 or an S3-compatible store; safe to share between tasks.

    One boto3 client is created here (boto3 clients are thread-safe) and every call runs
    in a worker thread. With ``s3_endpoint`` set (MinIO, moto...) requests use path-style
    addressing; empty keys fall back to boto3's usual credential chain (environment,
    instance role). ``client`` replaces the boto3 client (tests).
    """

    backend = "s3"

    def __init__(self, config: AttachmentsConfig, *, signer: UrlSigner,
                 client: Any = None) -> None:
        self.bucket = config.s3_bucket
        self.ttl_seconds = config.url_ttl_seconds
        self.signer = signer
        self._client = client if client is not None else _s3_client(config)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """``PutObject`` with the content type (S3 acknowledges only durable writes).

        Raises:
            StoreUnavailable: S3 refused or could not be reached.
        """
        await self._call("put_object", Bucket=self.bucket, Key=_check_key(key), Body=data,
                         ContentType=content_type)

    async def url(self, key: str, *, attachment_id: str, name: str,
                  content_type: str) -> str:
        """A presigned ``GetObject`` URL, valid for ``url_ttl_seconds``, that downloads."""
        params = {"Bucket": self.bucket, "Key": _check_key(key),
                  "ResponseContentDisposition": content_disposition(name),
                  "ResponseContentType": content_type}
        url: str = await self._call("generate_presigned_url", "get_object", Params=params,
                                    ExpiresIn=self.ttl_seconds)
        return url

    async def download(self, key: str, *, attachment_id: str, name: str,
                       content_type: str) -> Download:
        """A redirect to a fresh presigned URL (S3 itself answers 404 for a gone object)."""
        return RedirectDownload(await self.url(key, attachment_id=attachment_id, name=name,
                                               content_type=content_type))

    async def delete(self, keys: list[str]) -> int:
        """``DeleteObjects`` in batches of 1000; how many keys S3 reported deleted.

        S3 does not say whether a key existed, so missing keys count as deleted.

        Raises:
            StoreUnavailable: a batch failed, or S3 refused some keys (earlier batches and
                the other keys were deleted).
        """
        deleted = 0
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = [{"Key": _check_key(key)} for key in keys[start:start + S3_DELETE_BATCH]]
            answer = await self._call("delete_objects", Bucket=self.bucket,
                                      Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                _log.warning("s3 refused to delete %d objects, first: %r", len(errors),
                             errors[0])
                raise StoreUnavailable(f"the attachment storage refused to delete "
                                       f"{len(errors)} objects")
            deleted += len(batch)
        return deleted

    async def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._client, operation)
        try:
            return await trio.to_thread.run_sync(lambda: method(*args, **kwargs))
        except (BotoCoreError, ClientError) as exc:
            _log.warning("s3 %s failed: %r", operation, exc)
            raise StoreUnavailable(f"the attachment storage failed ({operation})") from exc


def _s3_client(config: AttachmentsConfig) -> Any:
    import boto3
    from botocore.config import Config

    custom_endpoint = bool(config.s3_endpoint)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=config.s3_endpoint or None,
        region_name=config.s3_region or DEFAULT_S3_REGION,
        aws_access_key_id=config.s3_access_key or None,
        aws_secret_access_key=config.s3_secret_key or None,
        config=Config(signature_version="s3v4", connect_timeout=5, read_timeout=30,
                      retries={"max_attempts": 3, "mode": "standard"},
                      s3={"addressing_style": "path" if custom_endpoint else "auto"}),
    )


# -- choosing one -----------------------------------------------------------------------------

def signing_secret(auth: AuthConfig, state_dir: Path) -> str:
    """The secret download URLs are signed with (the signing key is derived from it).

    ``auth.jwt_secret`` when set (every instance of a cluster shares it); with RS256/ES256
    tokens (``auth.jwt_public_key_file``) lcx has no shared secret, so the development
    secret of ``state_dir`` is used: instances must then share that file, or use the
    ``s3`` backend, whose presigned URLs need no lcx key.

    Raises:
        ConfigError: the development secret cannot be created or read.
    """
    if auth.jwt_secret or not auth.jwt_public_key_file:
        return resolve_secret(auth, state_dir)
    return resolve_secret(msgspec.structs.replace(auth, jwt_public_key_file=""), state_dir)


def open_attachment_storage(config: AttachmentsConfig, public_url: str,
                            secret: str) -> AttachmentStorage:
    """The storage ``config.backend`` names, signing lcx URLs with a key derived from
    ``secret``.

    Creates the S3 client (no network call) but touches no file: the local directory is
    created on the first upload. The caller owns the storage; nothing needs closing.
    """
    signer = UrlSigner.from_secret(secret)
    if config.backend == "s3":
        return S3AttachmentStorage(config, signer=signer)
    return LocalAttachmentStorage(config.dir, public_url=public_url, signer=signer,
                                  ttl_seconds=config.url_ttl_seconds)
