"""The AEX-compatible hand-over (API.md section 11): ``POST /aex/initiate`` and
``POST /aex/message``, for chat windows written against the AEX socket-connection service.

``initiate`` finds the tenant by ``initiationParams.deploymentId`` (its ``[tenants.aex]``),
stores the return endpoint as the conversation's channel session and then creates the
conversation (``channel = "aex"``, queued for lcx's agents or opened at the tenant's
provider) and answers ``{"id": <conversation id>, "headers": {}}``. ``message`` posts the
user's text into the conversation, on whichever instance owns it: no instance affinity.
What the humans say goes back through :class:`adapters.aex.AexChannel`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from actors.livechat import Livechat
from actors.messages import CreateRequest, PostMessage
from adapters.aex import AexChannel, session_for
from lcx.api.auth import authenticate
from lcx.api.bodies import json_response, read_json
from lcx.api.common import MAX_TEXT_CHARS, Id, require_livechat
from lcx.api.deps import AppDeps
from lcx.api.spec import Endpoint, register
from lcx.auth import TokenVerifier, require_tenant
from lcx.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from lcx.ids import new_id
from lcx.livechat.conversation import new_request
from lcx.livechat.edges import SIDE_CHANNEL
from lcx.model import Author, Context, Subscriber, iso, utc_now
from lcx.store.conversations import load_conversation
from lcx.store.edges import save_session

SCOPES = ("bot", "service")


class RoutingTarget(msgspec.Struct, kw_only=True, rename="camel"):
    """Where the window asks the user to be routed (kept in the context)."""

    target_type: str | None = None
    target_address: str | None = None


class MemberInfo(msgspec.Struct, kw_only=True, rename="camel"):
    """Who the user is, as the window knows it."""

    display_name: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    email: str | None = None
    custom_fields: dict[str, Any] = {}


class InitiationParams(msgspec.Struct, kw_only=True, rename="camel"):
    """``initiationParams`` of an AEX ``initiate``."""

    deployment_id: Id
    organization_id: str | None = None
    routing_target: RoutingTarget | None = None
    member_info: MemberInfo = msgspec.field(default_factory=MemberInfo)


class ReturnEndpoints(msgspec.Struct, kw_only=True):
    """Where (and with which token) the humans' messages are POSTed."""

    url: Annotated[str, msgspec.Meta(pattern="^https?://[^/]+", max_length=2048)]
    token: str = ""


class InitiateBody(msgspec.Struct, kw_only=True):
    """``POST /aex/initiate``."""

    initiation_params: InitiationParams = msgspec.field(name="initiationParams")
    return_endpoints: ReturnEndpoints = msgspec.field(name="ReturnEndpoints")
    return_context: dict[str, Any] = msgspec.field(name="ReturnContext", default_factory=dict)
    hostname: str | None = None


class Initiated(msgspec.Struct, kw_only=True):
    """The answer to ``initiate``: the conversation id and the (empty) affinity headers."""

    id: str
    headers: dict[str, str] = {}


class MessageBody(msgspec.Struct, kw_only=True):
    """``POST /aex/message``."""

    id: Id
    msg: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]


class AexApi:
    """The route handlers (see the module docstring)."""

    def __init__(self, livechat: Livechat, verifier: TokenVerifier | None) -> None:
        self.livechat = livechat
        self.verifier = verifier

    def _channel(self) -> AexChannel:
        channel = self.livechat.channels.get("aex")
        if not isinstance(channel, AexChannel):
            raise NotFound("no tenant takes AEX hand-overs")
        return channel

    def _caller(self) -> Any:
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        return authenticate(request, self.verifier, *SCOPES)

    async def initiate(self) -> TrioResponse:
        """``POST /aex/initiate``."""
        principal = self._caller()
        body = await read_json(request, InitiateBody)
        params = body.initiation_params
        tenant = self._channel().tenant_of(params.deployment_id)
        if tenant is None:
            raise NotFound("no tenant has this AEX deployment",
                           details={"deploymentId": params.deployment_id})
        require_tenant(principal, tenant.id, tenant.organization_id)
        group = tenant.default_user_group
        if not group:
            raise InvalidRequest("the tenant has no default_user_group for AEX hand-overs")
        member = params.member_info
        name = member.display_name or " ".join(
            part for part in (member.first_name, member.last_name) if part) or None
        target = params.routing_target
        metadata: dict[str, Any] = {"aex": {
            "hostname": body.hostname, "routingTarget": None if target is None else
            msgspec.to_builtins(target), "customFields": member.custom_fields}}
        conversation = new_request(
            org_id=tenant.organization_id, tenant_id=tenant.id, sub_handle=f"aex:{new_id()}",
            user_group_id=group, provider=tenant.provider, channel="aex", now=utc_now(),
            subscriber=Subscriber(name=name, email=member.email),
            context=Context(metadata=metadata))
        session = session_for(body.return_endpoints.url, body.return_endpoints.token,
                              body.return_context)
        at = iso(utc_now())
        await self.livechat.store.transaction(lambda tx: save_session(
            tx, conversation.id, SIDE_CHANNEL, "aex", conversation.id, session, at))
        await self.livechat.conversations.ask(conversation.id,
                                              CreateRequest(conversation=conversation))
        return json_response(Initiated(id=conversation.id))

    async def message(self) -> TrioResponse:
        """``POST /aex/message``: ``true`` once stored."""
        principal = self._caller()
        body = await read_json(request, MessageBody)
        conversation = await self.livechat.store.read(
            lambda tx: load_conversation(tx, body.id))
        if conversation is None or conversation.channel != "aex":
            raise NotFound("no such AEX conversation", details={"id": body.id})
        require_tenant(principal, conversation.tenant_id, conversation.org_id)
        if not conversation.is_open:
            raise Conflict("the conversation has ended",
                           details={"id": body.id, "status": conversation.status})
        author = Author(type="subscriber", id=conversation.sub_handle,
                        name=conversation.subscriber.name)
        await self.livechat.conversations.ask(conversation.id, PostMessage(
            author=author, type="text", text=body.msg))
        return json_response(True)


ENDPOINTS = (
    Endpoint("/aex/initiate", "POST", "initiate", "Open an AEX-compatible hand-over", "aex",
             body=InitiateBody, responses={200: Initiated}, scopes=SCOPES,
             errors=(400, 401, 403, 404, 413, 415)),
    Endpoint("/aex/message", "POST", "message", "Forward a user message of an AEX hand-over",
             "aex", body=MessageBody, responses={200: bool}, scopes=SCOPES,
             errors=(400, 401, 403, 404, 409, 413, 415)),
)


def aex_blueprint(deps: AppDeps) -> Blueprint:
    """The blueprint of the AEX-compatible calls."""
    blueprint = Blueprint("aex", __name__)
    register(blueprint, AexApi(require_livechat(deps), deps.verifier), ENDPOINTS)
    return blueprint
