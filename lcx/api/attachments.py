"""Attachments (API.md section 6): upload a file, download it through a signed URL.

Routes:

- ``POST /livechat-attachments``: ``multipart/form-data`` with one ``file`` part and an
  optional ``conversationId`` field; 201 ``{"id", "url", "name", "contentType", "size"}``.
  Tokens with ``agent``, ``supervisor``, ``service`` or ``bot`` (bots upload their users'
  files) may upload; the upload belongs to the token's organization.
- ``GET /livechat-attachments/{id}?expires=&signature=``: no token, the signature is the
  authorization.

Decisions where API.md is silent:

* **Size.** ``attachments.max_bytes`` bounds the *file*; the request body may exceed it by
  :data:`MULTIPART_OVERHEAD` (boundaries, part headers, fields). A larger
  ``Content-Length`` is refused before anything is read; a chunked body is counted while
  it streams and refused as soon as the file part outgrows the limit (413, with
  ``details.maxBytes``). The file is held in memory once, up to ``max_bytes``.
* **Errors.** Not ``multipart/form-data``: 415. No ``file`` part, two of them, or an
  empty file: 400 with ``details.fields = ["file"]``. A ``conversationId`` that names no
  conversation of the token's organization: 404 (checked as soon as the field is read,
  so usually before the file); a bot token limited to some tenants gets 403 for another
  tenant's conversation. Other form fields are ignored.
* **Content type** is sniffed from the bytes (:func:`lcx.attachments.sniff_content_type`);
  the declared one only breaks ties. Native executables (PE, ELF, Mach-O) and names that
  Windows runs on a double click (``.exe``, ``.bat``, ``.ps1``, ``.vbs``...) are refused
  with 422 ``details.reason = "executable"``.
* **Names** are sanitized (:func:`lcx.attachments.sanitize_name`); a nameless part is
  called ``attachment``.
* **Order.** The bytes are stored durably first, then the record; if the record cannot
  be written the bytes are deleted again (best effort).
* **URL.** ``local``: lcx's signed URL, ``{server.public_url}/livechat-attachments/{id}``;
  ``s3``: a presigned S3 URL that downloads. Both expire after ``url_ttl_seconds``.
* **Download.** A missing, malformed, tampered or expired ``expires``/``signature`` pair
  is 403 ``forbidden`` (checked before the id is looked up, so ids cannot be probed); an
  unknown id, or a file no longer stored, is 404. The bytes go out with their sniffed
  ``Content-Type``, ``Content-Disposition: attachment``, ``X-Content-Type-Options:
  nosniff``, a sandboxing ``Content-Security-Policy`` and ``Cache-Control: private,
  no-store``. For an upload kept in S3 a valid lcx URL answers 302 to a fresh presigned
  URL (the same headers are asked of S3); one kept by the other backend than the
  instance runs now is 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec
import trio
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse
from quart_trio.wrappers.response import TrioFileBody
from werkzeug.exceptions import RequestTimeout
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response
from lcx.api.common import MAX_ID_CHARS, Id, require_livechat
from lcx.api.spec import Endpoint, register
from lcx.attachments import (
    DOWNLOAD_PATH,
    AttachmentStorage,
    FileDownload,
    refusal_reason,
    sanitize_name,
    sniff_content_type,
    storage_key,
)
from lcx.auth import Principal, TokenVerifier, require_tenant
from lcx.config import AttachmentsConfig
from lcx.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from lcx.ids import new_id
from lcx.model import iso, utc_now
from lcx.store.attachments import AttachmentRecord, get_attachment, insert_attachment
from lcx.store.conversations import load_conversation
from lcx.transcripts import content_disposition

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.api.deps import AppDeps

__all__ = ["MULTIPART_OVERHEAD", "UPLOAD_PATH", "AttachmentsApi", "UploadParser",
           "attachments_blueprint", "body_limits", "upload_body_limit"]

UPLOAD_PATH = DOWNLOAD_PATH
UPLOAD_SCOPES = ("agent", "supervisor", "service", "bot")
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes an upload's body may hold besides the file: boundaries, part headers, fields."""
MAX_FIELD_BYTES = 1024
"""The longest form field value read (``conversationId``)."""
MAX_PARTS = 16
FILE_PART = "file"
CONVERSATION_FIELD = "conversationId"
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}
"""Sent with every downloaded file (besides ``Content-Disposition: attachment``)."""


def upload_body_limit(config: AttachmentsConfig) -> int:
    """The body size ``POST /livechat-attachments`` accepts: the file limit plus overhead."""
    return config.max_bytes + MULTIPART_OVERHEAD


def body_limits(deps: AppDeps) -> dict[tuple[str, str], int]:
    """The routes here whose bodies may exceed ``server.max_body_bytes``, with their limit."""
    return {("POST", UPLOAD_PATH): upload_body_limit(_config(deps))}


def _config(deps: AppDeps) -> AttachmentsConfig:
    return deps.config.attachments if deps.config is not None else AttachmentsConfig()


class UploadForm(msgspec.Struct, rename="camel", kw_only=True):
    """The ``multipart/form-data`` body of an upload (for the OpenAPI document)."""

    file: Annotated[str, msgspec.Meta(min_length=1, extra_json_schema={"format": "binary"})]
    conversation_id: Id | None = None


class UploadResult(msgspec.Struct, rename="camel", kw_only=True):
    """``201`` of an upload: what a message's attachment carries, plus the id."""

    id: str
    url: str
    name: str
    content_type: str
    size: int


class DownloadQuery(msgspec.Struct, kw_only=True):
    """``GET /livechat-attachments/{id}`` query: the signed URL's two parameters."""

    expires: int
    signature: str


# -- the multipart body, without I/O ----------------------------------------------------------

class UploadParser:
    """Reads an upload's ``multipart/form-data`` body chunk by chunk; no I/O.

    Keeps the one ``file`` part (its bytes, file name and declared type) and the values of
    small fields; other parts are read and dropped. Call :meth:`feed` per chunk and
    :meth:`finish` at the end of the body.
    """

    def __init__(self, boundary: bytes, *, max_file_bytes: int) -> None:
        self._decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self._max_file_bytes = max_file_bytes
        self._target: bytearray | None = None
        self._field: str | None = None
        self.data = bytearray()
        self.file_seen = False
        self.filename: str | None = None
        self.declared_type: str | None = None
        self.fields: dict[str, str] = {}

    def feed(self, chunk: bytes | None) -> None:
        """Parse ``chunk`` (``None``: the body ended).

        Raises:
            PayloadTooLarge: the file is larger than ``max_file_bytes``.
            InvalidRequest: the body is not valid multipart, ended early, holds two
                ``file`` parts, or a field longer than :data:`MAX_FIELD_BYTES`.
            werkzeug.exceptions.RequestEntityTooLarge: more than :data:`MAX_PARTS` parts.
        """
        try:
            self._decoder.receive_data(chunk)
            event = self._decoder.next_event()
            while not isinstance(event, NeedData | Epilogue):
                self._on_event(event)
                event = self._decoder.next_event()
        except ValueError as exc:
            raise InvalidRequest(f"malformed multipart body: {exc}",
                                 details={"fields": ["$"]}) from exc

    def _on_event(self, event: object) -> None:
        if isinstance(event, Field | File):
            self._start(event)
        elif isinstance(event, Data) and self._target is not None:
            self._target += event.data
            self._check_sizes()
            if not event.more_data:
                self._end_part()

    def _start(self, part: Field | File) -> None:
        self._target, self._field = None, None
        if part.name == FILE_PART:
            if self.file_seen:
                raise InvalidRequest("send exactly one file part",
                                     details={"fields": [FILE_PART]})
            self.file_seen = True
            self.filename = part.filename if isinstance(part, File) else None
            self.declared_type = part.headers.get("content-type")
            self._target = self.data
        elif isinstance(part, Field):
            self._field, self._target = part.name, bytearray()

    def _check_sizes(self) -> None:
        if len(self.data) > self._max_file_bytes:
            raise PayloadTooLarge(f"the file is larger than {self._max_file_bytes} bytes",
                                  details={"maxBytes": self._max_file_bytes})
        if self._field is not None and self._target is not None \
                and len(self._target) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"the field {self._field!r} is too long",
                                 details={"fields": [self._field]})

    def _end_part(self) -> None:
        if self._field is not None and self._target is not None:
            self.fields[self._field] = self._target.decode("utf-8", "replace")
        self._target, self._field = None, None

    def finish(self) -> None:
        """End the body; check that it held a non-empty file.

        Raises:
            InvalidRequest: as :meth:`feed`, or no ``file`` part, or an empty file.
        """
        self.feed(None)
        if not self.file_seen or not self.data:
            message = "the file is empty" if self.file_seen else "missing the file part"
            raise InvalidRequest(message, details={"fields": [FILE_PART]})


def _boundary() -> bytes:
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"expected multipart/form-data, got {request.mimetype or 'none'}",
            details={"expected": "multipart/form-data"})
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary or not boundary.isascii() or len(boundary) > 200:
        raise InvalidRequest("the multipart/form-data content type has no valid boundary",
                             details={"fields": ["Content-Type"]})
    return boundary.encode("ascii")


# -- routes -----------------------------------------------------------------------------------

class AttachmentsApi:
    """The two route handlers, over one livechat (for the store) and one storage."""

    def __init__(self, livechat: Livechat, storage: AttachmentStorage,
                 verifier: TokenVerifier | None, config: AttachmentsConfig) -> None:
        self.livechat = livechat
        self.storage = storage
        self.verifier = verifier
        self.config = config

    def caller(self) -> tuple[Principal, str]:
        """The uploading principal and its organization (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = authenticate(request, self.verifier, *UPLOAD_SCOPES)
        if principal.org is None:
            raise Forbidden("uploads need a token of an organization")
        return principal, principal.org

    async def check_conversation(self, principal: Principal, org_id: str,
                                 conversation_id: str) -> None:
        """Pass when the caller may tie an upload to this conversation (400/404/403)."""
        if not 1 <= len(conversation_id) <= MAX_ID_CHARS:
            raise InvalidRequest(f"{CONVERSATION_FIELD} must be 1-{MAX_ID_CHARS} characters",
                                 details={"fields": [CONVERSATION_FIELD]})
        found = await self.livechat.store.read(lambda tx: load_conversation(tx, conversation_id))
        if found is None or found.org_id != org_id:
            raise NotFound(f"no conversation {conversation_id!r}",
                           details={"conversationId": conversation_id})
        require_tenant(principal, found.tenant_id, found.org_id)  # bots limited to tenants

    async def read_upload(self, principal: Principal, org_id: str) -> UploadParser:
        """Stream the body into an :class:`UploadParser`, checking ``conversationId`` early."""
        parser = UploadParser(_boundary(), max_file_bytes=self.config.max_bytes)
        checked = False
        with trio.move_on_after(request.body_timeout or float("inf")) as scope:
            async for chunk in request.body:
                parser.feed(chunk)
                conversation_id = parser.fields.get(CONVERSATION_FIELD)
                if conversation_id is not None and not checked:
                    await self.check_conversation(principal, org_id, conversation_id)
                    checked = True
        if scope.cancelled_caught:
            raise RequestTimeout()
        parser.finish()
        conversation_id = parser.fields.get(CONVERSATION_FIELD)
        if conversation_id is not None and not checked:
            await self.check_conversation(principal, org_id, conversation_id)
        return parser

    async def upload(self) -> TrioResponse:
        """``POST /livechat-attachments``: 201 with the upload's id, URL, name, type, size."""
        principal, org_id = self.caller()
        parser = await self.read_upload(principal, org_id)
        name = sanitize_name(parser.filename)
        data = bytes(parser.data)
        content_type = sniff_content_type(data, parser.declared_type)
        reason = refusal_reason(name, content_type)
        if reason is not None:
            raise Unprocessable("executable files are not accepted",
                                details={"reason": reason, "contentType": content_type})
        now, attachment_id = utc_now(), new_id()
        record = AttachmentRecord(
            id=attachment_id, org_id=org_id,
            conversation_id=parser.fields.get(CONVERSATION_FIELD), name=name,
            content_type=content_type, size=len(data), backend=self.storage.backend,
            storage_key=storage_key(attachment_id, now), uploaded_by=principal.sub,
            created_at=iso(now))
        await self.store(record, data)
        url = await self.storage.url(record.storage_key, attachment_id=record.id, name=name,
                                     content_type=content_type)
        return json_response(UploadResult(id=record.id, url=url, name=name,
                                          content_type=content_type, size=record.size), 201)

    async def store(self, record: AttachmentRecord, data: bytes) -> None:
        """Store the bytes durably, then the record; undo the bytes if the record fails."""
        await self.storage.put(record.storage_key, data, record.content_type)
        try:
            await self.livechat.store.transaction(lambda tx: insert_attachment(tx, record))
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._forget(record.storage_key)
            raise

    async def _forget(self, key: str) -> None:
        try:
            await self.storage.delete([key])
        except Exception:  # best effort: the original error is what the caller must see
            return

    async def download(self, attachment_id: str) -> TrioResponse:
        """``GET /livechat-attachments/{id}``: the bytes, or 302 to S3."""
        args = request.args
        if not self.storage.signer.verify(attachment_id, args.get("expires"),
                                          args.get("signature")):
            raise Forbidden("the download link is invalid or has expired")
        record = await self.livechat.store.read(lambda tx: get_attachment(tx, attachment_id))
        if record is None or record.backend != self.storage.backend:
            raise NotFound(f"no attachment {attachment_id!r}",
                           details={"attachmentId": attachment_id})
        how = await self.storage.download(record.storage_key, attachment_id=record.id,
                                          name=record.name, content_type=record.content_type)
        if not isinstance(how, FileDownload):
            return TrioResponse("", status=302, headers={
                "Location": how.url, "Cache-Control": "no-store"})
        return await _file_response(record, how)


async def _file_response(record: AttachmentRecord, how: FileDownload) -> TrioResponse:
    try:
        body = await trio.to_thread.run_sync(TrioFileBody, how.path)
    except FileNotFoundError:
        raise NotFound(f"attachment {record.id!r} is no longer stored",
                       details={"attachmentId": record.id}) from None
    headers = {"Content-Disposition": content_disposition(record.name), **DOWNLOAD_HEADERS}
    return TrioResponse(body, status=200, headers=headers, content_type=record.content_type)


ENDPOINTS = (
    Endpoint(UPLOAD_PATH, "POST", "upload", "Upload a file", "attachments",
             body=UploadForm, body_media_type="multipart/form-data",
             responses={201: UploadResult}, scopes=UPLOAD_SCOPES,
             errors=(400, 401, 403, 404, 413, 415, 422, 503), operation_id="uploadAttachment"),
    Endpoint(f"{DOWNLOAD_PATH}/<attachment_id>", "GET", "download",
             "Download a file through its signed URL", "attachments", query=DownloadQuery,
             responses={200: None, 302: None},
             response_media_types={200: ("application/octet-stream",)},
             response_headers={"Content-Disposition": "always attachment",
                               "Location": "with 302: a presigned S3 URL"},
             errors=(403, 404, 503), operation_id="downloadAttachment"),
)


def attachments_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the upload and download routes (needs ``deps.attachments``)."""
    if deps.attachments is None:
        raise RuntimeError("the attachment routes need AppDeps.attachments")
    api = AttachmentsApi(require_livechat(deps), deps.attachments, deps.verifier,
                         _config(deps))
    blueprint = Blueprint("attachments", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
