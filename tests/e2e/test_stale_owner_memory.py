"""A conversation's actor may hold a state that another owner has moved on since (two
owners for a moment while membership changes: a member suspected dead that was not, a
paused or cut-off one). It may answer from memory, but it never refuses from memory: a
refusal is checked against the store first.

Two owners are made for sure here by two standalone instances on one PostgreSQL store
(each owns every conversation): a request is created through one and accepted through
the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_env import JWT_SECRET, ORG, WEBHOOK_SECRET, livechat_config
from fakes.bot import open_fake_bot
from support.agent_client import agent_connection
from support.lcx_process import LcxProcess
from support.postgres import scratch_schema

from lcx.auth import mint_token

pytestmark = pytest.mark.slow

ALICE = mint_token(JWT_SECRET, sub="alice", org=ORG, scopes="agent", groups=["g1"],
                   name="Alice")
BOT = {"Authorization": f"Bearer {mint_token(JWT_SECRET, sub='bot-1', org=ORG, scopes='bot')}"}


def _on_store(config: str, workdir: Path, store_url: str) -> str:
    return config.replace(f'url = "sqlite:///{workdir}/lcx.db"', f'url = "{store_url}"')


@pytest.fixture
async def owners(tmp_path: Path) -> AsyncIterator[tuple[LcxProcess, LcxProcess]]:
    """Two standalone instances (``first``, ``second``) sharing one PostgreSQL store."""
    with scratch_schema() as store_url:
        async with open_fake_bot(WEBHOOK_SECRET) as bot:
            processes = []
            try:
                for name in ("first", "second"):
                    workdir = tmp_path / name
                    workdir.mkdir()
                    config = _on_store(livechat_config(workdir, bot.url), workdir, store_url)
                    assert store_url in config
                    process = LcxProcess(workdir, config, name=name)
                    processes.append(process)
                    await trio.to_thread.run_sync(process.start)
                yield processes[0], processes[1]
            finally:
                for process in processes:
                    await trio.to_thread.run_sync(process.kill)


async def accepted_behind_first(first: LcxProcess, second: LcxProcess,
                                sub_handle: str) -> str:
    """A request created through ``first`` (its actor there holds it pending), accepted
    by Alice through ``second``; the conversation id."""
    async with httpx.AsyncClient(timeout=10, headers=BOT) as http:
        response = await http.post(f"{first.url}/requests",
                                   json={"tenantId": "t1", "subHandle": sub_handle})
        assert response.status_code == 201, response.text
        request_id = response.json()["id"]
    async with agent_connection(second.url, ALICE) as agent:
        ack = await agent.call("REQUEST_ACCEPT", {"requestId": request_id})
    assert ack["type"] == "ack", ack
    conversation_id: str = ack["data"]["conversationId"]
    return conversation_id


async def test_a_socket_frame_is_not_refused_from_a_stale_memory(
        owners: tuple[LcxProcess, LcxProcess]) -> None:
    """Alice, accepted through the other owner, writes and RESUMEs through the owner whose
    actor still holds the request pending: both acked, as the store says she is in."""
    first, second = owners
    conversation_id = await accepted_behind_first(first, second, "stale-ws")
    async with agent_connection(first.url, ALICE) as agent:
        resumed = await agent.call("RESUME", {"conversations": {conversation_id: 0}})
        assert resumed["type"] == "ack", resumed
        answer = await agent.call(None, {"conversationId": conversation_id, "id": "w-1",
                                         "text": "hello"}, kind="message")
        assert answer["type"] == "ack", answer
        assert answer["data"]["seq"] == 1


async def test_an_actor_decides_a_refusal_on_the_stored_state(
        owners: tuple[LcxProcess, LcxProcess]) -> None:
    """The REST post of an agent checks the stored conversation (active, Alice in it) and
    asks the actor, whose memory says pending: 202, not 409 "not active"."""
    first, second = owners
    conversation_id = await accepted_behind_first(first, second, "stale-rest")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{first.url}/organizations/{ORG}/livechat-messages",
            json={"conversationId": conversation_id, "text": "hello", "id": "h-1"},
            headers={"Authorization": f"Bearer {ALICE}"})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["seq"] == 1
