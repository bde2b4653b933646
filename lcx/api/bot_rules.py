"""The rules of the bot API's hot endpoints, apart from any web framework.

``POST /requests`` and ``POST /messages`` are served twice over: by the Quart blueprint
(:mod:`lcx.api.bot_api`) and by the lean ASGI routes in front of it
(:mod:`lcx.api.lean_routes`). Both read the request their own way and then call
:meth:`BotRules.request_created` / :meth:`BotRules.message_posted` here, so there is one
implementation of what the endpoints decide. A leaf of :mod:`lcx.api`: it imports no
blueprint and no web framework. The decisions where API.md is silent are in the notes of
:mod:`lcx.api.bot_api`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from actors.keys import queue_key
from actors.livechat import Livechat
from actors.messages import CreateRequest, GetState, Position, PostMessage, PostResult
from lcx.api.common import Attachments, Id, Text, repo_for
from lcx.auth import Principal, require_tenant
from lcx.business_hours import current_state
from lcx.config import Provider, TenantConfig
from lcx.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from lcx.livechat.conversation import new_request
from lcx.model import (
    Author,
    Context,
    Conversation,
    MessageType,
    Subscriber,
    iso,
    request_status,
    utc_now,
)
from lcx.store.conversations import find_open, find_open_brief, remembered

__all__ = [
    "BOT_SCOPES", "AgentBrief", "BotBody", "BotRules", "BusinessHoursState",
    "CreateRequestBody", "LivechatState", "MessageBody", "RequestCreated", "check_message",
    "check_provider", "conflict", "new_conversation", "state_body",
]

BOT_SCOPES = ("bot", "service")
"""The scopes that may call the bot API."""
OPEN_IDS_CACHED = 50_000
"""Subscribers whose open conversation ``POST /messages`` remembers; past this the memory
starts afresh (each entry is a few hundred bytes)."""
_SUBSCRIBER = Author(type="subscriber")


class BotBody(msgspec.Struct, rename="camel", kw_only=True):
    """Base of request bodies and queries: camelCase, unknown fields ignored."""


class CreateRequestBody(BotBody):
    """``POST /requests``."""

    tenant_id: Id
    sub_handle: Id
    user_group_id: Id | None = None
    provider: Provider | None = None
    subscriber: Subscriber = msgspec.field(default_factory=Subscriber)
    context: Context = msgspec.field(default_factory=Context)


class MessageBody(BotBody):
    """``POST /messages``."""

    tenant_id: Id
    sub_handle: Id
    id: Id | None = None
    type: MessageType = "text"
    text: Text | None = None
    payload: Any = None
    attachments: Attachments = []
    sent_at: str | None = None


class RequestCreated(BotBody):
    """201 of ``POST /requests``."""

    id: str
    status: str
    position: int | None
    estimated_wait_seconds: int | None
    conversation_id: str | None
    provider: str
    user_group_id: str


class AgentBrief(BotBody):
    """An agent as the bot sees it."""

    id: str
    name: str | None = None


class LivechatState(BotBody):
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


class BusinessHoursState(BotBody):
    """Whether a user group's business hours are open now."""

    open: bool
    timezone: str | None = None
    next_change_at: str | None = None
    user_group_id: str | None = None
    configured: bool = False


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


def check_message(body: MessageBody) -> None:
    missing = {"text": body.type == "text" and not body.text,
               "attachments": body.type == "file" and not body.attachments,
               "payload": body.type in ("rich", "postback") and body.payload is None}
    fields = [name for name, bad in missing.items() if bad]
    if fields:
        raise InvalidRequest(f"a {body.type} message needs {fields[0]}",
                             details={"fields": fields})


def check_provider(tenant: TenantConfig, provider: str) -> None:
    if provider == "helvia" or provider == tenant.provider:
        return
    if getattr(tenant, provider, None) is None:
        raise Unprocessable(f"tenant {tenant.id!r} has no settings for provider {provider!r}",
                            details={"reason": "provider_not_configured",
                                     "provider": provider})


def new_conversation(tenant: TenantConfig, body: CreateRequestBody, group: str,
                      provider: str) -> Conversation:
    """A pending request for the bot's subscriber."""
    return new_request(org_id=tenant.organization_id, tenant_id=tenant.id,
                       sub_handle=body.sub_handle, user_group_id=group, provider=provider,
                       channel=tenant.channel, now=utc_now(), subscriber=body.subscriber,
                       context=body.context)


def conflict(existing: Conversation) -> Conflict:
    return Conflict("the subscriber already has an open request or conversation",
                    details={"requestId": existing.request_id,
                             "conversationId": existing.id if existing.accepted_at else None,
                             "status": existing.status})


class BotRules:
    """What the bot endpoints decide, over one livechat: tenants, open conversations,
    refusals, and the two hot operations. Callers have authenticated the principal."""

    def __init__(self, livechat: Livechat) -> None:
        self.livechat = livechat
        self.business_hours = repo_for(livechat)
        self._open_ids: dict[tuple[str, str], str] = {}
        """(tenant, subscriber handle) -> the id of the subscriber's open conversation,
        as last looked up (see :meth:`message_posted`)."""

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

    async def request_created(self, principal: Principal,
                              body: CreateRequestBody) -> RequestCreated:
        """``POST /requests`` once the body is decoded: the 201 body of the new request."""
        tenant = self.tenant_for(principal, body.tenant_id)
        group = body.user_group_id or tenant.default_user_group
        if not group:
            raise InvalidRequest("userGroupId is required: the tenant has no default group",
                                 details={"fields": ["userGroupId"]})
        provider = body.provider or tenant.provider
        check_provider(tenant, provider)
        existing = await self.open_of(tenant.id, body.sub_handle)
        if existing is not None:
            raise conflict(existing)
        await self.refuse_when_unavailable(tenant.organization_id, group)
        created = await self._create(new_conversation(tenant, body, group, provider))
        latest = created
        state = await state_body(self.livechat, latest)
        if state.position is None:  # auto routing may have given it to an agent already
            latest = await self.livechat.conversations.ask(created.id, GetState())
            state = await state_body(self.livechat, latest)
        return RequestCreated(
            id=created.request_id, status=request_status(latest.status),
            position=state.position, estimated_wait_seconds=state.estimated_wait_seconds,
            conversation_id=state.conversation_id, provider=created.provider,
            user_group_id=group)

    async def _create(self, conversation: Conversation) -> Conversation:
        try:
            created: Conversation = await self.livechat.conversations.ask(
                conversation.id, CreateRequest(conversation=conversation))
        except Conflict as exc:  # another request of the subscriber won the race
            winner = await self.open_of(conversation.tenant_id, conversation.sub_handle)
            raise (exc if winner is None else conflict(winner)) from None
        return created

    async def message_posted(self, principal: Principal, body: MessageBody) -> PostResult:
        """``POST /messages`` once the body is decoded: the 202 body, idempotent on
        (tenant, ``id``), even after the end.

        The subscriber's open conversation is remembered here once looked up (at most
        one is open per subscriber, and it stays theirs): later messages go straight to
        its actor, which signs them with the subscriber as it holds them. When that
        conversation has ended (the actor refuses: NotFound) it is looked up again in
        the store, as the first message was.
        """
        tenant = self.tenant_for(principal, body.tenant_id)
        check_message(body)
        scope = f"bot:{tenant.id}"
        tenant_id, sub_handle = tenant.id, body.sub_handle
        key = (tenant_id, sub_handle)
        known = self._open_ids.get(key)
        if known is not None:
            try:
                return await self._post(known, body, scope)
            except NotFound:
                self._open_ids.pop(key, None)  # ended: the store says what is open now
        existing = await self.livechat.store.read(
            lambda tx: find_open_brief(tx, tenant_id, sub_handle))
        if existing is None and body.id is not None:
            # a resend after the end; a resend to an open conversation is answered by it
            client_id = body.id
            earlier = await self.livechat.store.read(
                lambda tx: remembered(tx, scope, client_id))
            if earlier is not None:
                return msgspec.json.decode(earlier, type=PostResult)
        if existing is None:
            raise NotFound("the subscriber has no open request or conversation", details={
                "tenantId": tenant.id, "subHandle": body.sub_handle})
        conversation_id, _ = existing
        result = await self._post(conversation_id, body, scope)
        if len(self._open_ids) >= OPEN_IDS_CACHED:
            self._open_ids.clear()
        self._open_ids[key] = conversation_id
        return result

    async def _post(self, conversation_id: str, body: MessageBody, scope: str) -> PostResult:
        result: PostResult = await self.livechat.conversations.ask(conversation_id, PostMessage(
            author=_SUBSCRIBER, as_subscriber=True, type=body.type, text=body.text,
            payload=body.payload, attachments=tuple(body.attachments), client_id=body.id,
            idempotency_scope=scope if body.id is not None else None))
        return result
