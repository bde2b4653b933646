"""Listings of requests and conversations (API.md section 6), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.livechat_app import LivechatApp, accept, connect_agent, livechat_app

from lcx.model import Context, Conversation, ConversationStatus, Participant, Subscriber
from lcx.store import Tx
from lcx.store.conversations import find_open, insert_conversation

REQUESTS = "/organizations/o1/livechat-requests"
CONVERSATIONS = "/agent/organizations/o1/livechat-conversations"


def conversation(cid: str, *, org: str = "o1", tenant: str = "t1", group: str = "g1",
                 status: ConversationStatus = "ended", created: str = "2025-01-01T00:00:00.000Z",
                 agents: Iterable[str] = (), accepted_by: str | None = None) -> Conversation:
    """A stored row: closed ones ended when created; ``agents`` are its participants."""
    closed = status in ("ended", "cancelled", "missed")
    participants = [Participant(id=agent, joined_at=created) for agent in agents]
    accepted = accepted_by or (participants[0].id if participants else None)
    return Conversation(
        id=cid, request_id=f"r-{cid}", org_id=org, tenant_id=tenant, sub_handle=f"s-{cid}",
        user_group_id=group, provider="helvia", channel="bot", status=status,
        subscriber=Subscriber(name=cid), context=Context(), participants=participants,
        flags={}, created_at=created, queued_at=created, last_activity_at=created,
        accepted_at=created if accepted else None, accepted_by=accepted,
        agent_id=accepted if status == "active" else None,
        ended_at=created if closed else None)


async def seed(app: LivechatApp, rows: Iterable[Conversation]) -> None:
    """Insert ``rows`` directly (as if their actors had written them)."""
    batch = list(rows)

    def write(tx: Tx) -> None:
        for row in batch:
            insert_conversation(tx, row)

    await app.hub.store.transaction(write)


def at(minute: int) -> str:
    """2025-01-01T00:<minute>:00.000Z (minutes beyond 59 roll into hours)."""
    return f"2025-01-01T{minute // 60:02d}:{minute % 60:02d}:00.000Z"


async def get(app: LivechatApp, path: str, headers: dict[str, str],
              **params: Any) -> httpx.Response:
    """GET ``path`` with query ``params``."""
    return await app.client.get(path, headers=headers, params=params)


async def ids(app: LivechatApp, path: str, headers: dict[str, str], **params: Any) -> list[str]:
    """The item ids of one page (asserting 200)."""
    response = await get(app, path, headers, **params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def walk(app: LivechatApp, path: str, headers: dict[str, str],
               **params: Any) -> list[list[str]]:
    """Every page of a listing, following ``nextCursor``: the ids of each page."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        extra = {} if cursor is None else {"cursor": cursor}
        response = await get(app, path, headers, **params, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


# --- requests ------------------------------------------------------------------------------

async def test_request_items_of_live_requests(tmp_path: Path) -> None:
    """Requests made through the API are listed newest first with their request status."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        for sub in ("u1", "u2"):
            created = await app.client.post("/requests", headers=bot, json={
                "tenantId": "t1", "subHandle": sub, "subscriber": {"name": sub}})
            assert created.status_code == 201, created.text
        taken = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u1"))
        assert taken is not None
        await connect_agent(app.hub, "alice")
        await accept(app.hub, taken.id, "alice")
        body = (await get(app, REQUESTS, app.tokens.supervisor())).json()
        assert body["nextCursor"] is None
        second, first = body["items"]
        assert first["id"] == taken.request_id
        assert (first["status"], first["conversationId"], first["acceptedBy"]) == \
            ("accepted", taken.id, "alice")
        assert (second["subHandle"], second["status"], second["conversationId"]) == \
            ("u2", "pending", None)
        assert second["subscriber"] == {"name": "u2"}
        assert set(first) >= {"tenantId", "userGroupId", "provider", "createdAt",
                              "acceptedAt", "endedAt"}


async def test_request_filters(tmp_path: Path) -> None:
    """status (accepted = active or ended), tenantId, userGroupId, from/to filter; o2 never."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [
            conversation("a", status="pending", created=at(1)),
            conversation("b", status="active", created=at(2), agents=["alice"]),
            conversation("c", status="ended", created=at(3), agents=["bob"]),
            conversation("d", status="cancelled", created=at(4)),
            conversation("e", status="missed", created=at(5), tenant="t2", group="g2"),
            conversation("f", status="ended", created=at(6), tenant="t2", group="g2",
                         agents=["alice"]),
            conversation("x", status="ended", created=at(3), org="o2", tenant="t9",
                         group="g1", agents=["alice"]),
        ])
        sup = app.tokens.supervisor()

        async def requests(**params: Any) -> list[str]:
            return [i.removeprefix("r-") for i in await ids(app, REQUESTS, sup, **params)]

        assert await requests() == ["f", "e", "d", "c", "b", "a"]
        assert await requests(status="accepted") == ["f", "c", "b"]
        assert await requests(status="pending") == ["a"]
        assert await requests(status="cancelled") == ["d"]
        assert await requests(status="missed") == ["e"]
        assert await requests(tenantId="t2") == ["f", "e"]
        assert await requests(userGroupId="g1", status="accepted") == ["c", "b"]
        assert await requests(**{"from": at(2), "to": at(5)}) == ["d", "c", "b"]
        assert await requests(**{"from": "2025-01-01T02:03:00+02:00"}) == ["f", "e", "d", "c"]


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "open"}, "status"),
    ({"status": "active"}, "status"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2025-01-01T00:00:00"}, "to"),
    ({"cursor": "not a cursor"}, "cursor"),
])
async def test_invalid_request_query_is_400(tmp_path: Path, params: dict[str, str],
                                            field: str) -> None:
    """A bad status, limit, timestamp or cursor is 400 naming the parameter."""
    async with livechat_app(tmp_path) as app:
        response = await get(app, REQUESTS, app.tokens.supervisor(), **params)
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == [field]


async def test_pagination_has_no_duplicates_or_gaps(tmp_path: Path) -> None:
    """Following nextCursor visits every row once, newest first, ties broken by id."""
    async with livechat_app(tmp_path) as app:
        rows = [conversation(f"c{n:02d}", created=at(n)) for n in range(18)]
        rows += [conversation(f"t{n}", created=at(7)) for n in range(5)]  # same createdAt
        await seed(app, rows)
        expected = [f"r-{c.id}" for c in sorted(rows, key=lambda c: (c.created_at, c.id),
                                                reverse=True)]
        pages = await walk(app, REQUESTS, app.tokens.supervisor(), limit=4)
        assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]
        assert [i for page in pages for i in page] == expected
        exact = await walk(app, REQUESTS, app.tokens.supervisor(), limit=23)
        assert exact == [expected]


async def test_filters_hold_across_pages(tmp_path: Path) -> None:
    """A cursor continues the filtered listing: later pages keep the filters."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation(f"c{n:02d}", created=at(n),
                                      status="ended" if n % 2 else "missed")
                         for n in range(20)])
        pages = await walk(app, REQUESTS, app.tokens.supervisor(), limit=3, status="missed")
        flat = [i for page in pages for i in page]
        assert flat == [f"r-c{n:02d}" for n in range(18, -1, -2)]


async def test_tampered_cursor_is_400(tmp_path: Path) -> None:
    """A cut, extended, re-versioned or made-up cursor is 400 naming ``cursor``."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation(f"c{n}", created=at(n)) for n in range(3)])
        sup = app.tokens.supervisor()
        cursor = (await get(app, REQUESTS, sup, limit=1)).json()["nextCursor"]
        assert cursor
        assert (await get(app, REQUESTS, sup, limit=1, cursor=cursor)).status_code == 200
        version, ms, hex_id = cursor.split(".")
        for bad in (cursor[:-1], cursor + "g", cursor + ".", f"2.{ms}.{hex_id}",
                    f"{version}.{ms}.", f"{version}..{hex_id}", f"{version}.{ms}0000000.{hex_id}",
                    f"{version}.{ms}.{hex_id.upper()}ZZ", "not a cursor", "",
                    "WzEsIjIwMjUtMDEtMDFUMDA6MDI6MDAuMDAwWiIsImMyIl0"):
            response = await get(app, REQUESTS, sup, limit=1, cursor=bad)
            assert error_of(response, 400, "invalid_request")["details"]["fields"] == \
                ["cursor"], bad


async def test_any_well_formed_cursor_is_a_position(tmp_path: Path) -> None:
    """A well-formed cursor naming no row still continues after its position."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation(f"c{n}", created=at(n)) for n in range(4)])
        sup = app.tokens.supervisor()
        ms = 1735689600000 + 2 * 60_000  # at(2)
        after = await ids(app, REQUESTS, sup, cursor=f"1.{ms}.{b'zzz'.hex()}")
        assert after == ["r-c2", "r-c1", "r-c0"]
        assert await ids(app, REQUESTS, sup, cursor=f"1.{ms}.00") == ["r-c1", "r-c0"]
        not_utf8 = await ids(app, REQUESTS, sup, cursor=f"1.{ms}.ff")  # read as Latin-1 "ÿ"
        assert not_utf8 == ["r-c2", "r-c1", "r-c0"]


async def test_limit_default_and_maximum(tmp_path: Path) -> None:
    """Without limit a page holds 50 items; limit=200 holds 200; the rest follows."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation(f"c{n:03d}", created=at(n)) for n in range(205)])
        sup = app.tokens.supervisor()
        default = (await get(app, REQUESTS, sup)).json()
        assert len(default["items"]) == 50
        assert default["nextCursor"] is not None
        full = (await get(app, REQUESTS, sup, limit=200)).json()
        assert len(full["items"]) == 200
        rest = (await get(app, REQUESTS, sup, limit=200, cursor=full["nextCursor"])).json()
        assert len(rest["items"]) == 5
        assert rest["nextCursor"] is None


async def test_agents_see_requests_of_their_groups(tmp_path: Path) -> None:
    """Agents list their groups' requests only; supervisors all; other orgs and bots 403."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation("a", group="g1", created=at(1)),
                         conversation("b", group="g2", created=at(2)),
                         conversation("c", group="g3", created=at(3))])
        assert await ids(app, REQUESTS, app.tokens.agent(groups=["g1"])) == ["r-a"]
        assert await ids(app, REQUESTS, app.tokens.agent(groups=["g1", "g3"])) == \
            ["r-c", "r-a"]
        assert await ids(app, REQUESTS, app.tokens.agent(groups=[])) == []
        assert await ids(app, REQUESTS, app.tokens.supervisor()) == ["r-c", "r-b", "r-a"]
        assert await ids(app, REQUESTS, app.tokens.service()) == ["r-c", "r-b", "r-a"]
        assert await ids(app, REQUESTS, app.tokens.admin()) == ["r-c", "r-b", "r-a"]
        other = await get(app, REQUESTS, app.tokens.agent(groups=["g1"]), userGroupId="g2")
        assert error_of(other, 403, "forbidden")["details"]["fields"] == ["userGroupId"]
        for headers in (app.tokens.supervisor(org="o2"), app.tokens.bot()):
            error_of(await get(app, REQUESTS, headers), 403, "forbidden")
        error_of(await get(app, REQUESTS, {}), 401, "unauthorized")


# --- requests of a user --------------------------------------------------------------------

async def test_user_requests_rules(tmp_path: Path) -> None:
    """Agents read their own accepted requests; supervisors anyone's; admins name the org."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [
            conversation("a1", status="ended", created=at(1), agents=["alice"]),
            conversation("a2", status="active", created=at(2), agents=["alice"]),
            conversation("b1", status="ended", created=at(3), agents=["bob"]),
            conversation("j1", status="ended", created=at(4), agents=["bob", "alice"]),
            conversation("p1", status="pending", created=at(5)),
            conversation("x1", status="ended", created=at(6), org="o2", tenant="t9",
                         agents=["alice"]),
        ])
        alice = "/users/alice/livechat-requests"
        assert await ids(app, alice, app.tokens.agent("alice")) == ["r-a2", "r-a1"]
        assert await ids(app, alice, app.tokens.agent("alice"), status="accepted",
                         **{"from": at(2)}) == ["r-a2"]
        error_of(await get(app, "/users/bob/livechat-requests", app.tokens.agent("alice")),
                 403, "forbidden")
        assert await ids(app, "/users/bob/livechat-requests", app.tokens.supervisor()) == \
            ["r-j1", "r-b1"]
        assert await ids(app, alice, app.tokens.service()) == ["r-a2", "r-a1"]
        assert await ids(app, alice, app.tokens.supervisor(org="o2")) == ["r-x1"]
        missing = await get(app, alice, app.tokens.admin())
        assert error_of(missing, 400, "invalid_request")["details"]["fields"] == \
            ["organizationId"]
        assert await ids(app, alice, app.tokens.admin(), organizationId="o2") == ["r-x1"]
        error_of(await get(app, alice, app.tokens.supervisor(), organizationId="o2"),
                 403, "forbidden")
        error_of(await get(app, alice, app.tokens.bot()), 403, "forbidden")


# --- conversations -------------------------------------------------------------------------

async def test_agent_conversations_are_those_it_took_part_in(tmp_path: Path) -> None:
    """An agent lists conversations it accepted, joined or was handed; never look-alikes."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [
            conversation("own", status="active", created=at(1), agents=["alice"]),
            conversation("joined", status="ended", created=at(2), agents=["bob", "alice"]),
            conversation("theirs", status="ended", created=at(3), agents=["bob"]),
            conversation("upper", status="ended", created=at(4), agents=["ALICE"]),
            conversation("like", status="ended", created=at(5), agents=["a_ice", "al%"]),
            conversation("queued", status="pending", created=at(6)),
            conversation("other-org", status="ended", created=at(7), org="o2", tenant="t9",
                         agents=["alice"]),
        ])
        assert await ids(app, CONVERSATIONS, app.tokens.agent("alice")) == ["joined", "own"]
        assert await ids(app, CONVERSATIONS, app.tokens.agent("a_ice")) == ["like"]
        assert await ids(app, CONVERSATIONS, app.tokens.agent("al%")) == ["like"]
        assert await ids(app, CONVERSATIONS, app.tokens.agent("alice"), status="active") == \
            ["own"]
        assert await ids(app, CONVERSATIONS, app.tokens.supervisor()) == \
            ["like", "upper", "theirs", "joined", "own"]
        assert await ids(app, CONVERSATIONS, app.tokens.supervisor(), status="ended") == \
            ["like", "upper", "theirs", "joined"]
        error_of(await get(app, CONVERSATIONS, app.tokens.agent(org="o2")), 403, "forbidden")
        bad = await get(app, CONVERSATIONS, app.tokens.agent(), status="pending")
        assert error_of(bad, 400, "invalid_request")["details"]["fields"] == ["status"]


async def test_agent_conversation_pages_skip_others(tmp_path: Path) -> None:
    """An agent's pages stay full and gap-free among many conversations of others."""
    async with livechat_app(tmp_path) as app:
        rows = [conversation(f"c{n:03d}", created=at(n),
                             agents=["alice"] if n % 25 == 0 else ["bob"])
                for n in range(250)]
        rows += [conversation(f"l{n}", created=at(n), agents=["ALICE"]) for n in range(120)]
        await seed(app, rows)
        pages = await walk(app, CONVERSATIONS, app.tokens.agent("alice"), limit=3)
        assert pages == [["c225", "c200", "c175"], ["c150", "c125", "c100"],
                         ["c075", "c050", "c025"], ["c000"]]


async def test_conversation_items_have_the_detail_shape(tmp_path: Path) -> None:
    """A listed conversation is the object the detail endpoint answers."""
    async with livechat_app(tmp_path) as app:
        await seed(app, [conversation("own", status="ended", created=at(1),
                                      agents=["alice"])])
        listed = (await get(app, CONVERSATIONS, app.tokens.agent("alice"))).json()["items"]
        detail = await get(app, "/organizations/o1/livechat-conversations/own",
                           app.tokens.agent("alice"))
        assert listed == [detail.json()]
