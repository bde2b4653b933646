"""The bot API (API.md section 3): a bot hands its users over to humans.

Routes (every one needs a ``bot`` or ``service`` token; a tenant must be of the token's
organization and, for a ``bot`` token with a ``tenants`` claim, listed there):

- ``POST /requests``, ``PATCH /requests/subscribers/{subHandle}?tenantId=``,
  ``DELETE /sessions/tenants/{tenantId}/subscribers/{subHandle}``: open, change, end;
- ``POST /messages``: forward a user message (idempotent on the bot's ``id``);
- ``HEAD /organizations/{orgId}/requests``, ``HEAD .../tenants/{tenantId}/metrics``,
  ``GET /subscribers/{subHandle}/livechat-state``, ``GET /tenants/{tenantId}/availability``.

Decisions where API.md is silent:

* **Conversation id.** A request reserves its conversation id at creation, but clients see
  it only once an agent accepted (``conversationId`` is ``null`` while pending, as in the
  bot events); ``POST /messages`` answers the actor's ``PostResult``, which always names it.
* **Auto routing** may give a request to an agent before ``POST /requests`` answers; the
  201 then says ``"status": "accepted"`` with the ``conversationId`` and no position.
* **State.** ``livechat-state`` answers ``none`` (never asked), ``pending``, ``active``, or
  ``ended`` for every closed outcome (ended, cancelled, missed) of the *latest* request;
  the added ``status`` field keeps the exact outcome, with ``endedAt``/``endedBy``/
  ``endReason``.
* **Cancelling** (``PATCH`` with ``"status": "cancelled"``) applies to a pending request;
  other fields of that body are ignored. When an agent already accepted, the answer is
  409 ``conflict`` (end the session with ``DELETE`` instead); 404 when nothing is open.
* **Messages** of type ``text`` need ``text``, ``file`` at least one attachment, ``rich``
  and ``postback`` a ``payload`` (400 naming the field otherwise). Without an ``id`` a
  message is not idempotent. Ids are unique per tenant, as the contract says.
* **Limits**: ids and handles 1-256 characters, ``text`` at most 65,536 characters, at most
  20 attachments; unknown body fields are ignored (bots written for the replaced gateway
  may send more), unknown query parameters too.
* **Provider**: a request may name another provider than the tenant's only when the tenant
  has that provider's settings table (``helvia`` always works); else 422
  ``provider_not_configured``.
* **Availability** counts online agents of the group (``?userGroupId=``, default the
  tenant's default group; the whole organization when the tenant has none), and
  ``available`` is true when the group's business hours are open and someone is online.
  A group without business hours (or no group) is always open (``"configured": false``);
  ``nextChangeAt`` is when open flips next (up to 14 days ahead, else ``null``).
* **Refusing** (``rejectWhenUnavailable``): closed business hours answer 422
  ``outside_business_hours`` (with ``timezone`` and ``nextChangeAt``, when it opens), which
  takes precedence over ``no_agents``.
* ``HEAD .../requests`` without ``tenantId`` counts the whole organization, also for a
  token limited to some tenants (a count reveals no conversation).
* ``HEAD .../metrics``: ``X-Agents-Online`` counts the tenant's default group (or the
  organization); ``X-Average-Waiting-Time`` is ``0.000`` when nothing was accepted in the
  window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from actors.keys import queue_key
from actors.livechat import Livechat
from actors.messages import (
    CreateRequest,
    End,
    GetState,
    Position,
    PostMessage,
    PostResult,
    UpdateRequest,
)
from lcx.api.auth import authenticate
from lcx.api.bodies import json_response, read_json
from lcx.api.common import (
    Attachments,
    Id,
    Text,
    path_id,
    read_query,
    repo_for,
    require_livechat,
)
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org, require_tenant
from lcx.business_hours import current_state
from lcx.config import Provider, TenantConfig
from lcx.errors import Conflict, InvalidRequest, NotFound, Unauthorized, Unprocessable
from lcx.livechat.conversation import new_request
from lcx.model import (
    Author,
    Context,
    Conversation,
    MessageType,
    Subscriber,
    iso,
    parse_iso,
    request_status,
    utc_now,
)
from lcx.store import Tx
from lcx.store.conversations import (
    accepted_waits,
    count_pending,
    find_latest,
    find_open,
    remembered,
)

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps

__all__ = ["BOT_SCOPES", "BotApi", "bot_blueprint", "state_body"]

T = TypeVar("T")

BOT_SCOPES = ("bot", "service")
DEFAULT_METRICS_WINDOW_SECONDS = 3600



class _Body(msgspec.Struct, rename="camel", kw_only=True):
    """Base of request bodies and queries: camelCase, unknown fields ignored."""


class CreateRequestBody(_Body):
    """``POST /requests``."""

    tenant_id: Id
    sub_handle: Id
    user_group_id: Id | None = None
    provider: Provider | None = None
    subscriber: Subscriber = msgspec.field(default_factory=Subscriber)
    context: Context = msgspec.field(default_factory=Context)


class UpdateRequestBody(_Body):
    """``PATCH /requests/subscribers/{subHandle}``."""

    subscriber: Subscriber | None = None
    context: Context | None = None
    user_group_id: Id | None = None
    status: Literal["cancelled"] | None = None


class MessageBody(_Body):
    """``POST /messages``."""

    tenant_id: Id
    sub_handle: Id
    id: Id | None = None
    type: MessageType = "text"
    text: Text | None = None
    payload: Any = None
    attachments: Attachments = []
    sent_at: str | None = None


class TenantQuery(_Body):
    """``?tenantId=`` (required)."""

    tenant_id: Id


class GroupQuery(_Body):
    """``?userGroupId=`` (optional)."""

    user_group_id: Id | None = None


class CountQuery(_Body):
    """``HEAD /organizations/{orgId}/requests`` query."""

    status: Literal["pending"] = "pending"
    tenant_id: Id | None = None
    user_group_id: Id | None = None


class RequestCreated(_Body):
    """201 of ``POST /requests``."""

    id: str
    status: str
    position: int | None
    estimated_wait_seconds: int | None
    conversation_id: str | None
    provider: str
    user_group_id: str


class AgentBrief(_Body):
    """An agent as the bot sees it."""

    id: str
    name: str | None = None


class LivechatState(_Body):
    """``GET /subscribers/{subHandle}/livechat-state`` (also the PATCH answer)."""

    state: Literal["none", "pending", "active", "ended"]
    request_id: str | None = None
    conversation_id: str | None = None
    position: int | None = None
    estimated_wait_seconds: int | None = None
    agent: AgentBrief | None = None
    provider: str | None = None
    status: str | None = None
    user_group_id: str | None = None
    ended_at: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None


class BusinessHoursState(_Body):
    """Whether a user group's business hours are open now."""

    open: bool
    timezone: str | None = None
    next_change_at: str | None = None
    user_group_id: str | None = None
    configured: bool = False


class Availability(_Body):
    """``GET /tenants/{tenantId}/availability``."""

    available: bool
    agents_online: int
    business_hours: BusinessHoursState
    user_group_id: str | None = None


async def state_body(livechat: Livechat, conversation: Conversation | None) -> LivechatState:
    """The ``livechat-state`` body of a subscriber's latest request (see the module notes)."""
    if conversation is None:
        return LivechatState(state="none")
    c = conversation
    position, estimate = await _position(livechat, c)
    agent = None if c.agent is None else AgentBrief(id=c.agent.id, name=c.agent.name)
    return LivechatState(
        state=c.status if c.status in ("pending", "active") else "ended", status=c.status,
        request_id=c.request_id, conversation_id=c.id if c.accepted_at else None,
        position=position, estimated_wait_seconds=estimate, agent=agent,
        provider=c.provider, user_group_id=c.user_group_id, ended_at=c.ended_at,
        ended_by=c.ended_by, end_reason=c.end_reason)


async def _position(livechat: Livechat, c: Conversation) -> tuple[int | None, int | None]:
    if c.status != "pending":
        return None, None
    answer: tuple[int | None, int | None] = await livechat.queues.ask(
        queue_key(c.org_id, c.user_group_id), Position(conversation_id=c.id))
    return answer


def _check_message(body: MessageBody) -> None:
    missing = {"text": body.type == "text" and not body.text,
               "attachments": body.type == "file" and not body.attachments,
               "payload": body.type in ("rich", "postback") and body.payload is None}
    fields = [name for name, bad in missing.items() if bad]
    if fields:
        raise InvalidRequest(f"a {body.type} message needs {fields[0]}",
                             details={"fields": fields})


def _check_provider(tenant: TenantConfig, provider: str) -> None:
    if provider == "helvia" or provider == tenant.provider:
        return
    if getattr(tenant, provider, None) is None:
        raise Unprocessable(f"tenant {tenant.id!r} has no settings for provider {provider!r}",
                            details={"reason": "provider_not_configured",
                                     "provider": provider})


def _new_conversation(tenant: TenantConfig, body: CreateRequestBody, group: str,
                      provider: str) -> Conversation:
    """A pending request for the bot's subscriber."""
    return new_request(org_id=tenant.organization_id, tenant_id=tenant.id,
                       sub_handle=body.sub_handle, user_group_id=group, provider=provider,
                       channel=tenant.channel, now=utc_now(), subscriber=body.subscriber,
                       context=body.context)


def _head(headers: Mapping[str, str]) -> TrioResponse:
    """An answer to ``HEAD`` whose news is all in ``headers`` (no body, no content type)."""
    response = TrioResponse(b"", status=200, headers=dict(headers))
    del response.headers["Content-Type"]
    return response


def _conflict(existing: Conversation) -> Conflict:
    return Conflict("the subscriber already has an open request or conversation",
                    details={"requestId": existing.request_id,
                             "conversationId": existing.id if existing.accepted_at else None,
                             "status": existing.status})


class BotApi:
    """The route handlers of the bot API, over one livechat; see the module docstring."""

    def __init__(self, livechat: Livechat, verifier: TokenVerifier | None, *,
                 metrics_window_seconds: int = DEFAULT_METRICS_WINDOW_SECONDS) -> None:
        self.livechat = livechat
        self.verifier = verifier
        self.window = metrics_window_seconds
        self.business_hours = repo_for(livechat)

    # --- helpers -----------------------------------------------------------------------

    def caller(self) -> Principal:
        """The request's principal, which must hold ``bot`` or ``service`` (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        return authenticate(request, self.verifier, *BOT_SCOPES)

    def tenant_for(self, principal: Principal, tenant_id: str,
                   org_id: str | None = None) -> TenantConfig:
        """The tenant ``principal`` may act for: 404 if unknown (or not of ``org_id``),
        403 if of another organization or not in the token's ``tenants``."""
        tenant = self.livechat.tenant(tenant_id)
        if tenant is None or (org_id is not None and tenant.organization_id != org_id):
            raise NotFound(f"no tenant {tenant_id!r}", details={"tenantId": tenant_id})
        require_tenant(principal, tenant.id, tenant.organization_id)
        return tenant

    async def open_of(self, tenant_id: str, sub_handle: str) -> Conversation | None:
        """The subscriber's open (pending or active) conversation, from the store."""
        return await self.livechat.store.read(lambda tx: find_open(tx, tenant_id, sub_handle))

    async def refuse_when_unavailable(self, org_id: str, group: str) -> None:
        """When the organization refuses requests nobody can take: 422
        ``outside_business_hours`` if the group's hours are closed, else ``no_agents`` if
        none of its agents is online."""
        settings = await self.livechat.org_settings.get(org_id)
        if not settings.reject_when_unavailable:
            return
        hours = await self.hours_now(org_id, group)
        if not hours.open:
            raise Unprocessable("the user group is outside its business hours", details={
                "reason": "outside_business_hours", "userGroupId": group,
                "timezone": hours.timezone, "nextChangeAt": hours.next_change_at})
        if self.livechat.agents_online(org_id, group) == 0:
            raise Unprocessable("no agent of the user group is online",
                                details={"reason": "no_agents", "userGroupId": group})

    async def hours_now(self, org_id: str, group: str | None) -> BusinessHoursState:
        """Whether the group's business hours are open now (always, without any)."""
        hours = None if group is None else await self.business_hours.get(org_id, group)
        if hours is None:
            return BusinessHoursState(open=True, user_group_id=group)
        state = current_state(hours, utc_now())
        change = None if state.next_change is None else iso(state.next_change)
        return BusinessHoursState(open=state.open, timezone=hours.timezone,
                                  next_change_at=change, user_group_id=group, configured=True)

    # --- routes --------------------------------------------------------------------------

    async def create_request(self) -> TrioResponse:
        """``POST /requests``."""
        principal = self.caller()
        body = await read_json(request, CreateRequestBody)
        tenant = self.tenant_for(principal, body.tenant_id)
        group = body.user_group_id or tenant.default_user_group
        if not group:
            raise InvalidRequest("userGroupId is required: the tenant has no default group",
                                 details={"fields": ["userGroupId"]})
        provider = body.provider or tenant.provider
        _check_provider(tenant, provider)
        existing = await self.open_of(tenant.id, body.sub_handle)
        if existing is not None:
            raise _conflict(existing)
        await self.refuse_when_unavailable(tenant.organization_id, group)
        created = await self._create(_new_conversation(tenant, body, group, provider))
        latest = created
        state = await state_body(self.livechat, latest)
        if state.position is None:  # auto routing may have given it to an agent already
            latest = await self.livechat.conversations.ask(created.id, GetState())
            state = await state_body(self.livechat, latest)
        return json_response(RequestCreated(
            id=created.request_id, status=request_status(latest.status),
            position=state.position, estimated_wait_seconds=state.estimated_wait_seconds,
            conversation_id=state.conversation_id, provider=created.provider,
            user_group_id=group), 201)

    async def _create(self, conversation: Conversation) -> Conversation:
        try:
            created: Conversation = await self.livechat.conversations.ask(
                conversation.id, CreateRequest(conversation=conversation))
        except Conflict as exc:  # another request of the subscriber won the race
            winner = await self.open_of(conversation.tenant_id, conversation.sub_handle)
            raise (exc if winner is None else _conflict(winner)) from None
        return created

    async def update_request(self, sub_handle: str) -> TrioResponse:
        """``PATCH /requests/subscribers/{subHandle}?tenantId=``."""
        principal = self.caller()
        tenant = self.tenant_for(principal, read_query(TenantQuery).tenant_id)
        body = await read_json(request, UpdateRequestBody)
        existing = await self.open_of(tenant.id, path_id(sub_handle, "subHandle"))
        if existing is None:
            raise NotFound("the subscriber has no open request", details={
                "tenantId": tenant.id, "subHandle": sub_handle})
        if existing.status != "pending":
            raise Conflict("the request was already accepted; end the session instead",
                           details={"requestId": existing.request_id,
                                    "conversationId": existing.id, "status": existing.status})
        message: End | UpdateRequest = End(by="subscriber", reason="cancelled") \
            if body.status == "cancelled" else UpdateRequest(
                subscriber=body.subscriber, context=body.context,
                user_group_id=body.user_group_id)
        updated: Conversation = await self.livechat.conversations.ask(existing.id, message)
        return json_response(await state_body(self.livechat, updated))

    async def end_session(self, tenant_id: str, sub_handle: str) -> TrioResponse:
        """``DELETE /sessions/tenants/{tenantId}/subscribers/{subHandle}``."""
        tenant = self.tenant_for(self.caller(), tenant_id)
        existing = await self.open_of(tenant.id, path_id(sub_handle, "subHandle"))
        if existing is None:
            raise NotFound("the subscriber has nothing open", details={
                "tenantId": tenant.id, "subHandle": sub_handle})
        await self.livechat.conversations.ask(existing.id, End(by="subscriber"))
        return TrioResponse(b"", status=204)

    async def post_message(self) -> TrioResponse:
        """``POST /messages``: idempotent on (tenant, ``id``), even after the end."""
        principal = self.caller()
        body = await read_json(request, MessageBody)
        tenant = self.tenant_for(principal, body.tenant_id)
        _check_message(body)
        scope = f"bot:{tenant.id}"
        existing = await self.open_of(tenant.id, body.sub_handle)
        if existing is None and body.id is not None:
            # a resend after the end; a resend to an open conversation is answered by it
            key = body.id
            earlier = await self.livechat.store.read(lambda tx: remembered(tx, scope, key))
            if earlier is not None:
                return json_response(msgspec.json.decode(earlier, type=PostResult), 202)
        if existing is None:
            raise NotFound("the subscriber has no open request or conversation", details={
                "tenantId": tenant.id, "subHandle": body.sub_handle})
        author = Author(type="subscriber", id=body.sub_handle, name=existing.subscriber.name)
        result: PostResult = await self.livechat.conversations.ask(existing.id, PostMessage(
            author=author, type=body.type, text=body.text, payload=body.payload,
            attachments=tuple(body.attachments), client_id=body.id,
            idempotency_scope=scope if body.id is not None else None))
        return json_response(result, 202)

    async def count_requests(self, org_id: str) -> TrioResponse:
        """``HEAD /organizations/{orgId}/requests``: ``X-Total-Count`` of pending ones."""
        principal = self.caller()
        require_org(principal, org_id)
        query = read_query(CountQuery)
        if query.tenant_id is not None:
            self.tenant_for(principal, query.tenant_id, org_id)
        count = await self.livechat.store.read(lambda tx: count_pending(
            tx, org_id, tenant_id=query.tenant_id, user_group_id=query.user_group_id))
        return _head({"X-Total-Count": str(count)})

    async def tenant_metrics(self, org_id: str, tenant_id: str) -> TrioResponse:
        """``HEAD /organizations/{orgId}/tenants/{tenantId}/metrics``."""
        principal = self.caller()
        require_org(principal, org_id)
        tenant = self.tenant_for(principal, tenant_id, org_id)
        since = iso(utc_now() - timedelta(seconds=self.window))

        def read(tx: Tx) -> tuple[list[tuple[str, str]], int]:
            return accepted_waits(tx, tenant.id, since), count_pending(
                tx, org_id, tenant_id=tenant.id)

        waits, pending = await self.livechat.store.read(read)
        seconds = [max(0.0, (parse_iso(accepted) - parse_iso(queued)).total_seconds())
                   for queued, accepted in waits]
        average = sum(seconds) / len(seconds) if seconds else 0.0
        online = self.livechat.agents_online(org_id, tenant.default_user_group or None)
        return _head({"X-Average-Waiting-Time": f"{average:.3f}",
                      "X-Requests-Pending": str(pending), "X-Agents-Online": str(online)})

    async def livechat_state(self, sub_handle: str) -> TrioResponse:
        """``GET /subscribers/{subHandle}/livechat-state?tenantId=``."""
        tenant = self.tenant_for(self.caller(), read_query(TenantQuery).tenant_id)
        handle = path_id(sub_handle, "subHandle")
        latest = await self.livechat.store.read(lambda tx: find_latest(tx, tenant.id, handle))
        return json_response(await state_body(self.livechat, latest))

    async def availability(self, tenant_id: str) -> TrioResponse:
        """``GET /tenants/{tenantId}/availability[?userGroupId=]``."""
        tenant = self.tenant_for(self.caller(), tenant_id)
        group = read_query(GroupQuery).user_group_id or tenant.default_user_group or None
        online = self.livechat.agents_online(tenant.organization_id, group)
        hours = await self.hours_now(tenant.organization_id, group)
        return json_response(Availability(
            available=hours.open and online > 0, agents_online=online, user_group_id=group,
            business_hours=hours))


ENDPOINTS = (
    Endpoint("/requests", "POST", "create_request", "Create a livechat request", "bot",
             body=CreateRequestBody, responses={201: RequestCreated}, scopes=BOT_SCOPES,
             errors=(400, 401, 403, 404, 409, 413, 415, 422)),
    Endpoint("/requests/subscribers/<sub_handle>", "PATCH", "update_request",
             "Update or cancel the open request", "bot", body=UpdateRequestBody,
             query=TenantQuery, responses={200: LivechatState}, scopes=BOT_SCOPES,
             errors=(400, 401, 403, 404, 409, 413, 415)),
    Endpoint("/sessions/tenants/<tenant_id>/subscribers/<sub_handle>", "DELETE",
             "end_session", "End the session", "bot", responses={204: None},
             scopes=BOT_SCOPES),
    Endpoint("/messages", "POST", "post_message", "Forward a user message", "bot",
             body=MessageBody, responses={202: PostResult}, scopes=BOT_SCOPES,
             errors=(400, 401, 403, 404, 409, 413, 415)),
    Endpoint("/organizations/<org_id>/requests", "HEAD", "count_requests",
             "Count requests", "bot", query=CountQuery, responses={200: None},
             response_headers={"X-Total-Count": "number of matching requests"},
             scopes=BOT_SCOPES),
    Endpoint("/organizations/<org_id>/tenants/<tenant_id>/metrics", "HEAD",
             "tenant_metrics", "Waiting time and load of a tenant", "bot",
             responses={200: None},
             response_headers={"X-Average-Waiting-Time": "seconds, decimal",
                               "X-Requests-Pending": "pending requests",
                               "X-Agents-Online": "agents online"}, scopes=BOT_SCOPES),
    Endpoint("/subscribers/<sub_handle>/livechat-state", "GET", "livechat_state",
             "Livechat state of a subscriber", "bot", query=TenantQuery,
             responses={200: LivechatState}, scopes=BOT_SCOPES),
    Endpoint("/tenants/<tenant_id>/availability", "GET", "availability",
             "Whether humans are available", "bot", query=GroupQuery,
             responses={200: Availability}, scopes=BOT_SCOPES),
)


def bot_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the bot API, over ``deps.livechat`` and ``deps.verifier``."""
    window = deps.config.metrics.window_seconds if deps.config is not None \
        else DEFAULT_METRICS_WINDOW_SECONDS
    api = BotApi(require_livechat(deps), deps.verifier, metrics_window_seconds=window)
    blueprint = Blueprint("bot", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
