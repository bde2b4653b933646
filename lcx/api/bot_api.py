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
from typing import TYPE_CHECKING, Literal

from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from actors.livechat import Livechat
from actors.messages import End, PostResult, UpdateRequest
from lcx.api.auth import authenticate
from lcx.api.bodies import json_response, read_json
from lcx.api.bot_rules import (
    BOT_SCOPES,
    BotBody,
    BotRules,
    BusinessHoursState,
    CreateRequestBody,
    LivechatState,
    MessageBody,
    RequestCreated,
    state_body,
)
from lcx.api.common import Id, path_id, read_query, require_livechat
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org
from lcx.errors import Conflict, NotFound, Unauthorized
from lcx.model import Context, Conversation, Subscriber, iso, parse_iso, utc_now
from lcx.store import Tx
from lcx.store.conversations import accepted_waits, count_pending, find_latest

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps

__all__ = ["BOT_SCOPES", "BotApi", "bot_blueprint", "state_body"]

DEFAULT_METRICS_WINDOW_SECONDS = 3600


class UpdateRequestBody(BotBody):
    """``PATCH /requests/subscribers/{subHandle}``."""

    subscriber: Subscriber | None = None
    context: Context | None = None
    user_group_id: Id | None = None
    status: Literal["cancelled"] | None = None


class TenantQuery(BotBody):
    """``?tenantId=`` (required)."""

    tenant_id: Id


class GroupQuery(BotBody):
    """``?userGroupId=`` (optional)."""

    user_group_id: Id | None = None


class CountQuery(BotBody):
    """``HEAD /organizations/{orgId}/requests`` query."""

    status: Literal["pending"] = "pending"
    tenant_id: Id | None = None
    user_group_id: Id | None = None


class Availability(BotBody):
    """``GET /tenants/{tenantId}/availability``."""

    available: bool
    agents_online: int
    business_hours: BusinessHoursState
    user_group_id: str | None = None


def _head(headers: Mapping[str, str]) -> TrioResponse:
    """An answer to ``HEAD`` whose news is all in ``headers`` (no body, no content type)."""
    response = TrioResponse(b"", status=200, headers=dict(headers))
    del response.headers["Content-Type"]
    return response


class BotApi(BotRules):
    """The route handlers of the bot API, over one livechat; see the module docstring."""

    def __init__(self, livechat: Livechat, verifier: TokenVerifier | None, *,
                 metrics_window_seconds: int = DEFAULT_METRICS_WINDOW_SECONDS) -> None:
        super().__init__(livechat)
        self.verifier = verifier
        self.window = metrics_window_seconds

    def caller(self) -> Principal:
        """The request's principal, which must hold ``bot`` or ``service`` (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        return authenticate(request, self.verifier, *BOT_SCOPES)

    # --- routes --------------------------------------------------------------------------

    async def create_request(self) -> TrioResponse:
        """``POST /requests`` (also served by the lean routes, with the same rules)."""
        principal = self.caller()
        body = await read_json(request, CreateRequestBody)
        return json_response(await self.request_created(principal, body), 201)

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
        """``POST /messages`` (also served by the lean routes, with the same rules)."""
        principal = self.caller()
        body = await read_json(request, MessageBody)
        return json_response(await self.message_posted(principal, body), 202)

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
