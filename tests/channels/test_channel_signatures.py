"""The channels' signature and handshake rules, on exact bytes and vendor test vectors:
Twilio (URL + sorted fields, with and without the default port, the configured public
URL), Messenger (hex HMAC-SHA256) and the spam guard's window."""

from __future__ import annotations

import httpx
import pytest
from fakes.twilio import sign as twilio_sign

from adapters.edges import InboundRequest
from adapters.messenger import MessengerChannel
from adapters.messenger import signature as messenger_signature
from adapters.policy import EdgeHttp
from adapters.spam import SpamGuard
from adapters.twilio import TwilioChannel, signature, url_variants
from lcx.config import MessengerConfig, TenantConfig, TwilioConfig
from lcx.errors import Forbidden, Unauthorized

SID = "AC" + "2" * 32
FIELDS = [("MessageSid", "SM1"), ("AccountSid", SID), ("From", "+14155550100"),
          ("To", "+15005550006"), ("Body", "hi & bye")]


def form(fields: list[tuple[str, str]]) -> bytes:
    return httpx.QueryParams(fields).__str__().encode()


def twilio(webhook_url: str = "") -> TwilioChannel:
    tenant = TenantConfig(id="s1", organization_id="o1", channel="twilio",
                          twilio=TwilioConfig(account_sid=SID, auth_token="tok",
                                              from_number="+15005550006",
                                              webhook_url=webhook_url))
    return TwilioChannel({"s1": tenant}, EdgeHttp(httpx.AsyncClient()))


def test_twilio_documented_vector() -> None:
    """Twilio's documented example: token 12345 and its URL and fields."""
    fields = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"),
              ("Digits", "1234"), ("From", "+12349013030"), ("To", "+18005551212")]
    assert signature("https://mycompany.com/myapp.php?foo=1&bar=2", fields,
                     "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_url_variants_with_and_without_the_default_port() -> None:
    assert url_variants("https://lcx.example.com/events/twilio") == [
        "https://lcx.example.com/events/twilio", "https://lcx.example.com:443/events/twilio"]
    assert url_variants("https://lcx.example.com:443/events/twilio?x=1") == [
        "https://lcx.example.com:443/events/twilio?x=1",
        "https://lcx.example.com/events/twilio?x=1"]
    assert url_variants("http://127.0.0.1:8080/e") == ["http://127.0.0.1:8080/e"]


@pytest.mark.parametrize("signed_url", ["https://lcx.example.com/events/twilio",
                                        "https://lcx.example.com:443/events/twilio"])
def test_twilio_public_url_is_checked_with_and_without_its_port(signed_url: str) -> None:
    """Behind a TLS proxy lcx sees http://internal...; the configured public URL is what
    Twilio signed, with or without :443."""
    channel = twilio("https://lcx.example.com/events/twilio")
    body = form(FIELDS)
    channel.verify_request(InboundRequest(
        url="http://10.0.0.5:8080/events/twilio", body=body,
        headers={"X-Twilio-Signature": twilio_sign(signed_url, FIELDS, "tok")}))


def test_twilio_refuses_altered_fields_wrong_url_and_unknown_numbers() -> None:
    channel = twilio()
    url = "http://127.0.0.1:8080/events/twilio"
    good = twilio_sign(url, FIELDS, "tok")
    channel.verify_request(InboundRequest(url=url, body=form(FIELDS),
                                          headers={"X-Twilio-Signature": good}))
    altered = [(k, "hi" if k == "Body" else v) for k, v in FIELDS]
    stranger = [(k, "+19999999999" if k == "To" else v) for k, v in FIELDS]
    for url_seen, body in ((url, form(altered)), (url + "?x=1", form(FIELDS)),
                           (url, form(stranger))):
        with pytest.raises(Forbidden):
            channel.verify_request(InboundRequest(url=url_seen, body=body,
                                                  headers={"X-Twilio-Signature": good}))
    with pytest.raises(Forbidden):
        channel.verify_request(InboundRequest(url=url, body=form(FIELDS)))


def test_twilio_status_callbacks_and_our_own_number_give_nothing() -> None:
    channel = twilio()
    status = [("MessageSid", "SM9"), ("AccountSid", SID), ("From", "+15005550006"),
              ("To", "+14155550100"), ("MessageStatus", "delivered")]
    assert channel.parse(form(status)).items == ()
    (started, message) = channel.parse(form(FIELDS)).items
    assert (started.kind, message.kind, message.event_id) == ("started", "event", "SM1")


def test_messenger_vectors_and_refusals() -> None:
    """Meta's hex HMAC-SHA256 over the exact bytes; a re-serialised body fails."""
    assert messenger_signature(b'{"object":"page","entry":[]}', "appsecret") == (
        "sha256=0e9e0080a310f376450c46d999aa4d49ed772bfe43c13205f38a3a6e6611ed2b")
    tenant = TenantConfig(id="m1", organization_id="o1", channel="messenger",
                          messenger=MessengerConfig(page_id="p1", app_secret="s",
                                                    verify_token="v"))
    channel = MessengerChannel({"m1": tenant}, EdgeHttp(httpx.AsyncClient()))
    body = b'{"object": "page", "entry": [{"id": "p1", "messaging": []}]}'
    channel.verify({"X-Hub-Signature-256": messenger_signature(body, "s")}, body)
    with pytest.raises(Unauthorized):
        channel.verify({"X-Hub-Signature-256": messenger_signature(body, "s")},
                       body.replace(b": ", b":"))
    with pytest.raises(Forbidden):
        channel.handshake({"hub.mode": "subscribe", "hub.challenge": "1",
                           "hub.verify_token": "x"})


def test_spam_guard_counts_per_sender_and_window() -> None:
    now = [0.0]
    guard = SpamGuard(window=60.0, clock=lambda: now[0])
    assert [guard.admit("acct", "a", 2) for _ in range(3)] == [True, True, False]
    assert guard.admit("acct", "b", 2)
    assert guard.dropped == {"acct": 1}
    now[0] = 60.0
    assert guard.admit("acct", "a", 2)
