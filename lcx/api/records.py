"""Listings and deletion of livechat records (API.md section 6).

Routes:

- ``GET /organizations/{orgId}/livechat-requests``
  ``?status=&userGroupId=&tenantId=&from=&to=&limit=&cursor=``;
- ``GET /users/{userId}/livechat-requests`` (same query, plus ``organizationId`` for admins);
- ``GET /agent/organizations/{orgId}/livechat-conversations``
  ``?status=active|ended&from=&to=&limit=&cursor=``;
- ``DELETE /organizations/{orgId}/data-retention[?before=]``;
- ``DELETE /organizations/{orgId}/data``.

Pages. Items come newest first (``createdAt``, then id, descending); ``limit`` is 1-200
(default 50); ``nextCursor`` is ``null`` on the last page. The cursor is opaque (a
versioned position, see :data:`Cursor`); one that is not of its form is 400
``invalid_request`` naming ``cursor``. The query filters apply to every
page: a cursor only says where to continue. ``from``/``to`` bound ``createdAt`` (RFC 3339;
``from`` inclusive, ``to`` exclusive). Bad values are 400 naming the field.

Requests. ``status`` is the request's: ``pending``, ``accepted`` (its conversation is
active or ended), ``cancelled`` or ``missed``. ``conversationId`` is ``null`` until an
agent accepted. ``/users/{userId}/livechat-requests`` lists the requests whose latest
accept was by that agent (a request re-queued and taken by a colleague moves to them).

Who sees what (tokens of another organization get 403; ``admin`` sees every one):

* the organization's request listing: ``supervisor``, ``service``, ``admin`` see it all;
  an ``agent`` only the requests of the user groups in its ``groups`` claim (naming
  another group in ``userGroupId`` is 403; no groups, no items).
* ``/users/{userId}/...``: an ``agent`` only for its own ``sub`` (403 otherwise);
  ``supervisor`` and ``service`` for anyone, within the token's organization; ``admin``
  must say which organization with ``?organizationId=`` (400 otherwise).
* conversations: an ``agent`` gets those it is or was a participant of (it accepted,
  joined or was handed them); ``supervisor``, ``service``, ``admin`` the whole
  organization. Without ``status``, active and ended ones (pending requests are listed
  with the requests).
* deletion: ``supervisor``, ``service`` or ``admin``.

Deletion. ``data-retention`` deletes closed conversations (ended, cancelled, missed) that
ended before ``before`` (default: now minus the organization's ``retentionDays``) with
their messages, events and attachments, and uploads tied to no conversation older than
``before``; open conversations are never deleted. It answers 200 ``{"deleted": {...},
"before"}``. ``data`` ends every open conversation through its actor (bots get
``CONVERSATION_END`` only if it is delivered before its outbox row is deleted, which it
usually is not), then deletes every record of the organization (conversations, messages,
events, attachments, settings, business hours, its idempotency keys) and answers 202 with
the counts. Both run while the request waits, in batches of 500 conversations, and
repeating them is harmless. Attachment files are deleted before their records; when the
attachment storage fails the answer is 503 ``unavailable`` and what is left stays for the
next call.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import Timestamp, json_response
from lcx.api.common import (
    ConversationItem,
    Id,
    read_query,
    repo_for,
    require_livechat,
    timestamp_param,
)
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org
from lcx.errors import Forbidden, InvalidRequest, Unauthorized
from lcx.livechat import frames
from lcx.model import (
    Conversation,
    ConversationStatus,
    Subscriber,
    iso,
    parse_iso,
    request_status,
    utc_now,
)
from lcx.store.listings import (
    ListFilter,
    Position,
    RequestStatus,
    list_conversations,
    statuses_of_requests,
)
from services.retention import delete_organization, purge_closed, retention_cutoff

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.api.deps import AppDeps
    from lcx.attachments import AttachmentStorage

__all__ = ["RecordsApi", "decode_cursor", "encode_cursor", "records_blueprint"]

T = TypeVar("T")

READ_SCOPES = ("agent", "supervisor", "service", "admin")
ORG_WIDE_SCOPES = ("supervisor", "service", "admin")
DELETE_SCOPES = ("supervisor", "service", "admin")
CURSOR_VERSION = 1
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]


# --- queries and answers --------------------------------------------------------------------

class _Query(msgspec.Struct, rename="camel", kw_only=True):
    """Base of the listing queries: camelCase, unknown parameters ignored."""

    since: Timestamp | None = msgspec.field(default=None, name="from")
    until: Timestamp | None = msgspec.field(default=None, name="to")
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class RequestsQuery(_Query, kw_only=True):
    """``GET .../livechat-requests`` query."""

    status: RequestStatus | None = None
    tenant_id: Id | None = None
    user_group_id: Id | None = None


class UserRequestsQuery(RequestsQuery, kw_only=True):
    """``GET /users/{userId}/livechat-requests`` query (``organizationId``: admins only)."""

    organization_id: Id | None = None


class ConversationsQuery(_Query, kw_only=True):
    """``GET /agent/.../livechat-conversations`` query."""

    status: Literal["active", "ended"] | None = None


class RetentionQuery(msgspec.Struct, kw_only=True):
    """``DELETE .../data-retention`` query."""

    before: Timestamp | None = None


class RequestItem(msgspec.Struct, rename="camel", kw_only=True):
    """A request as the listings show it."""

    id: str
    status: RequestStatus
    tenant_id: str
    user_group_id: str
    sub_handle: str
    subscriber: Subscriber
    provider: str
    created_at: str
    queued_at: str
    accepted_at: str | None
    accepted_by: str | None
    conversation_id: str | None
    ended_at: str | None
    ended_by: str | None
    end_reason: str | None


class RequestPage(msgspec.Struct, rename="camel", kw_only=True):
    """A page of requests."""

    items: list[RequestItem]
    next_cursor: str | None


class ConversationPage(msgspec.Struct, rename="camel", kw_only=True):
    """A page of conversations."""

    items: list[ConversationItem]
    next_cursor: str | None


class RetentionCounts(msgspec.Struct, kw_only=True):
    """What a retention purge deleted."""

    conversations: int
    messages: int
    attachments: int


class RetentionResult(msgspec.Struct, kw_only=True):
    """200 of ``DELETE .../data-retention``."""

    deleted: RetentionCounts
    before: str


class OrgDataCounts(msgspec.Struct, rename="camel", kw_only=True):
    """What deleting an organization's data removed."""

    conversations: int
    messages: int
    attachments: int
    events: int
    settings: int
    business_hours: int
    idempotency_keys: int


class OrgDataDeleted(msgspec.Struct, rename="camel", kw_only=True):
    """202 of ``DELETE .../data``: ``ended`` open conversations were ended first;
    ``stillOpen`` were opened meanwhile and kept (normally 0)."""

    deleted: OrgDataCounts
    ended: int
    still_open: int


# --- cursors ---------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_CURSOR = re.compile(r"1\.([0-9]{1,14})\.((?:[0-9a-f]{2}){1,1024})")
"""Version 1: ``1.<createdAt in epoch ms>.<id as hex UTF-8>`` (Python and ECMA syntax)."""

Cursor = Annotated[str, msgspec.Meta(
    min_length=5, max_length=2065, pattern=f"^{_CURSOR.pattern}$",
    description="opaque: the nextCursor of the previous page")]
"""A page cursor as clients send it back.

The format is ours to change (clients must treat it as opaque): a version, the position's
``createdAt`` in epoch milliseconds and its id as hex UTF-8. It is a regular language on
purpose, so the OpenAPI pattern says exactly which values are accepted: every value that
matches it is a valid position (an id that is not valid UTF-8 is read as Latin-1; a
position that names no row still orders correctly); any other value is 400.
"""


def encode_cursor(position: Position) -> str:
    """The opaque cursor of a position."""
    ms = (parse_iso(position.created_at) - _EPOCH) // _MILLISECOND
    return f"{CURSOR_VERSION}.{ms}.{position.id.encode().hex()}"


def decode_cursor(cursor: str) -> Position:
    """The position of a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidRequest: ``cursor`` is not of that form (``details.fields == ["cursor"]``).
    """
    found = _CURSOR.fullmatch(cursor)
    if found is None:
        raise InvalidRequest("cursor is not a cursor of this listing",
                             details={"fields": ["cursor"]})
    ms, hex_id = found.groups()
    raw = bytes.fromhex(hex_id)
    try:
        last_id = raw.decode()
    except UnicodeDecodeError:
        last_id = raw.decode("latin-1")
    return Position(iso(_EPOCH + int(ms) * _MILLISECOND), last_id)


# --- helpers ---------------------------------------------------------------------------------

def request_item(conversation: Conversation) -> RequestItem:
    """The listing item of the request behind ``conversation``."""
    c = conversation
    return RequestItem(
        id=c.request_id, status=cast(RequestStatus, request_status(c.status)),
        tenant_id=c.tenant_id, user_group_id=c.user_group_id, sub_handle=c.sub_handle,
        subscriber=c.subscriber, provider=c.provider, created_at=c.created_at,
        queued_at=c.queued_at, accepted_at=c.accepted_at, accepted_by=c.accepted_by,
        conversation_id=c.id if c.accepted_at else None, ended_at=c.ended_at,
        ended_by=c.ended_by, end_reason=c.end_reason)


def conversation_item(conversation: Conversation) -> ConversationItem:
    """The listing item of ``conversation`` (the shape of ``conversation_data``)."""
    return msgspec.convert(frames.conversation_data(conversation), ConversationItem)


def _org_wide(principal: Principal) -> bool:
    return principal.has_any(*ORG_WIDE_SCOPES)


def _page_bounds(query: _Query) -> tuple[str | None, str | None, Position | None]:
    after = None if query.cursor is None else decode_cursor(query.cursor)
    return timestamp_param(query.since, "from"), timestamp_param(query.until, "to"), after


def _next_cursor(rows: list[Conversation], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(Position(last.created_at, last.id))


# --- routes ----------------------------------------------------------------------------------

class RecordsApi:
    """The route handlers listed in the module docstring, over one livechat."""

    def __init__(self, livechat: Livechat, verifier: TokenVerifier | None,
                 storage: AttachmentStorage | None = None) -> None:
        self.livechat = livechat
        self.verifier = verifier
        self.storage = storage

    def principal(self, *scopes: str) -> Principal:
        """The request's principal, holding one of ``scopes`` (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        return authenticate(request, self.verifier, *scopes)

    def caller(self, org_id: str, *scopes: str) -> Principal:
        """The principal, holding one of ``scopes`` and limited to ``org_id`` (401/403)."""
        principal = self.principal(*scopes)
        require_org(principal, org_id)
        return principal

    async def page(self, where: ListFilter, after: Position | None,
                   limit: int) -> tuple[list[Conversation], str | None]:
        """Up to ``limit`` matching rows after ``after``, and the next page's cursor."""
        rows = await self.livechat.store.read(
            lambda tx: list_conversations(tx, where, after=after, limit=limit + 1))
        return rows[:limit], _next_cursor(rows, limit)

    async def request_page(self, org_id: str, query: RequestsQuery,
                           **more: Any) -> TrioResponse:
        """One page of the organization's requests matching ``query`` (and ``more``
        conditions of :class:`~lcx.store.listings.ListFilter`); 400 on bad bounds."""
        since, until, after = _page_bounds(query)
        where = ListFilter(org_id=org_id, statuses=statuses_of_requests(query.status),
                           tenant_id=query.tenant_id, user_group_id=query.user_group_id,
                           since=since, until=until, **more)
        rows, cursor = await self.page(where, after, query.limit)
        return json_response(RequestPage(items=[request_item(c) for c in rows],
                                         next_cursor=cursor))

    async def org_requests(self, org_id: str) -> TrioResponse:
        """``GET /organizations/{orgId}/livechat-requests``."""
        principal = self.caller(org_id, *READ_SCOPES)
        query = read_query(RequestsQuery, strict=False)
        groups: tuple[str, ...] | None = None
        if not _org_wide(principal):
            groups = principal.groups
            if query.user_group_id is not None and query.user_group_id not in groups:
                raise Forbidden("agents may list the requests of their own groups only",
                                details={"fields": ["userGroupId"]})
        return await self.request_page(org_id, query, groups=groups)

    async def user_requests(self, user_id: str) -> TrioResponse:
        """``GET /users/{userId}/livechat-requests``."""
        principal = self.principal(*READ_SCOPES)
        query = read_query(UserRequestsQuery, strict=False)
        org_id = query.organization_id or principal.org
        if org_id is None:
            raise InvalidRequest("admin tokens must name the organization",
                                 details={"fields": ["organizationId"]})
        require_org(principal, org_id)
        if not _org_wide(principal) and user_id != principal.sub:
            raise Forbidden("agents may list their own requests only")
        return await self.request_page(org_id, query, accepted_by=user_id)

    async def agent_conversations(self, org_id: str) -> TrioResponse:
        """``GET /agent/organizations/{orgId}/livechat-conversations``."""
        principal = self.caller(org_id, *READ_SCOPES)
        query = read_query(ConversationsQuery, strict=False)
        since, until, after = _page_bounds(query)
        statuses: tuple[ConversationStatus, ...] = \
            ("active", "ended") if query.status is None else (query.status,)
        where = ListFilter(org_id=org_id, statuses=statuses, since=since, until=until,
                           participant=None if _org_wide(principal) else principal.sub)
        rows, cursor = await self.page(where, after, query.limit)
        return json_response(ConversationPage(items=[conversation_item(c) for c in rows],
                                              next_cursor=cursor))

    async def purge_retention(self, org_id: str) -> TrioResponse:
        """``DELETE .../data-retention[?before=]``: 200 with the counts."""
        self.caller(org_id, *DELETE_SCOPES)
        before = timestamp_param(read_query(RetentionQuery, strict=False).before, "before")
        if before is None:
            settings = await self.livechat.org_settings.get(org_id)
            before = retention_cutoff(utc_now(), settings.retention_days)
        purged = await purge_closed(self.livechat.store, org_id, before=before,
                                    storage=self.storage)
        return json_response(RetentionResult(before=before, deleted=RetentionCounts(
            conversations=purged.conversations, messages=purged.messages,
            attachments=purged.attachments)))

    async def delete_data(self, org_id: str) -> TrioResponse:
        """``DELETE .../data``: 202 with the counts."""
        self.caller(org_id, *DELETE_SCOPES)
        done = await delete_organization(self.livechat, org_id, storage=self.storage)
        repo_for(self.livechat).forget(org_id)
        purged, rows = done.purged, done.rows
        counts = OrgDataCounts(
            conversations=purged.conversations, messages=purged.messages + rows.messages,
            attachments=purged.attachments, events=purged.outbox + rows.outbox,
            settings=rows.settings, business_hours=rows.business_hours,
            idempotency_keys=rows.idempotency_keys)
        return json_response(OrgDataDeleted(deleted=counts, ended=done.ended,
                                            still_open=done.still_open), 202)


PAGE_ERRORS = (400, 401, 403)
ENDPOINTS = (
    Endpoint("/organizations/<org_id>/livechat-requests", "GET", "org_requests",
             "Page of an organization's requests", "records", query=RequestsQuery,
             responses={200: RequestPage}, scopes=READ_SCOPES, errors=PAGE_ERRORS,
             operation_id="listOrganizationRequests"),
    Endpoint("/users/<user_id>/livechat-requests", "GET", "user_requests",
             "Page of the requests an agent accepted", "records", query=UserRequestsQuery,
             responses={200: RequestPage}, scopes=READ_SCOPES, errors=PAGE_ERRORS,
             operation_id="listUserRequests"),
    Endpoint("/agent/organizations/<org_id>/livechat-conversations", "GET",
             "agent_conversations", "Page of the caller's conversations (all for "
             "supervisors)", "records", query=ConversationsQuery,
             responses={200: ConversationPage}, scopes=READ_SCOPES, errors=PAGE_ERRORS,
             operation_id="listAgentConversations"),
    Endpoint("/organizations/<org_id>/data-retention", "DELETE", "purge_retention",
             "Purge closed conversations past retention", "records", query=RetentionQuery,
             responses={200: RetentionResult}, scopes=DELETE_SCOPES,
             errors=(*PAGE_ERRORS, 503)),
    Endpoint("/organizations/<org_id>/data", "DELETE", "delete_data",
             "Delete every record of an organization", "records",
             responses={202: OrgDataDeleted}, scopes=DELETE_SCOPES, errors=(401, 403, 503)),
)


def records_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the routes listed in the module docstring.

    Attachment files are deleted through ``deps.attachments`` when the app has one.
    """
    api = RecordsApi(require_livechat(deps), deps.verifier, deps.attachments)
    blueprint = Blueprint("records", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
