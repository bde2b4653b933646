"""Retention purges and organization data deletion (API.md section 6), over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from support.livechat_app import LivechatApp, accept, connect_agent, livechat_app

from lcx.model import (
    Author,
    Context,
    Conversation,
    ConversationStatus,
    Message,
    Participant,
    Subscriber,
    iso,
    parse_iso,
    utc_now,
)
from lcx.store import Tx
from lcx.store.conversations import append_message, find_open, insert_conversation
from services.retention import ORG_DATA_DELETED

OLD = "2024-01-01T00:00:00.000Z"
CUTOFF = "2025-01-01T00:00:00.000Z"
RECENT = "2025-06-01T00:00:00.000Z"
TABLES = ("conversations", "messages", "outbox", "attachments", "org_settings",
          "business_hours")


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


def record(cid: str, *, org: str, tenant: str, status: ConversationStatus,
           created: str = OLD, ended: str | None = None) -> Conversation:
    """A conversation row; closed ones end at ``ended`` (default: when created)."""
    closed = status in ("ended", "cancelled", "missed")
    agent = "alice" if status in ("active", "ended") else None
    return Conversation(
        id=cid, request_id=f"r-{cid}", org_id=org, tenant_id=tenant, sub_handle=f"s-{cid}",
        user_group_id="g1", provider="helvia", channel="bot", status=status,
        subscriber=Subscriber(name=cid), context=Context(),
        participants=[Participant(id=agent, joined_at=created)] if agent else [], flags={},
        created_at=created, queued_at=created, last_activity_at=created,
        accepted_at=created if agent else None, accepted_by=agent, agent_id=agent,
        ended_at=(ended or created) if closed else None)


def seed_with_records(tx: Tx, conversation: Conversation, *, messages: int = 2,
                      outbox: bool = True, attachment: bool = True) -> None:
    """Insert a conversation with ``messages`` messages, a delivered event, an attachment."""
    insert_conversation(tx, conversation)
    c = conversation
    for seq in range(1, messages + 1):
        append_message(tx, Message(conversation_id=c.id, seq=seq, message_id=f"{c.id}-m{seq}",
                                   author=Author(type="subscriber"), type="text",
                                   at=c.created_at, text="hello"), org_id=c.org_id,
                       client_id=None)
    if outbox:
        tx.execute(
            "INSERT INTO outbox (id, org_id, tenant_id, conversation_id, event_no, target, url, "
            "type, body, status, attempts, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, 1, 'bot', 'http://bot', 'MESSAGE', '{}', 'delivered', 1, ?, ?)",
            (f"{c.id}-e1", c.org_id, c.tenant_id, c.id, c.created_at, c.created_at))
    if attachment:
        seed_attachment(tx, f"{c.id}-a1", org=c.org_id, conversation_id=c.id,
                        created=c.created_at)


def seed_attachment(tx: Tx, aid: str, *, org: str, conversation_id: str | None,
                    created: str) -> None:
    """Insert an attachment record (no bytes: the test app has no attachment storage)."""
    tx.execute("INSERT INTO attachments (id, org_id, conversation_id, name, content_type, "
               "size, backend, storage_key, uploaded_by, created_at) "
               "VALUES (?, ?, ?, 'a.png', 'image/png', 3, 'local', ?, 'bot-1', ?)",
               (aid, org, conversation_id, f"{org}/{aid}", created))


def seed_org(tx: Tx, org: str, tenant: str) -> None:
    """The same mix of old, recent, closed and open records in ``org``."""
    cases: tuple[tuple[str, ConversationStatus, str, str | None], ...] = (
        ("old-ended", "ended", OLD, None), ("old-cancelled", "cancelled", OLD, None),
        ("old-missed", "missed", OLD, None), ("recent-ended", "ended", OLD, RECENT),
        ("old-active", "active", OLD, None), ("old-pending", "pending", OLD, None))
    for name, status, created, ended in cases:
        seed_with_records(tx, record(f"{org}-{name}", org=org, tenant=tenant,
                                     status=status, created=created, ended=ended),
                          messages=2 if name == "old-ended" else 1,
                          attachment=name in ("old-ended", "recent-ended", "old-active"))
    seed_attachment(tx, f"{org}-untied-old", org=org, conversation_id=None, created=OLD)
    seed_attachment(tx, f"{org}-untied-new", org=org, conversation_id=None, created=RECENT)


async def snapshot(app: LivechatApp, org: str, tenants: tuple[str, ...]) -> dict[str, Any]:
    """Every row of ``org`` in every table (idempotency keys by their scopes)."""
    def read(tx: Tx) -> dict[str, Any]:
        rows = {table: sorted(tx.fetchall(f"SELECT * FROM {table} WHERE org_id = ?", (org,)),
                              key=repr) for table in TABLES}
        scopes = [f"bot:{t}" for t in tenants]
        keys = tx.fetchall("SELECT * FROM idempotency_keys ORDER BY scope, key")
        rows["idempotency_keys"] = [k for k in keys if k["scope"] in scopes
                                    or k["scope"].startswith(f"http:{org}:")]
        return rows

    return await app.hub.store.read(read)


def ids_of(rows: list[dict[str, Any]], column: str = "id") -> set[str]:
    """The values of ``column`` in ``rows``."""
    return {row[column] for row in rows}


# --- retention -----------------------------------------------------------------------------

async def test_retention_deletes_old_closed_conversations_of_that_org(tmp_path: Path) -> None:
    """Closed conversations ended before ``before`` go with their messages, events and
    attachments; open and recent ones stay; o2's identical records are untouched."""
    async with livechat_app(tmp_path) as app:
        def write(tx: Tx) -> None:
            seed_org(tx, "o1", "t1")
            seed_org(tx, "o2", "t9")

        await app.hub.store.transaction(write)
        o2_before = await snapshot(app, "o2", ("t9",))
        response = await app.client.delete("/organizations/o1/data-retention",
                                           params={"before": CUTOFF},
                                           headers=app.tokens.supervisor())
        assert response.status_code == 200, response.text
        assert response.json() == {"before": CUTOFF, "deleted": {
            "conversations": 3, "messages": 4, "attachments": 2}}
        left = await snapshot(app, "o1", ("t1",))
        assert ids_of(left["conversations"]) == {
            "o1-recent-ended", "o1-old-active", "o1-old-pending"}
        assert ids_of(left["messages"], "conversation_id") == ids_of(left["conversations"])
        assert ids_of(left["outbox"], "conversation_id") == ids_of(left["conversations"])
        assert ids_of(left["attachments"]) == {
            "o1-recent-ended-a1", "o1-old-active-a1", "o1-untied-new"}
        assert await snapshot(app, "o2", ("t9",)) == o2_before
        again = await app.client.delete("/organizations/o1/data-retention",
                                        params={"before": CUTOFF},
                                        headers=app.tokens.service())
        assert again.json()["deleted"] == {"conversations": 0, "messages": 0, "attachments": 0}


async def test_retention_default_is_retention_days_ago(tmp_path: Path) -> None:
    """Without ``before`` the cutoff is now minus the organization's retentionDays."""
    async with livechat_app(tmp_path, settings_overrides={"o1": {"retentionDays": 30}}) as app:
        now = utc_now()
        stale = iso(now - timedelta(days=40))
        fresh = iso(now - timedelta(days=20))

        def write(tx: Tx) -> None:
            for cid, at in (("stale", stale), ("fresh", fresh)):
                seed_with_records(tx, record(cid, org="o1", tenant="t1", status="ended",
                                             created=at))

        await app.hub.store.transaction(write)
        response = await app.client.delete("/organizations/o1/data-retention",
                                           headers=app.tokens.admin())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["deleted"] == {"conversations": 1, "messages": 2, "attachments": 1}
        cutoff = parse_iso(body["before"])
        assert abs((cutoff - (now - timedelta(days=30))).total_seconds()) < 60
        left = await snapshot(app, "o1", ("t1",))
        assert ids_of(left["conversations"]) == {"fresh"}


async def test_retention_runs_in_batches(tmp_path: Path) -> None:
    """A purge larger than one batch deletes everything it should."""
    async with livechat_app(tmp_path) as app:
        def write(tx: Tx) -> None:
            for n in range(1203):
                seed_with_records(tx, record(f"c{n:04d}", org="o1", tenant="t1",
                                             status="ended"), messages=1, outbox=False,
                                  attachment=n % 100 == 0)

        await app.hub.store.transaction(write)
        response = await app.client.delete("/organizations/o1/data-retention",
                                           params={"before": CUTOFF},
                                           headers=app.tokens.supervisor())
        assert response.json()["deleted"] == {
            "conversations": 1203, "messages": 1203, "attachments": 13}


async def test_retention_scopes_and_bad_before(tmp_path: Path) -> None:
    """Agents, bots and other organizations get 403; a bad ``before`` is 400 naming it."""
    async with livechat_app(tmp_path) as app:
        path = "/organizations/o1/data-retention"
        for headers in (app.tokens.agent(), app.tokens.bot(), app.tokens.supervisor(org="o2")):
            error_of(await app.client.delete(path, headers=headers), 403, "forbidden")
        bad = await app.client.delete(path, params={"before": "last year"},
                                      headers=app.tokens.supervisor())
        assert error_of(bad, 400, "invalid_request")["details"]["fields"] == ["before"]
        error_of(await app.client.delete(path), 401, "unauthorized")


# --- organization data ---------------------------------------------------------------------

async def open_live_conversations(app: LivechatApp) -> str:
    """In o1: a pending request (u1) and an active conversation (u2, alice), with
    idempotent messages from the bot and alice; in o2: a pending request. Returns u2's id."""
    bot = app.tokens.bot()
    for sub in ("u1", "u2"):
        assert (await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": sub})).status_code == 201
        assert (await app.client.post("/messages", headers=bot, json={
            "tenantId": "t1", "subHandle": sub, "id": f"bot-{sub}", "text": "hi"}
        )).status_code == 202
    active = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u2"))
    assert active is not None
    await accept(app.hub, active.id, "alice")
    posted = await app.client.post("/organizations/o1/livechat-messages", json={
        "conversationId": active.id, "text": "Hi", "id": "alice-1"},
        headers=app.tokens.agent("alice"))
    assert posted.status_code == 202, posted.text
    bot2 = app.tokens.bot(org="o2")
    assert (await app.client.post("/requests", headers=bot2, json={
        "tenantId": "t9", "subHandle": "u9"})).status_code == 201
    assert (await app.client.post("/messages", headers=bot2, json={
        "tenantId": "t9", "subHandle": "u9", "id": "bot-u9", "text": "hi"})).status_code == 202
    return active.id


async def test_deleting_org_data_cascades_and_spares_other_orgs(tmp_path: Path) -> None:
    """DELETE .../data ends open conversations through their actors, deletes every record
    of the organization and forgets its settings; o2's records are untouched."""
    overrides = {"o1": {"greeting": "Hello"}, "o2": {"retentionDays": 7}}
    async with livechat_app(tmp_path, settings_overrides=overrides) as app:
        sink = await connect_agent(app.hub, "alice")
        active_id = await open_live_conversations(app)

        def write(tx: Tx) -> None:
            for org, tenant in (("o1", "t1"), ("o2", "t9")):
                seed_with_records(tx, record(f"{org}-closed", org=org, tenant=tenant,
                                             status="ended"))
                seed_attachment(tx, f"{org}-untied", org=org, conversation_id=None,
                                created=RECENT)
                tx.execute("INSERT INTO business_hours (org_id, user_group_id, body, "
                           "updated_at) VALUES (?, 'g1', '{}', ?)", (org, OLD))

        await app.hub.store.transaction(write)
        o2_before = await snapshot(app, "o2", ("t9",))
        o1_before = await snapshot(app, "o1", ("t1", "t2"))
        assert len(o1_before["idempotency_keys"]) == 3
        response = await app.client.delete("/organizations/o1/data",
                                           headers=app.tokens.supervisor())
        assert response.status_code == 202, response.text
        assert response.json() == {"ended": 2, "stillOpen": 0, "deleted": {
            "conversations": 3, "messages": len(o1_before["messages"]),
            "attachments": 2, "events": len(o1_before["outbox"]), "settings": 1,
            "businessHours": 1, "idempotencyKeys": 3}}
        after = await snapshot(app, "o1", ("t1", "t2"))
        assert all(rows == [] for rows in after.values()), after
        assert await snapshot(app, "o2", ("t9",)) == o2_before
        ends = [f["data"] for f in sink.frames if f.get("event") == "CONVERSATION_END"]
        assert ends == [{"conversationId": active_id, "endedBy": "system",
                         "reason": ORG_DATA_DELETED}]
        assert (await app.hub.org_settings.get("o1")).greeting is None
        assert (await app.hub.org_settings.get("o2")).retention_days == 7
        state = await app.client.get("/subscribers/u2/livechat-state",
                                     params={"tenantId": "t1"}, headers=app.tokens.bot())
        assert state.json()["state"] == "none"
        again = await app.client.post("/requests", headers=app.tokens.bot(), json={
            "tenantId": "t1", "subHandle": "u2"})
        assert again.status_code == 201, again.text


async def test_deleting_org_data_is_idempotent_and_guarded(tmp_path: Path) -> None:
    """A second delete finds nothing; agents, bots and other orgs get 403; admins may."""
    async with livechat_app(tmp_path) as app:
        path = "/organizations/o1/data"
        for headers in (app.tokens.agent(), app.tokens.bot(), app.tokens.supervisor(org="o2")):
            error_of(await app.client.delete(path, headers=headers), 403, "forbidden")
        first = await app.client.delete(path, headers=app.tokens.admin())
        second = await app.client.delete(path, headers=app.tokens.service())
        assert first.status_code == second.status_code == 202
        assert second.json() == {"ended": 0, "stillOpen": 0, "deleted": {
            "conversations": 0, "messages": 0, "attachments": 0, "events": 0, "settings": 0,
            "businessHours": 0, "idempotencyKeys": 0}}


# --- attachment files ------------------------------------------------------------------------

async def upload(app: LivechatApp, headers: dict[str, str],
                 conversation_id: str | None = None) -> dict[str, Any]:
    """Upload a small text file (tied to ``conversation_id`` when given); the 201 body."""
    fields = {} if conversation_id is None else {"conversationId": conversation_id}
    response = await app.client.post("/livechat-attachments", headers=headers, data=fields,
                                      files={"file": ("note.txt", b"hello there", "text/plain")})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def download(app: LivechatApp, url: str) -> int:
    """The status of downloading a signed URL from the test app (its path and query)."""
    return (await app.client.get(httpx.URL(url).raw_path.decode())).status_code


def stored_files(tmp_path: Path) -> set[str]:
    """Names of the files in the test app's local attachment storage."""
    return {path.name for path in (tmp_path / "attachments").rglob("*") if path.is_file()}


async def test_purges_delete_the_stored_files(tmp_path: Path) -> None:
    """Retention and data deletion remove the uploaded files with their records; another
    organization's file stays downloadable."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        assert (await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "u1"})).status_code == 201
        found = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u1"))
        assert found is not None
        tied = await upload(app, bot, found.id)
        untied = await upload(app, bot)
        theirs = await upload(app, app.tokens.bot(org="o2"))
        assert stored_files(tmp_path) == {tied["id"], untied["id"], theirs["id"]}
        assert (await app.client.delete("/sessions/tenants/t1/subscribers/u1",
                                        headers=bot)).status_code == 204
        kept = await app.client.delete("/organizations/o1/data-retention",
                                       params={"before": OLD}, headers=app.tokens.service())
        assert kept.json()["deleted"]["attachments"] == 0
        response = await app.client.delete("/organizations/o1/data-retention",
                                           params={"before": "2999-01-01T00:00:00Z"},
                                           headers=app.tokens.service())
        assert response.json()["deleted"] == {"conversations": 1, "messages": 0,
                                              "attachments": 2}
        assert stored_files(tmp_path) == {theirs["id"]}
        assert await download(app, tied["url"]) == 404
        assert await download(app, theirs["url"]) == 200
        again = await upload(app, bot)
        deleted = await app.client.delete("/organizations/o1/data", headers=app.tokens.admin())
        assert deleted.json()["deleted"]["attachments"] == 1
        assert again["id"] not in stored_files(tmp_path)
        assert await download(app, theirs["url"]) == 200
