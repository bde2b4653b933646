"""Canned responses (API.md section 6): CRUD, scopes, shortcut uniqueness, group filters."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import livechat_app

PATH = "/organizations/o1/canned-responses"


async def test_create_list_patch_delete_with_group_visibility(tmp_path: Path) -> None:
    """Supervisors write; agents read the org-wide ones and their groups'; PATCH and
    DELETE change one; a taken shortcut is 409 per organization and group."""
    async with livechat_app(tmp_path) as (client, tokens, _hub):
        boss = tokens.supervisor()
        made = []
        for body in ({"shortcut": "refund", "title": "Refund", "text": "5 days."},
                     {"shortcut": "refund", "title": "Refund g2", "text": "7 days.",
                      "userGroupId": "g2"},
                     {"shortcut": "hello", "title": "Hello", "text": "Hi!",
                      "userGroupId": "g1"}):
            created = await client.post(PATH, json=body, headers=boss)
            assert created.status_code == 201, created.text
            made.append(created.json())
        assert made[0]["id"] != made[1]["id"]
        assert "userGroupId" not in made[0]
        taken = await client.post(PATH, json={"shortcut": "refund", "title": "x", "text": "y"},
                                  headers=tokens.service())
        assert taken.status_code == 409
        assert taken.json()["error"]["details"] == {"shortcut": "refund", "userGroupId": None}

        as_agent = await client.get(PATH, headers=tokens.agent(groups=["g1"]))
        assert [(c["shortcut"], c.get("userGroupId")) for c in as_agent.json()["items"]] == [
            ("hello", "g1"), ("refund", None)]
        everything = await client.get(PATH, headers=boss)
        assert len(everything.json()["items"]) == 3
        of_g2 = await client.get(PATH, params={"userGroupId": "g2"}, headers=boss)
        assert [c["text"] for c in of_g2.json()["items"]] == ["5 days.", "7 days."]

        hello = made[2]["id"]
        clash = await client.patch(f"{PATH}/{hello}", json={"shortcut": "refund"},
                                   headers=boss)
        assert clash.status_code == 200  # g1 has no "refund" of its own
        clash = await client.patch(f"{PATH}/{hello}", json={"userGroupId": None}, headers=boss)
        assert clash.status_code == 409  # now it would collide with the org-wide one
        changed = await client.patch(f"{PATH}/{hello}", json={"text": "Hello there"},
                                     headers=boss)
        assert changed.status_code == 200
        assert (changed.json()["shortcut"], changed.json()["text"]) == ("refund", "Hello there")

        assert (await client.delete(f"{PATH}/{hello}", headers=boss)).status_code == 204
        assert (await client.delete(f"{PATH}/{hello}", headers=boss)).status_code == 404
        assert (await client.patch(f"{PATH}/{hello}", json={}, headers=boss)).status_code == 404


async def test_refusals_change_nothing(tmp_path: Path) -> None:
    """Agents cannot write, other organizations cannot read, bad bodies are 400."""
    async with livechat_app(tmp_path) as (client, tokens, _hub):
        body = {"shortcut": "ok", "title": "t", "text": "x"}
        assert (await client.post(PATH, json=body, headers=tokens.agent())).status_code == 403
        assert (await client.get(PATH, headers=tokens.agent(org="o2"))).status_code == 403
        assert (await client.get(PATH)).status_code == 401
        for bad, field in (({**body, "shortcut": "Has Space"}, "shortcut"),
                           ({**body, "text": ""}, "text"), ({"title": "t", "text": "x"},
                                                            "shortcut")):
            answer = await client.post(PATH, json=bad, headers=tokens.supervisor())
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["details"]["fields"] == [field]
        assert (await client.get(PATH, headers=tokens.supervisor())).json() == {"items": []}
