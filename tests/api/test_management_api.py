"""The management API (API.md section 6: settings, transcripts, HTTP messages, detail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.livechat_app import LivechatApp, accept, connect_agent, livechat_app

from lcx.org_settings import DEFAULT_SETTINGS
from lcx.store.conversations import find_open, messages_after
from lcx.transcripts import CSV_HEADER

SETTINGS_PATH = "/organizations/o1/livechat-settings"
MESSAGES_PATH = "/organizations/o1/livechat-messages"


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


async def pending_conversation(app: LivechatApp, sub: str = "u1") -> str:
    """Open a request for ``sub`` of t1 with one subscriber message; its conversation id."""
    bot = app.tokens.bot()
    created = await app.client.post("/requests", headers=bot, json={
        "tenantId": "t1", "subHandle": sub, "subscriber": {"name": "Ada"}})
    assert created.status_code == 201, created.text
    posted = await app.client.post("/messages", headers=bot, json={
        "tenantId": "t1", "subHandle": sub, "text": "=1+1 I need a human"})
    assert posted.status_code == 202, posted.text
    found = await app.hub.store.read(lambda tx: find_open(tx, "t1", sub))
    assert found is not None
    return found.id


async def active_conversation(app: LivechatApp, agent: str = "alice",
                              sub: str = "u1") -> str:
    """A conversation of t1 that ``agent`` accepted; its id."""
    cid = await pending_conversation(app, sub)
    await connect_agent(app.hub, agent, name=agent.title())
    await accept(app.hub, cid, agent, name=agent.title())
    return cid


async def agent_says(app: LivechatApp, cid: str, text: str, *, agent: str = "alice",
                     **fields: Any) -> httpx.Response:
    """POST livechat-messages as ``agent``."""
    return await app.client.post(MESSAGES_PATH, headers=app.tokens.agent(agent, name="Alice"),
                                 json={"conversationId": cid, "text": text, **fields})


# --- settings ------------------------------------------------------------------------------

async def test_settings_default_for_an_agent(tmp_path: Path) -> None:
    """GET livechat-settings answers the defaults to an agent of the organization."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.get(SETTINGS_PATH, headers=app.tokens.agent())
        assert response.status_code == 200
        assert response.json() == {
            "routing": "broadcast", "maxConcurrentChats": 3, "requestTimeoutSeconds": 120,
            "inactivityTimeoutSeconds": 900, "rejectWhenUnavailable": False,
            "endOnLastLeave": True, "retentionDays": 365, "greeting": None}


async def test_put_settings_replaces_and_is_read_back(tmp_path: Path) -> None:
    """A supervisor's PUT is stored (omitted fields take defaults) and used from then on."""
    async with livechat_app(tmp_path) as app:
        body = {"routing": "auto", "maxConcurrentChats": 5, "greeting": "Hi!"}
        response = await app.client.put(SETTINGS_PATH, json=body,
                                        headers=app.tokens.supervisor())
        assert response.status_code == 200, response.text
        read = (await app.client.get(SETTINGS_PATH, headers=app.tokens.agent())).json()
        assert read["routing"] == "auto"
        assert read["maxConcurrentChats"] == 5
        assert read["greeting"] == "Hi!"
        assert read["retentionDays"] == DEFAULT_SETTINGS.retention_days
        assert (await app.hub.org_settings.get("o1")).max_concurrent_chats == 5


@pytest.mark.parametrize(("body", "field"), [
    ({"maxConcurrentChats": "3"}, "maxConcurrentChats"),
    ({"routing": "random"}, "routing"),
    ({"rejectWhenUnavailable": 1}, "rejectWhenUnavailable"),
    ({"colour": "blue"}, "colour"),
])
async def test_put_settings_bad_types_are_400(tmp_path: Path, body: dict[str, Any],
                                              field: str) -> None:
    """A wrong type, unknown enum value or unknown field is 400 naming it; nothing is stored."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.put(SETTINGS_PATH, json=body,
                                        headers=app.tokens.supervisor())
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == [field]
        assert await app.hub.org_settings.get("o1") == DEFAULT_SETTINGS


async def test_put_settings_out_of_range_is_invalid(tmp_path: Path) -> None:
    """Out-of-range values (the ranges are part of the published schema) are 400 naming
    the field, and change nothing."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.put(SETTINGS_PATH, headers=app.tokens.supervisor(),
                                        json={"maxConcurrentChats": 0, "retentionDays": 30})
        error = error_of(response, 400, "invalid_request")
        assert error["details"]["fields"] == ["maxConcurrentChats"]
        current = await app.client.get(SETTINGS_PATH, headers=app.tokens.supervisor())
        assert current.json()["retentionDays"] == 365


async def test_settings_scopes(tmp_path: Path) -> None:
    """Agents and bots may not PUT; other orgs may not read; admin and service may write."""
    async with livechat_app(tmp_path) as app:
        body = {"routing": "auto"}
        for headers in (app.tokens.agent(), app.tokens.bot()):
            error_of(await app.client.put(SETTINGS_PATH, json=body, headers=headers),
                     403, "forbidden")
        error_of(await app.client.get(SETTINGS_PATH, headers=app.tokens.bot()),
                 403, "forbidden")
        error_of(await app.client.get(SETTINGS_PATH, headers=app.tokens.agent(org="o2")),
                 403, "forbidden")
        error_of(await app.client.get(SETTINGS_PATH), 401, "unauthorized")
        for headers in (app.tokens.admin(), app.tokens.service()):
            response = await app.client.put(SETTINGS_PATH, json=body, headers=headers)
            assert response.status_code == 200


# --- transcripts ---------------------------------------------------------------------------

async def test_transcript_json(tmp_path: Path) -> None:
    """The JSON transcript lists the conversation's messages in seq order."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app)
        assert (await agent_says(app, cid, "Hi Ada")).status_code == 202
        response = await app.client.get(MESSAGES_PATH, params={"conversationId": cid},
                                        headers=app.tokens.supervisor())
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        items = response.json()["items"]
        assert [(i["seq"], i["author"]["type"], i["text"]) for i in items] == [
            (1, "subscriber", "=1+1 I need a human"), (2, "agent", "Hi Ada")]


async def test_transcript_csv_and_pdf_downloads(tmp_path: Path) -> None:
    """CSV and PDF transcripts come with their content types and an attachment filename."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app)
        headers = app.tokens.supervisor()
        csv = await app.client.get(MESSAGES_PATH, headers=headers,
                                   params={"conversationId": cid, "format": "csv"})
        assert csv.status_code == 200
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.headers["content-disposition"] == \
            f'attachment; filename="transcript-o1-{cid}.csv"'
        lines = csv.text.split("\r\n")
        assert lines[0] == ",".join(CSV_HEADER)
        assert "'=1+1 I need a human" in lines[1]
        pdf = await app.client.get(MESSAGES_PATH, headers=headers, params={"format": "pdf"})
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("attachment; filename=")
        assert "transcript-o1-all.pdf" in pdf.headers["content-disposition"]
        assert pdf.content.startswith(b"%PDF")


async def test_transcript_time_window(tmp_path: Path) -> None:
    """from/to filter messages by time; a malformed timestamp is 400 naming it."""
    async with livechat_app(tmp_path) as app:
        await pending_conversation(app)
        headers = app.tokens.supervisor()
        late = await app.client.get(MESSAGES_PATH, headers=headers,
                                    params={"from": "2999-01-01T00:00:00Z"})
        assert late.json()["items"] == []
        early = await app.client.get(MESSAGES_PATH, headers=headers,
                                     params={"to": "2999-01-01T00:00:00+02:00"})
        assert len(early.json()["items"]) == 1
        bad = await app.client.get(MESSAGES_PATH, headers=headers,
                                   params={"from": "yesterday"})
        assert error_of(bad, 400, "invalid_request")["details"]["fields"] == ["from"]
        fmt = await app.client.get(MESSAGES_PATH, headers=headers, params={"format": "xls"})
        assert error_of(fmt, 400, "invalid_request")["details"]["fields"] == ["format"]


async def test_transcript_access_of_agents(tmp_path: Path) -> None:
    """An agent reads its own conversations only; org-wide needs a supervisor; o2 gets 403."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app, "alice")
        own = await app.client.get(MESSAGES_PATH, params={"conversationId": cid},
                                   headers=app.tokens.agent("alice"))
        assert own.status_code == 200
        error_of(await app.client.get(MESSAGES_PATH, params={"conversationId": cid},
                                      headers=app.tokens.agent("bob")), 403, "forbidden")
        error_of(await app.client.get(MESSAGES_PATH, headers=app.tokens.agent("alice")),
                 403, "forbidden")
        error_of(await app.client.get(MESSAGES_PATH, params={"conversationId": cid},
                                      headers=app.tokens.supervisor(org="o2")),
                 403, "forbidden")
        other_org = await app.client.get("/organizations/o2/livechat-messages",
                                         params={"conversationId": cid},
                                         headers=app.tokens.supervisor(org="o2"))
        error_of(other_org, 404, "not_found")


# --- posting over HTTP ---------------------------------------------------------------------

async def test_post_message_into_pending_conversation_is_409(tmp_path: Path) -> None:
    """Posting into a conversation that is still a pending request is 409 conflict."""
    async with livechat_app(tmp_path) as app:
        cid = await pending_conversation(app)
        response = await app.client.post(MESSAGES_PATH, headers=app.tokens.supervisor(),
                                         json={"conversationId": cid, "text": "hello?"})
        assert error_of(response, 409, "conflict")["details"]["status"] == "pending"


async def test_post_message_into_active_conversation(tmp_path: Path) -> None:
    """An agent of the conversation posts (202, next seq); a replay of its id answers the same."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app)
        first = await agent_says(app, cid, "Hi Ada", id="c-1")
        assert first.status_code == 202, first.text
        assert first.json()["seq"] == 2
        assert first.json()["conversationId"] == cid
        again = await agent_says(app, cid, "Hi Ada", id="c-1")
        assert again.json() == first.json()
        stored = await app.hub.store.read(lambda tx: messages_after(tx, cid, 1))
        assert [(m.author.type, m.author.id, m.author.name, m.text) for m in stored] == [
            ("agent", "alice", "Alice", "Hi Ada")]
        error_of(await agent_says(app, cid, "me too", agent="bob"), 403, "forbidden")


async def test_post_message_refusals(tmp_path: Path) -> None:
    """Unknown or other-org conversations are 404; ended ones 409; bots 403; bad body 400."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app)
        error_of(await agent_says(app, "nope", "hi"), 404, "not_found")
        foreign = await app.client.post("/organizations/o2/livechat-messages",
                                        headers=app.tokens.supervisor(org="o2"),
                                        json={"conversationId": cid, "text": "hi"})
        error_of(foreign, 404, "not_found")
        error_of(await app.client.post(MESSAGES_PATH, headers=app.tokens.bot(),
                                       json={"conversationId": cid, "text": "hi"}),
                 403, "forbidden")
        missing = await app.client.post(MESSAGES_PATH, headers=app.tokens.agent(),
                                        json={"conversationId": cid})
        assert error_of(missing, 400, "invalid_request")["details"]["fields"] == ["text"]
        await app.client.delete("/sessions/tenants/t1/subscribers/u1",
                                headers=app.tokens.bot())
        error_of(await agent_says(app, cid, "still there?"), 409, "conflict")


# --- conversation detail -------------------------------------------------------------------

async def test_conversation_detail(tmp_path: Path) -> None:
    """The detail has participants, flags and timestamps; another org gets 404."""
    async with livechat_app(tmp_path) as app:
        cid = await active_conversation(app)
        path = f"/organizations/o1/livechat-conversations/{cid}"
        response = await app.client.get(path, headers=app.tokens.agent())
        assert response.status_code == 200
        detail = response.json()
        assert (detail["id"], detail["status"], detail["tenantId"]) == (cid, "active", "t1")
        assert [p["id"] for p in detail["participants"]] == ["alice"]
        assert detail["flags"] == {}
        assert detail["acceptedAt"] is not None
        assert detail["agent"] == {"id": "alice", "name": "Alice"}
        foreign = await app.client.get(f"/organizations/o2/livechat-conversations/{cid}",
                                       headers=app.tokens.supervisor(org="o2"))
        error_of(foreign, 404, "not_found")
        error_of(await app.client.get(path, headers=app.tokens.supervisor(org="o2")),
                 403, "forbidden")
        error_of(await app.client.get("/organizations/o1/livechat-conversations/nope",
                                      headers=app.tokens.agent()), 404, "not_found")
        stranger = app.tokens.agent("bob", groups=["g7"])
        error_of(await app.client.get(path, headers=stranger), 403, "forbidden")
