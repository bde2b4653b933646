"""The first run: ``lcx serve`` with no configuration, in an empty directory, is a demo a
newcomer can follow from what it prints, driven here as the simulator page and the agent
console drive it (bot API over HTTP, agent over the websocket)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from support.agent_client import agent_connection
from support.demo_process import Printed, start_demo
from support.lcx_process import LcxProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[LcxProcess, Printed]]:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    lcx, printed = start_demo(workdir)
    try:
        yield lcx, printed
    finally:
        lcx.kill()


def run_lcx(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "LCX_CONFIG"}
    return subprocess.run([sys.executable, "-m", "lcx", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


async def wait_for_events(client: httpx.AsyncClient, bot: dict[str, str], sub_handle: str,
                          types: list[str]) -> list[dict[str, Any]]:
    """Long-poll the simulator's inbox until the events of ``types`` arrived, in order."""
    seen: list[dict[str, Any]] = []
    cursor = 0
    with trio.fail_after(15):
        while [e["event"]["type"] for e in seen] != types:
            page = (await client.get("/console/try/events", headers=bot, params={
                "subHandle": sub_handle, "after": cursor, "wait": 5})).json()
            seen += page["events"]
            cursor = page["next"]
            assert len(seen) <= len(types), seen
    return seen


def test_the_welcome_names_the_demo_and_its_urls(demo: tuple[LcxProcess, Printed]) -> None:
    """lcx serve prints the console, a demo agent's and a supervisor's sign-in URLs and
    the simulator's, all on the address it listens on."""
    _, printed = demo
    assert printed.lines[0] == f"agent console: {printed.url}/console/"
    assert "organization 'demo', tenant 'demo', user group 'support'" in printed.lines[1]
    for label, path in (("agent Alice", "/console/"), ("supervisor Sam", "/console/"),
                        ("customer simulator", "/console/try")):
        url = urlsplit(printed.url_of(label))
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{printed.url}{path}"
    assert any("lcx token --scope agent --org demo --groups support" in line
               for line in printed.lines)


async def test_a_newcomer_runs_a_whole_conversation_through_the_demo(
        demo: tuple[LcxProcess, Printed]) -> None:
    """Simulator and agent talk both ways; the bot's events arrive signed, once, in order."""
    _, printed = demo
    bot = {"Authorization": f"Bearer {printed.token_of('customer simulator')}"}
    async with httpx.AsyncClient(base_url=printed.url, timeout=10) as client:
        page = await client.get("/console/try")
        assert page.status_code == 200
        assert "Customer simulator" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        for asset in ("simulator.js", "bot_api.js", "style.css"):
            assert (await client.get(f"/console/try/{asset}")).status_code == 200
        async with agent_connection(printed.url, printed.token_of("agent Alice")) as alice:
            created = await client.post("/requests", headers=bot, json={
                "tenantId": "demo", "subHandle": "visitor-1", "subscriber": {"name": "Ada"},
                "context": {"transcript": [{"author": "user", "text": "a person please"}]}})
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]
            offered = await alice.notification("request_created", requestId=request_id)
            assert offered["data"]["userGroupId"] == "support"
            accepted = await alice.call("REQUEST_ACCEPT", {"requestId": request_id})
            assert accepted["type"] == "ack", accepted
            conversation_id = accepted["data"]["conversationId"]
            sent = await client.post("/messages", headers=bot, json={
                "tenantId": "demo", "subHandle": "visitor-1", "id": "m-1", "type": "text",
                "text": "my order is late"})
            assert sent.status_code == 202, sent.text
            await alice.wait_for(lambda f: f["type"] == "message"
                                 and f["data"]["text"] == "my order is late")
            reply = await alice.call(None, {"conversationId": conversation_id,
                                            "text": "Let me look, Ada"}, kind="message")
            assert reply["type"] == "ack", reply
            ended = await alice.call("CONVERSATION_END", {"conversationId": conversation_id})
            assert ended["type"] == "ack", ended
        events = await wait_for_events(client, bot, "visitor-1",
                                       ["CONVERSATION_BEGIN", "MESSAGE", "CONVERSATION_END"])
    begin, message, end = (received["event"] for received in events)
    assert begin["data"]["agent"] == {"id": "alice", "name": "Alice"}
    assert message["data"]["text"] == "Let me look, Ada"
    assert end["data"]["endedBy"] == "agent"
    assert all(received["deliveries"] == 1 for received in events)


async def test_lcx_token_run_elsewhere_mints_tokens_the_demo_accepts(
        demo: tuple[LcxProcess, Printed], tmp_path: Path) -> None:
    """The development secret is the user's, not the directory's: a token from another
    directory opens the agent socket and reads the management API."""
    _, printed = demo
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    minted = run_lcx(elsewhere, "token", "--scope", "agent", "--org", "demo", "--sub", "bob",
                     "--groups", "support", "--name", "Bob")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    async with agent_connection(printed.url, token) as bob:
        granted = await bob.wait_for(lambda f: f.get("event") == "AUTHORIZATION_GRANTED")
        assert granted["data"]["agentId"] == "bob"
    async with httpx.AsyncClient(base_url=printed.url, timeout=10) as client:
        listing = await client.get("/organizations/demo/livechat-requests",
                                   headers={"Authorization": f"Bearer {token}"})
        assert listing.status_code == 200, listing.text
        forged = await client.get("/organizations/demo/livechat-requests", headers={
            "Authorization": "Bearer " + token[:-4] + ("AAAA" if token[-4:] != "AAAA"
                                                       else "BBBB")})
    assert forged.status_code == 401
    assert forged.json()["error"]["details"]["devSecret"].endswith("lcx/.lcx-dev-secret")


async def test_forged_events_are_refused_and_other_tokens_cannot_read_them(
        demo: tuple[LcxProcess, Printed]) -> None:
    """The simulator checks signatures as a bot must; its inbox is the demo bot's."""
    _, printed = demo
    async with httpx.AsyncClient(base_url=printed.url, timeout=10) as client:
        forged = await client.post("/console/try/events", content=b'{"type": "MESSAGE"}',
                                   headers={"X-Lcx-Signature": "sha256=00"})
        assert forged.status_code == 401
        agent = {"Authorization": f"Bearer {printed.token_of('agent Alice')}"}
        refused = await client.get("/console/try/events", headers=agent,
                                   params={"subHandle": "visitor-1"})
        assert refused.status_code == 403


async def test_with_a_configuration_file_there_is_no_demo(tmp_path: Path) -> None:
    """Any configuration file, even an empty one, means no demo tenant and no simulator."""
    lcx = LcxProcess(tmp_path, "", args=("--port", "0"))
    with lcx:
        assert lcx.printed_line() == f"agent console: {lcx.url}/console/"
        minted = run_lcx(tmp_path, "token", "--config", str(lcx.config_path), "--scope",
                         "bot", "--org", "demo", "--sub", "b")
        bot = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        async with httpx.AsyncClient(base_url=lcx.url, timeout=10) as client:
            for path in ("/console/try", "/console/try/simulator.js", "/console/try/events"):
                assert (await client.get(path)).status_code == 404, path
            created = await client.post("/requests", headers=bot, json={
                "tenantId": "demo", "subHandle": "u-1"})
        assert created.status_code == 404
        lcx.stop()
