"""A bug in one tenant's poll never stops the other tenants' polls (nor the service)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import trio

from actors.livechat import Livechat
from adapters.edges import PollBatch, Session
from lcx.cluster.bus import Leadership
from lcx.config import TenantConfig
from services.tenant_pollers import TenantPollers


class _Poller:
    """A polling provider that either counts its polls or fails with a bug."""

    def __init__(self, name: str, *, broken: bool) -> None:
        self.name = name
        self.broken = broken
        self.polls = 0

    async def poll(self, tenant: TenantConfig, sessions: Mapping[str, Session]) -> PollBatch:
        self.polls += 1
        if self.broken:
            raise KeyError("a bug in this tenant's poll")
        return PollBatch()


class _Store:
    """Every tenant has one open conversation; writes succeed."""

    async def read(self, work: Callable[[Any], Any]) -> Any:
        return {"c1": {"conversationId": "x1"}}

    async def transaction(self, work: Callable[[Any], Any]) -> None:
        return None


class _Livechat:
    def __init__(self, providers: dict[str, _Poller]) -> None:
        self.tenants = {name: TenantConfig(id=name, organization_id="o1", provider=name)
                        for name in providers}
        self.providers = providers
        self.store = _Store()
        self.conversations = None


async def test_a_broken_tenant_backs_off_while_the_others_poll_on(autojump_clock: object
                                                                  ) -> None:
    """Tenant "bad" raises on every poll; tenant "good" is still polled every interval,
    the broken one backs off, and the service keeps running."""
    providers = {"good": _Poller("good", broken=False), "bad": _Poller("bad", broken=True)}
    service = TenantPollers(cast(Livechat, _Livechat(providers)),
                            lambda: Leadership(instance_id="i1", term=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await trio.sleep(60)
        service.request_stop()
    assert providers["good"].polls >= 60 / 5 - 1  # the default interval: 5 s
    assert 1 <= providers["bad"].polls < providers["good"].polls
    assert service.stats.failures == providers["bad"].polls
