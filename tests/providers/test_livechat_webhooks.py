"""LiveChat webhooks: verification and parsing (pure), and the fake's emitter end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from fakes.livechat import (
    envelope,
    file_event,
    message_event,
    open_fake_livechat,
    rich_event,
    signature,
    system_event,
    tenant_for,
)
from quart import Response, request
from quart_trio import QuartTrio

from adapters.edges import EdgeEnded, EdgeMessage, EdgeTransferred, WebhookBatch
from adapters.livechat import LiveChatChannel
from adapters.policy import EdgeHttp
from lcx.api.http_server import serve_http
from lcx.config import TenantConfig
from lcx.errors import ApiError, InvalidRequest, Unauthorized
from lcx.model import AgentRef, Attachment

CUSTOMER = "b7eff798-f8df-4364-8059-649c35c9ed0c"
AGENT = "agent@example.com"
BOT = "5c9871d5372c824cbf22d860a707a578"


def channel(*tenants: TenantConfig) -> LiveChatChannel:
    """A channel over these tenants (default: one livechat tenant of ``org-1``)."""
    tenants = tenants or (tenant_for(),)
    return LiveChatChannel({t.id: t for t in tenants}, EdgeHttp(httpx.AsyncClient()))


def body(action: str, payload: dict[str, Any], *, secret: str = "whsec-1",
         org: str = "org-1") -> bytes:
    """A delivery body as LiveChat sends it."""
    return json.dumps(envelope(action, payload, secret_key=secret,
                               organization_id=org)).encode()


def incoming_event(event: dict[str, Any]) -> bytes:
    """An ``incoming_event`` body for chat ``CH1``."""
    return body("incoming_event", {"chat_id": "CH1", "thread_id": "TH1", "event": event})


def only_event(batch: WebhookBatch) -> Any:
    """The single item's event."""
    (item,) = batch.items
    return item.event


# --- verify -------------------------------------------------------------------------------


def test_verify_accepts_the_tenants_secret() -> None:
    """A delivery carrying the tenant's secret_key passes."""
    channel().verify({}, body("incoming_event", {}))


def test_verify_rejects_a_wrong_secret() -> None:
    """A wrong secret_key is Unauthorized."""
    with pytest.raises(Unauthorized):
        channel().verify({}, body("incoming_event", {}, secret="guess"))


def test_verify_rejects_an_unknown_organization() -> None:
    """An organization no livechat tenant serves is Unauthorized (its secret is unknown)."""
    with pytest.raises(Unauthorized):
        channel().verify({}, body("incoming_event", {}, org="org-9"))


def test_verify_ignores_tenants_of_other_channels() -> None:
    """A tenant with a livechat table but channel "bot" does not receive webhooks."""
    bot_tenant = TenantConfig(id="t-bot", organization_id="o1", channel="bot",
                              livechat=tenant_for().livechat)
    with pytest.raises(Unauthorized):
        channel(bot_tenant).verify({}, body("incoming_event", {}))


def test_verify_refuses_everything_without_a_configured_secret() -> None:
    """An empty webhook_secret_key accepts no delivery, not even an empty secret."""
    with pytest.raises(Unauthorized):
        channel(tenant_for(webhook_secret_key="")).verify({}, body("x", {}, secret=""))


@pytest.mark.parametrize("given", [None, "0" * 64, "sig-of-another-body"])
def test_verify_requires_a_valid_signature_when_configured(given: str | None) -> None:
    """With a signature_secret, a missing or wrong X-Signature is Unauthorized."""
    raw = body("incoming_event", {})
    headers = {} if given is None else {
        "X-Signature": signature(b"other", "sig") if given.startswith("sig") else given}
    with pytest.raises(Unauthorized):
        channel(tenant_for(signature_secret="sig")).verify(headers, raw)


def test_verify_accepts_a_valid_signature() -> None:
    """The hex HMAC-SHA256 of the raw body passes, whatever the header's case."""
    raw = body("incoming_event", {})
    channel(tenant_for(signature_secret="sig")).verify({"x-signature": signature(raw, "sig")},
                                                       raw)


def test_verify_rejects_a_body_that_is_not_json() -> None:
    """A non-JSON body is InvalidRequest (400), not Unauthorized."""
    with pytest.raises(InvalidRequest):
        channel().verify({}, b"<html>")


@pytest.mark.parametrize("raw", [b"[]", b'{"organization_id": 7}', b'{"secret_key": null}'])
def test_verify_rejects_json_that_is_no_envelope(raw: bytes) -> None:
    """JSON without a usable envelope cannot be authenticated: Unauthorized."""
    with pytest.raises(Unauthorized):
        channel().verify({}, raw)


# --- parse --------------------------------------------------------------------------------


def test_parse_incoming_chat_starts_and_carries_the_customers_initial_events() -> None:
    """incoming_chat gives "started" (customer facts) then only the customer's events."""
    users = [{"id": CUSTOMER, "type": "customer", "name": "Jane", "email": "j@x.io"},
             {"id": "c0ffee", "type": "agent", "name": "Other agent"}]
    events = [message_event("TH1_1", CUSTOMER, "hi"), message_event("TH1_2", "c0ffee", "yo"),
              system_event("TH1_3", "Chat started")]
    raw = body("incoming_chat", {"chat": {"id": "CH1", "users": users,
                                          "thread": {"id": "TH1", "events": events}}})
    started, first, system = channel().parse(raw).items
    assert (started.kind, started.event_id, started.external_id, started.tenant_id) == (
        "started", "chat:CH1:TH1", "CH1", "t-lc")
    assert started.customer == {"name": "Jane", "email": "j@x.io"}
    assert (first.kind, first.event_id) == ("event", "TH1_1")
    assert first.event == EdgeMessage(external_id="TH1_1", text="hi",
                                      author=AgentRef(id=CUSTOMER, name="Jane"))
    assert system.event.author is None


def test_parse_customer_message() -> None:
    """A customer's message is a text EdgeMessage keyed by the LiveChat event id."""
    (item,) = channel().parse(incoming_event(message_event("TH1_4", CUSTOMER, "hello"))).items
    assert (item.event_id, item.external_id, item.kind, item.tenant_id) == (
        "TH1_4", "CH1", "event", "t-lc")
    assert item.event == EdgeMessage(external_id="TH1_4", text="hello",
                                     author=AgentRef(id=CUSTOMER))


def test_parse_customer_file() -> None:
    """A customer's file is a file EdgeMessage with its attachment."""
    event = file_event("TH1_5", CUSTOMER, name="a.pdf", content_type="application/pdf",
                       size=42)
    message = only_event(channel().parse(incoming_event(event)))
    assert message.type == "file"
    assert message.attachments == (Attachment(url=event["url"], name="a.pdf",
                                              content_type="application/pdf", size=42),)


def test_parse_customer_rich_message() -> None:
    """A rich_message is a "rich" EdgeMessage whose payload is template and elements."""
    event = rich_event("TH1_6", CUSTOMER, template_id="cards")
    message = only_event(channel().parse(incoming_event(event)))
    assert message.type == "rich"
    assert message.payload == {"template_id": "cards", "elements": event["elements"]}


def test_parse_system_message_has_no_author() -> None:
    """A system_message becomes a text EdgeMessage without author (a system message)."""
    message = only_event(channel().parse(incoming_event(system_event("TH1_7", "Closed"))))
    assert (message.type, message.text, message.author) == ("text", "Closed", None)
    assert message.payload == {"system_message_type": "manual"}


@pytest.mark.parametrize("author", [AGENT, BOT, "acc-1", ""])
def test_parse_ignores_events_not_written_by_a_customer(author: str) -> None:
    """Agents' (e-mail ids), bots' (32-hex ids) and our own account's events are echoes."""
    assert channel().parse(incoming_event(message_event("TH1_8", author, "x"))).items == ()


def test_parse_ignores_agents_only_events() -> None:
    """An event with visibility "agents" is LiveChat-internal and gives no item."""
    event = message_event("TH1_9", CUSTOMER, "note", visibility="agents")
    assert channel().parse(incoming_event(event)).items == ()


def test_parse_rich_message_postback() -> None:
    """A postback is a "postback" EdgeMessage with id, toggled and the rich event's id."""
    raw = body("incoming_rich_message_postback", {
        "user_id": CUSTOMER, "chat_id": "CH1", "thread_id": "TH1", "event_id": "TH1_6",
        "postback": {"id": "action_yes", "toggled": True}})
    (item,) = channel().parse(raw).items
    assert item.event_id == "postback:CH1:TH1_6:action_yes:on"
    assert item.event.type == "postback"
    assert item.event.payload == {"id": "action_yes", "toggled": True, "event_id": "TH1_6"}


def test_parse_chat_deactivated() -> None:
    """chat_deactivated ends the conversation, once per thread."""
    raw = body("chat_deactivated", {"chat_id": "CH1", "thread_id": "TH1"})
    (item,) = channel().parse(raw).items
    assert item.event_id == "deactivated:CH1:TH1"
    assert isinstance(item.event, EdgeEnded)
    assert item.event.reason == "closed_by_router"


def test_parse_chat_transferred() -> None:
    """chat_transferred is recorded as EdgeTransferred; a re-delivery has the same id."""
    payload = {"chat_id": "CH1", "thread_id": "TH1", "requester_id": "jones@example.com",
               "reason": "manual", "transferred_to": {"group_ids": [19]}}
    first = channel().parse(body("chat_transferred", payload)).items[0]
    again = channel().parse(body("chat_transferred", dict(reversed(payload.items()))))
    assert isinstance(first.event, EdgeTransferred)
    assert first.event.to == {"group_ids": [19], "reason": "manual"}
    assert first.event_id.startswith("transferred:CH1:")
    assert again.items[0].event_id == first.event_id


def test_parse_unknown_action_gives_no_items() -> None:
    """Actions lcx does not handle give an empty batch."""
    assert channel().parse(body("thread_tagged", {"chat_id": "CH1"})).items == ()


@pytest.mark.parametrize("payload", [{"event": {"id": "e"}}, {"chat_id": 7, "event": {}}])
def test_parse_rejects_payloads_of_the_wrong_shape(payload: dict[str, Any]) -> None:
    """A payload missing required fields is InvalidRequest."""
    with pytest.raises(InvalidRequest):
        channel().parse(body("incoming_event", payload))


# --- the fake's emitter, end to end -------------------------------------------------------


@asynccontextmanager
async def open_receiver(lc: LiveChatChannel) -> AsyncIterator[tuple[str, list[WebhookBatch]]]:
    """A stand-in for lcx's /events/livechat route: verify, parse, record; its URL."""
    batches: list[WebhookBatch] = []
    app = QuartTrio("receiver")

    @app.post("/events/livechat")
    async def receive() -> Response:
        raw = await request.get_data(as_text=False)
        try:
            lc.verify(dict(request.headers), raw)
            batches.append(lc.parse(raw))
        except ApiError as exc:
            return Response(exc.code, status=exc.status)
        return Response("", status=200)

    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, app, host="127.0.0.1", port=0))
        yield f"{binding.url}/events/livechat", batches
        nursery.cancel_scope.cancel()


async def test_emitted_chat_and_message_are_parsed() -> None:
    """The fake's incoming_chat and incoming_event pass verify and parse as expected."""
    lc = channel()
    with trio.fail_after(10):
        async with open_receiver(lc) as (url, batches), open_fake_livechat(
                webhook_url=url) as fake:
            chat = await fake.start_chat(customer_name="Jane", text="hi")
            said = await fake.customer_says(chat.id, "still there?")
            await fake.agent_says(chat.id, "our echo")
    assert [d.statuses for d in fake.deliveries] == [[200], [200], [200]]
    started, first = batches[0].items
    assert (started.customer["name"], first.event.text) == ("Jane", "hi")
    assert batches[1].items[0].event_id == said
    assert batches[2].items == ()


async def test_wrong_secret_mode_is_refused() -> None:
    """In wrong-secret mode every delivery is answered 401 and nothing is parsed."""
    with trio.fail_after(10):
        async with open_receiver(channel()) as (url, batches), open_fake_livechat(
                webhook_url=url) as fake:
            fake.wrong_secret = True
            await fake.start_chat()
    assert fake.deliveries[0].statuses == [401]
    assert batches == []


async def test_signed_deliveries_pass_only_with_the_right_key() -> None:
    """X-Signature from the fake is accepted with the tenant's key and refused otherwise."""
    lc = channel(tenant_for(signature_secret="sig"))
    with trio.fail_after(10):
        async with open_receiver(lc) as (url, _), open_fake_livechat(webhook_url=url) as fake:
            fake.signature_secret = "sig"
            good = await fake.start_chat()
            fake.signature_secret = "other"
            await fake.customer_says(good.id, "x")
    assert [d.statuses for d in fake.deliveries] == [[200], [401]]


async def test_duplicate_delivery_parses_to_the_same_event_ids() -> None:
    """A webhook delivered twice gives the same event ids (so lcx stores it once)."""
    with trio.fail_after(10):
        async with open_receiver(channel()) as (url, batches), open_fake_livechat(
                webhook_url=url) as fake:
            chat = await fake.start_chat()
            fake.duplicate = True
            await fake.customer_sends_file(chat.id, name="a.png")
            await fake.deactivate(chat.id)
    ids = [[item.event_id for item in batch.items] for batch in batches[1:]]
    assert ids[0] == ids[1]
    assert ids[2] == ids[3] == [f"deactivated:{chat.id}:{chat.thread_id}"]
