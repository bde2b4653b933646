"""End-to-end fixtures (the environment itself is in ``e2e_env``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_env import JWT_SECRET, ORG, WEBHOOK_SECRET, Env, livechat_config
from fakes.bot import open_fake_bot
from support.lcx_process import LcxProcess

from lcx.auth import mint_token


@pytest.fixture
def env_options() -> dict[str, Any]:
    """Overrides of ``livechat_config`` for one test module (``publisher``: send flow
    triggers to the fake bot too)."""
    return {}


@pytest.fixture
async def env(tmp_path: Path, env_options: dict[str, Any]) -> AsyncIterator[Env]:
    async with open_fake_bot(WEBHOOK_SECRET) as bot:
        options = dict(env_options)
        if options.pop("publisher", False):
            options["publisher_url"] = bot.base_url
        lcx = LcxProcess(tmp_path, livechat_config(tmp_path, bot.url, **options))
        await trio.to_thread.run_sync(lcx.start)
        bot_token = mint_token(JWT_SECRET, sub="bot-1", org=ORG, scopes="bot")
        try:
            async with httpx.AsyncClient(base_url=lcx.url, timeout=10, headers={
                    "Authorization": f"Bearer {bot_token}"}) as http:
                yield Env(lcx, bot, http)
        finally:
            await trio.to_thread.run_sync(lcx.kill)
