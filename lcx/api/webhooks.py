"""Provider and channel webhooks (API.md section 7): ``POST``, ``GET`` and ``HEAD
/events/{alias}``.

``HEAD`` answers 200 for every configured edge (channel or provider, even one that never
pushes), 404 otherwise. ``GET`` is a channel's verification handshake (Messenger's
``hub.challenge``, X's ``crc_token``). On ``POST`` the signature (or shared secret) is
checked before anything else but the depth of a JSON body (some channels carry their
secret inside it), over the exact raw bytes: a bad one is 401 (403 where
the vendor expects it) and nothing is stored. A good delivery is parsed into events,
stored in the edge inbox (the edge's own event ids make repeats and duplicates
disappear) and only then answered 200; the inbox processor applies the events once, in
order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from adapters.edges import (
    HandshakeAnswer,
    Handshaker,
    InboundRequest,
    RequestVerifier,
    WebhookReceiver,
)
from lcx.api.bodies import json_response, refuse_deep_nesting, refuse_not_utf8
from lcx.api.spec import Endpoint, register
from lcx.errors import NotFound
from lcx.model import iso, utc_now
from lcx.store import Store, Tx
from lcx.store.edges import store_inbox


class WebhookAccepted(msgspec.Struct, kw_only=True):
    """The answer to a stored webhook delivery."""

    received: int
    """Events in the delivery."""
    stored: int
    """Events not seen before (the rest were repeats)."""


class WebhookRoutes:
    """Serves ``/events/{alias}`` for the configured channels."""

    def __init__(self, edges: Mapping[str, object], store: Callable[[], Store],
                 wake: Callable[[], None]) -> None:
        """``edges``: every configured channel and provider by name; those that are
        :class:`WebhookReceiver`\\ s receive on their ``alias``."""
        self._known = {str(getattr(edge, "alias", name)) for name, edge in edges.items()}
        self._by_alias = {edge.alias: edge for edge in edges.values()
                          if isinstance(edge, WebhookReceiver)}
        self._store = store
        self._wake = wake

    def _channel(self, alias: str) -> WebhookReceiver:
        channel = self._by_alias.get(alias)
        if channel is None:
            raise NotFound(f"no webhook endpoint {alias!r}")
        return channel

    async def health(self, alias: str) -> TrioResponse:
        """``HEAD /events/{alias}``: 200 for a configured edge, 404 otherwise."""
        if alias not in self._known:
            raise NotFound(f"no edge {alias!r}")
        return TrioResponse(b"", status=200)

    async def handshake(self, alias: str) -> TrioResponse:
        """``GET /events/{alias}``: the channel's verification handshake."""
        channel = self._channel(alias)
        if not isinstance(channel, Handshaker):
            raise NotFound(f"no handshake on {alias!r}")
        answer = channel.handshake(dict(request.args))
        return TrioResponse(answer.body, status=200, content_type=answer.content_type)

    async def receive(self, alias: str) -> TrioResponse:
        """``POST /events/{alias}``: verify, store, answer; processing happens after."""
        channel = self._channel(alias)
        body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        if request.mimetype.endswith("json"):
            refuse_not_utf8(body)  # before a channel's verifier or parser decodes it
            refuse_deep_nesting(body)  # before a channel's verifier or parser recurses into it
        headers = dict(request.headers)
        if isinstance(channel, RequestVerifier):
            channel.verify_request(InboundRequest(url=request.url, query=dict(request.args),
                                                  headers=headers, body=body))
        else:
            channel.verify(headers, body)
        batch = channel.parse(body)
        rows = [(item.event_id, item.tenant_id, item.external_id, msgspec.json.encode(item))
                for item in batch.items]
        now = iso(utc_now())

        def store(tx: Tx) -> int:
            return store_inbox(tx, alias, rows, now)

        stored = await self._store().transaction(store) if rows else 0
        if stored:
            self._wake()
        ack = getattr(channel, "webhook_ack", None)
        if isinstance(ack, HandshakeAnswer):  # the edge expects its own answer (TwiML)
            return TrioResponse(ack.body, status=200, content_type=ack.content_type)
        return json_response(WebhookAccepted(received=len(rows), stored=stored))


ENDPOINTS = (
    Endpoint("/events/<alias>", "POST", "receive", "Receive a provider or channel webhook",
             "webhooks", body=dict[str, Any], responses={200: WebhookAccepted},
             errors=(400, 401, 404, 413), operation_id="receiveWebhook"),
    Endpoint("/events/<alias>", "HEAD", "health", "Webhook endpoint health check",
             "webhooks", responses={200: None}, errors=(404,), operation_id="checkWebhook"),
    Endpoint("/events/<alias>", "GET", "handshake",
             "A channel's webhook verification handshake (hub.challenge, crc_token)",
             "webhooks", responses={200: str}, errors=(400, 403, 404),
             operation_id="webhookHandshake"),
)


def webhooks_blueprint(edges: Mapping[str, object], store: Callable[[], Store],
                       wake: Callable[[], None]) -> Blueprint:
    """The blueprint serving ``/events/{alias}`` for the configured edges."""
    blueprint = Blueprint("webhooks", __name__)
    register(blueprint, WebhookRoutes(edges, store, wake), ENDPOINTS)
    return blueprint
