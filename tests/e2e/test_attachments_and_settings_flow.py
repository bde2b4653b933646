"""An uploaded file travels in agent messages to the bot and into the transcript; new
settings apply at once to requests already waiting."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from e2e_env import ORG, Env
from support.agent_client import agent_connection

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00"
       b"\x00\x00:~\x9bU\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q\x00\x00"
       b"\x00\x00IEND\xaeB`\x82")


async def test_uploaded_file_reaches_bot_and_transcript(env: Env) -> None:
    """Upload, send it in an agent message, and find it in the bot event and the transcript;
    its signed URL downloads the same bytes."""
    token = env.agent_token("alice")
    async with agent_connection(env.url, token) as alice:
        created = await env.create_request("u-file")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        uploaded = await env.http.post(
            "/livechat-attachments", headers=env.bearer(token),
            files={"file": ("pixel.png", PNG, "application/octet-stream")},
            data={"conversationId": conversation_id})
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()
        assert attachment["contentType"] == "image/png"
        sent = await alice.call(None, {"conversationId": conversation_id, "text": "here",
                                       "attachments": [attachment]}, kind="message")
        assert sent["type"] == "ack", sent
    await env.bot.wait_for(2)
    message = env.bot.events_for(conversation_id)[1]
    assert message["data"]["attachments"][0]["url"] == attachment["url"]
    transcript = await env.transcript(conversation_id)
    assert transcript[0]["attachments"][0]["name"] == "pixel.png"
    signed = urlsplit(attachment["url"])  # its host is server.public_url; ours is port 0
    async with httpx.AsyncClient(base_url=env.url) as plain:
        download = await plain.get(f"{signed.path}?{signed.query}")
    assert download.status_code == 200
    assert download.content == PNG


async def test_settings_apply_at_once_to_waiting_requests(env: Env) -> None:
    """A request waiting under the default 120 s timeout is missed soon after the timeout
    is lowered; switching to auto routing assigns the waiting ones."""
    missed_soon = await env.create_request("u-wait-1")
    await env.put_settings(requestTimeoutSeconds=1)
    received = await env.bot.wait_for(1, timeout=5)
    assert received[0].event["type"] == "REQUEST_MISSED"
    assert received[0].event["requestId"] == missed_soon["id"]
    await env.put_settings(requestTimeoutSeconds=120)
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        waiting = await env.create_request("u-wait-2")
        await alice.notification("request_created", requestId=waiting["id"])
        await env.put_settings(routing="auto", requestTimeoutSeconds=120)
        assigned = await alice.notification("request_assigned", requestId=waiting["id"])
        assert assigned["data"]["conversationId"]
    listing = await env.http.get(f"/organizations/{ORG}/livechat-requests",
                                 params={"status": "accepted"},
                                 headers=env.bearer(env.agent_token("sue", scope="supervisor")))
    assert [item["id"] for item in listing.json()["items"]] == [waiting["id"]]
