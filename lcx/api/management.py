"""Part of the management API (API.md section 6): settings, transcripts, HTTP messages,
conversation detail.

Routes:

- ``GET``/``PUT /organizations/{orgId}/livechat-settings``;
- ``GET /organizations/{orgId}/livechat-messages?conversationId=&from=&to=&format=``;
- ``POST /organizations/{orgId}/livechat-messages``;
- ``GET /organizations/{orgId}/livechat-conversations/{id}``.

Who may do what (every token must be of ``orgId``, ``admin`` excepted):

* settings: reading needs ``agent``, ``supervisor``, ``service`` or ``admin``; writing
  ``supervisor``, ``service`` or ``admin``. ``PUT`` replaces the whole object: omitted
  fields take their defaults; a wrong type or an unknown field is 400 (``details.fields``),
  an out-of-range value 422 (``details.reason = "out_of_range"``, ``details.fields``).
* transcripts and conversation detail: ``supervisor``, ``service`` and ``admin`` see the
  whole organization. An agent-only token must name one ``conversationId`` it took part
  in (403 otherwise); for the detail, a conversation it took part in or of one of its
  groups. ``from``/``to`` are RFC 3339 timestamps (``from`` inclusive, ``to`` exclusive).
* posting: ``agent``, ``supervisor`` or ``service``; the message is written as an agent
  message by the token's ``sub``/``name``, into an *active* conversation only (409
  otherwise, with ``details.status``); an agent-only token must be one of its current
  participants (403). The optional ``id`` makes it idempotent per caller (scope
  ``http:<orgId>:<sub>``): a replay answers the first result, even after the end.
  ``"private": true`` makes it an internal note (agents and supervisors see it; the bot,
  the channel and the provider never get it).
* a conversation of another organization, or none, is 404 ``not_found``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec
import trio
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from actors.messages import Msg, PostMessage, PostResult
from lcx.api.auth import authenticate
from lcx.api.bodies import Timestamp, json_response, read_json
from lcx.api.common import (
    MAX_TEXT_CHARS,
    Attachments,
    ConversationItem,
    Id,
    read_query,
    require_livechat,
    timestamp_param,
)
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org
from lcx.errors import Conflict, Forbidden, NotFound, Unauthorized
from lcx.model import (
    Author,
    Conversation,
    Message,
    iso,
    utc_now,
)
from lcx.org_settings import LivechatSettings
from lcx.store import Store, Tx
from lcx.store.conversations import load_conversation, messages_between, remembered
from lcx.transcripts import TranscriptFormat, content_disposition, render

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps
    from lcx.org_settings import OrgSettings

__all__ = ["ConversationDetail", "ManagementApi", "management_blueprint"]

READ_SCOPES = ("agent", "supervisor", "service", "admin")
WRITE_SETTINGS_SCOPES = ("supervisor", "service", "admin")
POST_SCOPES = ("agent", "supervisor", "service")
ORG_WIDE_SCOPES = ("supervisor", "service", "admin")


class TranscriptQuery(msgspec.Struct, kw_only=True):
    """``GET .../livechat-messages`` query."""

    conversation_id: Id | None = msgspec.field(default=None, name="conversationId")
    since: Timestamp | None = msgspec.field(default=None, name="from")
    until: Timestamp | None = msgspec.field(default=None, name="to")
    format: TranscriptFormat = "json"


class HttpMessageBody(msgspec.Struct, rename="camel", kw_only=True):
    """``POST .../livechat-messages``."""

    conversation_id: Id
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
    id: Id | None = None
    attachments: Attachments = []
    private: bool = False
    """An internal note: shown to agents and supervisors only, never sent on."""


class TranscriptPage(msgspec.Struct, kw_only=True):
    """A JSON transcript."""

    items: list[Message]


class ConversationDetail(ConversationItem, kw_only=True):
    """``GET .../livechat-conversations/{id}``: a conversation as the management API shows
    it, the fields of a listing's item (every field present, ``null`` when unset)."""

    @classmethod
    def of(cls, c: Conversation) -> ConversationDetail:
        """The detail of conversation ``c``."""
        return cls(id=c.id, request_id=c.request_id, organization_id=c.org_id,
                   tenant_id=c.tenant_id, sub_handle=c.sub_handle,
                   user_group_id=c.user_group_id, provider=c.provider, channel=c.channel,
                   status=c.status, subscriber=c.subscriber, context=c.context,
                   participants=c.participants, flags=c.flags, agent=c.agent,
                   created_at=c.created_at, queued_at=c.queued_at,
                   accepted_at=c.accepted_at, accepted_by=c.accepted_by,
                   ended_at=c.ended_at, ended_by=c.ended_by, end_reason=c.end_reason,
                   last_seq=c.last_seq, last_activity_at=c.last_activity_at)


class ManagementPorts(Protocol):
    """What the management routes reach of the livechat domain (``Livechat`` is one)."""

    @property
    def store(self) -> Store:
        """The open store."""

    @property
    def org_settings(self) -> OrgSettings:
        """The organization settings, read and written through their cache."""

    async def settings_changed(self, org_id: str) -> None:
        """Apply new organization settings to open conversations and queues at once."""

    async def tell_conversation(self, conversation_id: str, message: Msg,
                                timeout: float = ...) -> Any:
        """Ask the conversation to apply ``message``; its answer."""


def _took_part(principal: Principal, conversation: Conversation) -> bool:
    return any(p.id == principal.sub for p in conversation.participants)


def _in_conversation(principal: Principal, conversation: Conversation) -> bool:
    return any(p.id == principal.sub for p in conversation.active_agents())


def _org_wide(principal: Principal) -> bool:
    return principal.has_any(*ORG_WIDE_SCOPES)


def _not_active(conversation_id: str, status: str) -> Conflict:
    return Conflict("the conversation is not active",
                    details={"conversationId": conversation_id, "status": status})


class ManagementApi:
    """The route handlers listed in the module docstring, over one livechat."""

    def __init__(self, livechat: ManagementPorts, verifier: TokenVerifier | None) -> None:
        self.livechat = livechat
        self.verifier = verifier

    def caller(self, org_id: str, *scopes: str) -> Principal:
        """The principal, holding one of ``scopes`` and limited to ``org_id`` (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = authenticate(request, self.verifier, *scopes)
        require_org(principal, org_id)
        return principal

    async def conversation_of(self, org_id: str, conversation_id: str) -> Conversation:
        """The organization's conversation with this id (404 when none, or another org's)."""
        found = await self.livechat.store.read(lambda tx: load_conversation(tx, conversation_id))
        if found is None or found.org_id != org_id:
            raise NotFound(f"no conversation {conversation_id!r}",
                           details={"conversationId": conversation_id})
        return found

    async def get_settings(self, org_id: str) -> TrioResponse:
        """``GET .../livechat-settings``: the stored settings, or the defaults."""
        self.caller(org_id, *READ_SCOPES)
        return json_response(await self.livechat.org_settings.get(org_id))

    async def put_settings(self, org_id: str) -> TrioResponse:
        """``PUT .../livechat-settings``: replace them all (idempotent); 200 with them."""
        self.caller(org_id, *WRITE_SETTINGS_SCOPES)
        settings = await read_json(request, LivechatSettings)
        await self.livechat.org_settings.put(org_id, settings)
        await self.livechat.settings_changed(org_id)
        return json_response(settings)

    async def transcript(self, org_id: str) -> TrioResponse:
        """``GET .../livechat-messages``: JSON, or a CSV or PDF download."""
        principal = self.caller(org_id, *READ_SCOPES)
        query = read_query(TranscriptQuery)
        since, until = timestamp_param(query.since, "from"), timestamp_param(query.until, "to")
        if query.conversation_id is not None:
            conversation = await self.conversation_of(org_id, query.conversation_id)
            if not _org_wide(principal) and not _took_part(principal, conversation):
                raise Forbidden("agents may read transcripts of their own conversations only")
        elif not _org_wide(principal):
            raise Forbidden("agents must name a conversationId they took part in",
                            details={"fields": ["conversationId"]})

        def read(tx: Tx) -> tuple[list[Message], dict[str, Conversation]]:
            messages = messages_between(tx, org_id, conversation_id=query.conversation_id,
                                        since=since, until=until)
            ids = dict.fromkeys(m.conversation_id for m in messages)
            loaded = {cid: load_conversation(tx, cid) for cid in ids}
            return messages, {cid: c for cid, c in loaded.items() if c is not None}

        messages, conversations = await self.livechat.store.read(read)
        # rendering a PDF of thousands of messages is CPU work: keep it off the event loop
        rendered = await trio.to_thread.run_sync(partial(
            render, messages, conversations, query.format, org_id=org_id,
            generated_at=iso(utc_now()), conversation_id=query.conversation_id))
        headers = {} if rendered.filename is None else {
            "Content-Disposition": content_disposition(rendered.filename)}
        return TrioResponse(rendered.body, status=200, headers=headers,
                            content_type=rendered.content_type)

    async def post_message(self, org_id: str) -> TrioResponse:
        """``POST .../livechat-messages``: 202 with the stored message's seq."""
        principal = self.caller(org_id, *POST_SCOPES)
        body = await read_json(request, HttpMessageBody)
        scope = f"http:{org_id}:{principal.sub}"
        if body.id is not None:
            key = body.id
            earlier = await self.livechat.store.read(lambda tx: remembered(tx, scope, key))
            if earlier is not None:
                return json_response(msgspec.json.decode(earlier, type=PostResult), 202)
        conversation = await self.conversation_of(org_id, body.conversation_id)
        if conversation.status != "active":
            raise _not_active(conversation.id, conversation.status)
        if not _org_wide(principal) and not _in_conversation(principal, conversation):
            raise Forbidden("agents may post only into conversations they are in")
        post = PostMessage(author=Author(type="agent", id=principal.sub, name=principal.name),
                           text=body.text, attachments=tuple(body.attachments),
                           client_id=body.id, idempotency_scope=scope if body.id else None,
                           private=body.private)
        try:
            result: PostResult = await self.livechat.tell_conversation(conversation.id, post)
        except NotFound:  # it ended between our read and the actor's turn
            raise _not_active(conversation.id, "ended") from None
        return json_response(result, 202)

    async def conversation_detail(self, org_id: str, conversation_id: str) -> TrioResponse:
        """``GET .../livechat-conversations/{id}``."""
        principal = self.caller(org_id, *READ_SCOPES)
        conversation = await self.conversation_of(org_id, conversation_id)
        visible = _org_wide(principal) or _took_part(principal, conversation) \
            or conversation.user_group_id in principal.groups
        if not visible:
            raise Forbidden("agents may read their own conversations and their groups' only")
        return json_response(ConversationDetail.of(conversation))


ENDPOINTS = (
    Endpoint("/organizations/<org_id>/livechat-settings", "GET", "get_settings",
             "Livechat settings of an organization", "settings",
             responses={200: LivechatSettings}, scopes=READ_SCOPES),
    Endpoint("/organizations/<org_id>/livechat-settings", "PUT", "put_settings",
             "Replace the livechat settings", "settings", body=LivechatSettings,
             responses={200: LivechatSettings}, scopes=WRITE_SETTINGS_SCOPES,
             errors=(400, 401, 403, 404, 413, 415, 422)),
    Endpoint("/organizations/<org_id>/livechat-messages", "GET", "transcript",
             "Transcript (JSON, CSV or PDF)", "transcripts", query=TranscriptQuery,
             responses={200: TranscriptPage},
             response_media_types={200: ("text/csv", "application/pdf")},
             scopes=READ_SCOPES, operation_id="getTranscript"),
    Endpoint("/organizations/<org_id>/livechat-messages", "POST", "post_message",
             "Post a message into a conversation", "transcripts", body=HttpMessageBody,
             responses={202: PostResult}, scopes=POST_SCOPES,
             errors=(400, 401, 403, 404, 409, 413, 415),
             operation_id="postConversationMessage"),
    Endpoint("/organizations/<org_id>/livechat-conversations/<conversation_id>", "GET",
             "conversation_detail", "Conversation detail", "conversations",
             responses={200: ConversationDetail}, scopes=READ_SCOPES),
)


def management_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the management routes listed in the module docstring."""
    api = ManagementApi(require_livechat(deps), deps.verifier)
    blueprint = Blueprint("management", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
