"""The end-to-end environment: a real ``lcx serve`` process, a fake bot, tokens, clients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from fakes.bot import FakeBot
from support.lcx_process import LcxProcess, basic_config

from lcx.auth import mint_token

JWT_SECRET = "e2e-jwt-secret-with-more-than-32-bytes"
WEBHOOK_SECRET = "e2e-webhook-secret"
ORG = "o1"


FLOW_TOKEN = "e2e-flow-token"


def livechat_config(workdir: Path, bot_url: str, *, max_attempts: int = 8,
                    publisher_url: str = "", heartbeat_seconds: float = 30,
                    max_queued_frames: int = 1000) -> str:
    """An lcx config with tenants t1 (group g1) and t2 (org o2) delivering to ``bot_url``
    (and flow triggers of t1 to ``publisher_url`` when given)."""
    return basic_config(workdir, extra=f"""
[auth]
jwt_secret = "{JWT_SECRET}"

[delivery]
max_attempts = {max_attempts}
initial_backoff_ms = 50
max_backoff_ms = 400

[ws]
heartbeat_seconds = {heartbeat_seconds}
max_queued_frames = {max_queued_frames}

[[tenants]]
id = "t1"
organization_id = "{ORG}"
default_user_group = "g1"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"
event_publisher_url = "{publisher_url}"
event_publisher_token = "{FLOW_TOKEN}"

[[tenants]]
id = "t2"
organization_id = "o2"
default_user_group = "g1"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"
""")


@dataclass
class Env:
    """One running lcx with its fake bot; helpers speak the bot and management APIs."""

    lcx: LcxProcess
    bot: FakeBot
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.lcx.url

    def agent_token(self, sub: str, *, groups: tuple[str, ...] = ("g1",),
                    scope: str = "agent", org: str = ORG) -> str:
        return mint_token(JWT_SECRET, sub=sub, org=org, scopes=scope, groups=groups,
                          name=sub.capitalize())

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def create_request(self, sub_handle: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/requests", json={
            "tenantId": "t1", "subHandle": sub_handle, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def post_message(self, sub_handle: str, message_id: str, text: str
                           ) -> httpx.Response:
        return await self.http.post("/messages", json={
            "tenantId": "t1", "subHandle": sub_handle, "id": message_id, "type": "text",
            "text": text})

    async def put_settings(self, **settings: Any) -> None:
        token = self.agent_token("sue", scope="supervisor")
        response = await self.http.put(f"/organizations/{ORG}/livechat-settings",
                                       json=settings, headers=self.bearer(token))
        assert response.status_code == 200, response.text

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        token = self.agent_token("sue", scope="supervisor")
        response = await self.http.get(f"/organizations/{ORG}/livechat-messages",
                                       params={"conversationId": conversation_id},
                                       headers=self.bearer(token))
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def restart(self, *, kill: bool) -> None:
        """Stop lcx (SIGKILL or SIGTERM) and start it again on the same store."""
        if kill:
            await trio.to_thread.run_sync(self.lcx.kill)
        else:
            await trio.to_thread.run_sync(self.lcx.stop)
        await trio.to_thread.run_sync(self.lcx.start)
        self.http.base_url = httpx.URL(self.lcx.url)
