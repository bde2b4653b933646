"""An instance cut off from the cluster does not wake every conversation and queue as if
it owned them all: its ownership sweep stays idle for ``cluster.isolated_grace_ms``, then
it serves alone; back in the cluster it rebuilds its actors from the store."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from actors.livechat import Livechat
from lcx.cluster.bus import MemberInfo, MembershipHandler
from lcx.config import load_settings
from lcx.errors import ConfigError
from services.ownership import OwnershipService

ME = "a"


class FakeBus:
    """A bus whose member view the test sets."""

    instance_id = ME

    def __init__(self) -> None:
        self.view: dict[str, MemberInfo] = {ME: MemberInfo(ME, "")}
        self.handlers: list[MembershipHandler] = []

    def members(self) -> Mapping[str, MemberInfo]:
        return dict(self.view)

    def on_membership(self, handler: MembershipHandler) -> None:
        self.handlers.append(handler)

    def tell(self, view: dict[str, MemberInfo]) -> None:
        self.view = view
        for handler in self.handlers:
            handler(dict(view))


class FakeRouter:
    """Owns every key (as placement answers with an empty view); records posts."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, Any]] = []
        self.local = SimpleNamespace(stop_actor=lambda key: False)

    def owner(self, key: str) -> str:
        return ME

    def get(self, key: str) -> None:
        return None

    def post(self, key: str, message: Any) -> None:
        self.posted.append((key, message))

    def live_keys(self) -> list[str]:
        return []


def livechat_of(bus: FakeBus) -> tuple[Any, FakeRouter, FakeRouter]:
    # a provider's conversation: a sweep that wakes it posts Recover (a native one would
    # only get its deadline armed)
    row = SimpleNamespace(id="c1", provider="genesys", org_id="o1",
                          user_group_id="g1", status="pending")

    async def read(query: Any) -> list[Any]:
        return [row]

    conversations, queues = FakeRouter(), FakeRouter()
    livechat = SimpleNamespace(
        bus=bus, store=SimpleNamespace(read=read), conversations=conversations,
        queues=queues, links=FakeRouter(), timers=SimpleNamespace(armed=lambda key: False))
    livechat.routers = {"conversation": conversations, "queue": queues,
                        "provider_link": livechat.links}
    return livechat, conversations, queues


async def test_an_isolated_instance_sweeps_nothing_until_the_grace_ends() -> None:
    """Empty view: no Recover, no Resync within the grace; after it, the lone instance
    wakes what it now owns."""
    clock = [0.0]
    bus = FakeBus()
    livechat, conversations, queues = livechat_of(bus)
    service = OwnershipService(cast(Livechat, livechat), isolated_grace_seconds=30.0,
                               clock=lambda: clock[0])
    bus.tell({})  # cut off: the view emptied
    clock[0] = 29.0
    await service.sweep()
    assert (conversations.posted, queues.posted) == ([], [])
    assert service.idle_sweeps == 1
    clock[0] = 30.5
    await service.sweep()
    assert [key for key, _ in conversations.posted] == ["c1"]
    assert [key for key, _ in queues.posted] == ["o1/g1"]


async def test_seeing_the_cluster_again_ends_the_idle_sweeps() -> None:
    """Back within the grace: the next sweep runs (and rebuilds from the store)."""
    clock = [0.0]
    bus = FakeBus()
    livechat, conversations, _ = livechat_of(bus)
    service = OwnershipService(cast(Livechat, livechat), isolated_grace_seconds=30.0,
                               clock=lambda: clock[0])
    bus.tell({})
    await service.sweep()
    assert conversations.posted == []
    bus.tell({ME: MemberInfo(ME, ""), "b": MemberInfo("b", "")})
    clock[0] = 1.0
    await service.sweep()
    assert [key for key, _ in conversations.posted] == ["c1"]


@pytest.mark.parametrize(("grace", "ok"), [(30000, True), (5000, True), (4999, False)])
def test_the_grace_is_at_least_a_lease(tmp_path: Path, grace: int, ok: bool) -> None:
    """``cluster.isolated_grace_ms`` below ``cluster.lease_ms`` is refused."""
    path = tmp_path / "lcx.toml"
    path.write_text(f"[cluster]\nlease_ms = 5000\nisolated_grace_ms = {grace}\n")
    if ok:
        assert load_settings(path, environ={}).cluster.isolated_grace_ms == grace
    else:
        with pytest.raises(ConfigError, match=r"cluster\.isolated_grace_ms: must be at least"):
            load_settings(path, environ={})
