"""The one table of edges: adding a channel or a provider is one module and one line here.

Each entry builds the adapter from the shared outbound HTTP policy and the tenants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adapters.edges import Channel, Provider
from adapters.policy import EdgeHttp
from lcx.config import TenantConfig

Tenants = Mapping[str, TenantConfig]


def _genesys(http: EdgeHttp, tenants: Tenants) -> Provider:
    from adapters.genesys import GenesysProvider

    return GenesysProvider(http)


def _cisco(http: EdgeHttp, tenants: Tenants) -> Provider:
    from adapters.cisco import CiscoProvider

    return CiscoProvider(http)


def _zendesk(http: EdgeHttp, tenants: Tenants) -> Provider:
    from adapters.zendesk import ZendeskProvider

    return ZendeskProvider(tenants, http)


def _livechat(http: EdgeHttp, tenants: Tenants) -> Channel:
    from adapters.livechat import LiveChatChannel

    return LiveChatChannel(tenants, http)


def _messenger(http: EdgeHttp, tenants: Tenants) -> Channel:
    from adapters.messenger import MessengerChannel

    return MessengerChannel(tenants, http)


def _twilio(http: EdgeHttp, tenants: Tenants) -> Channel:
    from adapters.twilio import TwilioChannel

    return TwilioChannel(tenants, http)


def _x(http: EdgeHttp, tenants: Tenants) -> Channel:
    from adapters.x import XChannel

    return XChannel(tenants, http)


def _aex(http: EdgeHttp, tenants: Tenants) -> Channel:
    from adapters.aex import AexChannel

    return AexChannel(tenants, http)


PROVIDERS: dict[str, Callable[[EdgeHttp, Tenants], Provider]] = {
    "genesys": _genesys,
    "zendesk": _zendesk,
    "cisco": _cisco,
}
"""External providers by the name tenants and requests use (``helvia`` is lcx itself)."""

CHANNELS: dict[str, Callable[[EdgeHttp, Tenants], Channel]] = {
    "livechat": _livechat,
    "messenger": _messenger,
    "twilio": _twilio,
    "x": _x,
    "aex": _aex,
}
"""Channels by the name tenants use (``bot``, the bot API, is lcx itself)."""


def build_edges(http: EdgeHttp, tenants: Tenants) -> tuple[dict[str, Provider],
                                                          dict[str, Channel]]:
    """The providers and channels some tenant uses (or has a settings table for)."""
    def used(name: str, attribute: str) -> bool:
        return any(getattr(t, attribute) == name or getattr(t, name, None) is not None
                   for t in tenants.values())

    providers = {name: build(http, tenants) for name, build in PROVIDERS.items()
                 if used(name, "provider")}
    channels = {name: build(http, tenants) for name, build in CHANNELS.items()
                if used(name, "channel")}
    return providers, channels
