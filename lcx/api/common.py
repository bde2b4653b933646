"""Helpers every HTTP blueprint shares: id and text limits, query strings, timestamps,
path segments, the livechat domain of the app, and the documents more than one module
declares (conversation items, health and readiness). A leaf of :mod:`lcx.api`: it imports no
blueprint, so blueprints never import each other."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from quart import request

from lcx.api.bodies import field_path, refuse_nul
from lcx.errors import InvalidRequest
from lcx.model import (
    AgentRef,
    Attachment,
    Context,
    ConversationStatus,
    Participant,
    Subscriber,
    iso,
    parse_iso,
)
from lcx.store.business_hours import BusinessHoursRepo

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.api.deps import AppDeps
    from lcx.store import Store

T = TypeVar("T")

MAX_ID_CHARS = 256
"""The longest id, handle or group name a client may send."""
MAX_TEXT_CHARS = 65_536
"""The longest message text."""

MAX_REASON_CHARS = 1_000
"""The longest free-text reason (ending a conversation)."""
MAX_URL_CHARS = 2_048
"""The longest attachment URL."""
MAX_ATTACHMENTS = 20
"""The most attachments one message may carry."""
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a client may send (seq numbers, sizes): the largest every JSON
parser, JavaScript's included, holds exactly, and well inside the stores' 64-bit columns."""
MAX_FLAG_VALUE_BYTES = 4_096
"""The largest participant-flag value, measured as encoded JSON."""
MAX_RESUME_CONVERSATIONS = 1_000
"""The most conversations one ``RESUME`` may name (the ``maxConcurrentChats`` ceiling)."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
"""An id, handle or group name as clients send it."""
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
"""A message text as clients send it."""
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)]
"""A free-text reason as clients send it."""
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
"""A non-negative integer as clients send it (a seq number, a size)."""


class AttachmentBody(Attachment, kw_only=True):
    """An attachment as clients send it: the stored shape with the input limits."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_CHARS)]
    name: Id | None = None
    content_type: Id | None = None
    size: Count | None = None


Attachments = Annotated[list[AttachmentBody], msgspec.Meta(max_length=MAX_ATTACHMENTS)]
"""The attachments of one message as clients send them."""

_repos: weakref.WeakKeyDictionary[Livechat, BusinessHoursRepo] = weakref.WeakKeyDictionary()


def read_query(type_: type[T], args: Mapping[str, str] | None = None, *,
               strict: bool = True) -> T:
    """Decode the request's query string (first value of each name) into ``type_``;
    ``strict=False`` parses numbers and booleans from their text.

    Raises:
        InvalidRequest: a parameter is missing, empty where a value is needed, or invalid;
            ``details.fields`` names it.
    """
    values = dict(request.args.items()) if args is None else dict(args)
    for name, value in values.items():
        refuse_nul(value, name)
    try:
        return msgspec.convert(values, type_, strict=strict)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid query string: {exc}",
                             details={"fields": [field_path(exc)]}) from exc


def require_livechat(deps: AppDeps) -> Livechat:
    """The livechat domain of ``deps``; the livechat blueprints are only built when there is one."""
    if deps.livechat is None:
        raise RuntimeError("the livechat routes need AppDeps.livechat")
    return deps.livechat


def path_id(value: str, name: str) -> str:
    """``value`` of a path segment, refused (400 naming ``name``) when over the id limit."""
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"{name} is longer than {MAX_ID_CHARS} characters",
                             details={"fields": [name]})
    return value


def timestamp_param(value: str | None, name: str) -> str | None:
    """``value`` normalised to the stored form (UTC, milliseconds); 400 when malformed."""
    if value is None:
        return None
    try:
        return iso(parse_iso(value))
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an RFC 3339 timestamp with a timezone "
                             f"within years 1-9999 UTC ({exc})",
                             details={"fields": [name]}) from None


def repo_for(livechat: Livechat) -> BusinessHoursRepo:
    """The one business-hours repo of ``livechat``, created on first use (idempotent).

    The repo reaches the store through a weak reference, so it does not keep the livechat
    alive; it lives as long as the livechat does.
    """
    repo = _repos.get(livechat)
    if repo is None:
        domain_ref = weakref.ref(livechat)

        def store() -> Store:
            alive = domain_ref()
            if alive is None:
                raise RuntimeError("the livechat domain of this repo is gone")
            return alive.store

        repo = _repos[livechat] = BusinessHoursRepo(store)
    return repo


class ConversationItem(msgspec.Struct, rename="camel", kw_only=True):
    """A conversation: the shape of :func:`lcx.livechat.frames.conversation_data`."""

    id: str
    request_id: str
    organization_id: str
    tenant_id: str
    sub_handle: str
    user_group_id: str
    provider: str
    channel: str
    status: ConversationStatus
    subscriber: Subscriber
    context: Context
    participants: list[Participant]
    flags: dict[str, Any]
    agent: AgentRef | None
    created_at: str
    queued_at: str
    accepted_at: str | None
    accepted_by: str | None
    ended_at: str | None
    ended_by: str | None
    end_reason: str | None
    last_seq: int
    last_activity_at: str


class Health(msgspec.Struct, rename="camel", kw_only=True):
    """``GET /healthz``: the process is alive (it says nothing of its dependencies)."""

    status: str = "ok"
    instance_id: str
    """The answering instance (as in ``/cluster``)."""
    version: str
    """The running lcx's version."""


class Readiness(msgspec.Struct, kw_only=True):
    """``GET /readyz`` when ready: the store (and Redis, in cluster mode) answered."""

    status: str = "ready"
