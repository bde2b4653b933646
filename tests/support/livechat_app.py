"""A whole lcx instance in-process (store, actors, HTTP on loopback), for API tests.

:func:`livechat_app` runs the composition root itself (:class:`lcx.instance.Lcx`) with a SQLite
file in ``tmp_path``, port 0 and a known JWT secret, and yields a :class:`LivechatApp`:
an httpx client for it, a :class:`Tokens` minter and the livechat hub. Agents can be put
online without a websocket through :func:`connect_agent` (a recording sink stands in for
the socket) and take requests with :func:`accept`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import trio

from actors.keys import agent_key, queue_key
from actors.livechat import Livechat
from actors.messages import Accepted, AcceptRequest, Connect
from lcx.auth import mint_token
from lcx.config import (
    AttachmentsConfig,
    AuthConfig,
    ServerConfig,
    Settings,
    StoreConfig,
    TenantConfig,
)
from lcx.instance import Lcx
from lcx.model import AgentRef
from lcx.org_settings import LivechatSettings

SECRET = "livechat-test-secret-0123456789abcdef0123"

DEFAULT_TENANTS = (
    TenantConfig(id="t1", organization_id="o1", default_user_group="g1"),
    TenantConfig(id="t2", organization_id="o1"),
    TenantConfig(id="t9", organization_id="o2", default_user_group="g9"),
)
"""t1 and t2 in o1 (t2 without a default group), t9 in o2."""


@dataclass(frozen=True)
class Tokens:
    """Mints tokens signed with the app's secret; each ``*_headers`` is an auth header."""

    secret: str = SECRET

    def token(self, *, sub: str = "bot-1", org: str | None = "o1",
              scopes: str = "bot", **claims: Any) -> str:
        """A token with these claims (see :func:`lcx.auth.mint_token`)."""
        return mint_token(self.secret, sub=sub, org=org, scopes=scopes, **claims)

    def headers(self, **claims: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` of :meth:`token`."""
        return {"Authorization": f"Bearer {self.token(**claims)}"}

    def bot(self, org: str = "o1", **claims: Any) -> dict[str, str]:
        """A ``bot`` token of ``org``."""
        return self.headers(sub=claims.pop("sub", "bot-1"), org=org, scopes="bot", **claims)

    def agent(self, sub: str = "alice", org: str = "o1", **claims: Any) -> dict[str, str]:
        """An ``agent`` token of ``org`` serving ``g1`` unless ``groups`` says otherwise."""
        claims.setdefault("groups", ["g1"])
        return self.headers(sub=sub, org=org, scopes="agent", **claims)

    def supervisor(self, sub: str = "sam", org: str = "o1", **claims: Any) -> dict[str, str]:
        """A ``supervisor`` token of ``org``."""
        return self.headers(sub=sub, org=org, scopes="supervisor", **claims)

    def service(self, sub: str = "crm", org: str = "o1", **claims: Any) -> dict[str, str]:
        """A ``service`` token of ``org``."""
        return self.headers(sub=sub, org=org, scopes="service", **claims)

    def admin(self, sub: str = "root", **claims: Any) -> dict[str, str]:
        """An ``admin`` token (no organization)."""
        return self.headers(sub=sub, org=None, scopes="admin", **claims)


class LivechatApp(NamedTuple):
    """What :func:`livechat_app` yields (unpacks as ``client, tokens, hub``)."""

    client: httpx.AsyncClient
    tokens: Tokens
    hub: Livechat


@dataclass
class RecordingSink:
    """Stands in for an agent's websocket: keeps every frame the session sends."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    cut_reason: str | None = None

    def offer(self, frame: bytes) -> bool:
        """Keep the frame (never too far behind)."""
        self.frames.append(msgspec.json.decode(frame))
        return True

    def cut(self, reason: str) -> None:
        """Note that the session gave up on this socket."""
        self.cut_reason = reason


async def connect_agent(hub: Livechat, agent_id: str, *, org: str = "o1",
                        groups: Iterable[str] = ("g1",), name: str | None = None
                        ) -> RecordingSink:
    """Bring an agent online in ``groups`` as a websocket would, and return its sink."""
    sink = RecordingSink()
    await hub.agents.ask(agent_key(org, agent_id), Connect(
        socket_id=f"test-{agent_id}", sink=sink, name=name, groups=tuple(groups)))
    return sink


async def accept(hub: Livechat, conversation_id: str, agent_id: str, *, org: str = "o1",
                 group: str = "g1", name: str | None = None) -> Accepted:
    """Have a connected agent accept a pending request, as ``REQUEST_ACCEPT`` does."""
    answer: Accepted = await hub.queues.ask(queue_key(org, group), AcceptRequest(
        conversation_id=conversation_id, agent=AgentRef(id=agent_id, name=name)))
    return answer


def instance_settings(tmp_path: Path, tenants: Iterable[TenantConfig], *,
                  max_body_bytes: int,
                  attachments_config: AttachmentsConfig | None = None) -> Settings:
    """Settings of a single instance on 127.0.0.1:0 with its SQLite file in ``tmp_path``.

    With ``LCX_TEST_STORE=postgres`` the store is a fresh PostgreSQL schema instead (see
    :mod:`support.postgres`; skips without a server). Attachments default to the local
    backend in ``tmp_path / "attachments"``.
    """
    import os  # local: the store switch below is this function's only concern

    store_url = f"sqlite:///{tmp_path / 'lcx.db'}"
    if os.environ.get("LCX_TEST_STORE") == "postgres":
        from support.postgres import scratch_url

        store_url = scratch_url()
    return Settings(
        server=ServerConfig(host="127.0.0.1", port=0, max_body_bytes=max_body_bytes,
                            shutdown_timeout_seconds=2.0),
        store=StoreConfig(url=store_url),
        auth=AuthConfig(jwt_secret=SECRET), tenants=tuple(tenants),
        attachments=attachments_config or AttachmentsConfig(dir=str(tmp_path / "attachments")))


@asynccontextmanager
async def livechat_app(tmp_path: Path, *, tenants: Iterable[TenantConfig] = DEFAULT_TENANTS,
                       settings_overrides: Mapping[str, Mapping[str, Any]] | None = None,
                       max_body_bytes: int = 1_048_576,
                       attachments_config: AttachmentsConfig | None = None
                       ) -> AsyncIterator[LivechatApp]:
    """Run a whole lcx instance on loopback; yield its client, token minter and hub.

    ``settings_overrides`` maps organization ids to ``livechat-settings`` fields
    (camelCase) stored before the first request. The instance is stopped gracefully on
    exit; everything runs under a 20-second deadline. ``attachments_config`` replaces the
    default local attachment store in ``tmp_path / "attachments"``.
    """
    lcx = Lcx(instance_settings(tmp_path, tenants, max_body_bytes=max_body_bytes,
                                attachments_config=attachments_config))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(lcx.run)
            for org, fields in (settings_overrides or {}).items():
                await lcx.livechat.org_settings.put(
                    org, msgspec.convert(dict(fields), LivechatSettings))
            assert lcx.http.binding is not None
            async with httpx.AsyncClient(base_url=lcx.http.binding.url) as client:
                yield LivechatApp(client, Tokens(), lcx.livechat)
            lcx.request_stop()
