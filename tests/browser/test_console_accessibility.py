"""axe-core (vendored in vendor/) finds no serious or critical violation in the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser_env import ConsoleEnv
from playwright.sync_api import Page, expect

AXE = Path(__file__).with_name("vendor") / "axe.min.js"


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe on the page; the serious and critical violations (id, help, targets)."""
    page.add_script_tag(content=AXE.read_text())
    results: dict[str, Any] = page.evaluate("() => axe.run(document)")
    return [{"id": v["id"], "help": v["help"], "targets": [n["target"] for n in v["nodes"]]}
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def test_no_serious_or_critical_violation_signed_out_working_history_and_supervising(
        console: ConsoleEnv) -> None:
    # axe is injected as an inline script: these contexts bypass the console's CSP
    context = console.browser.new_context(bypass_csp=True)
    console.contexts.append(context)
    signed_out = context.new_page()
    console.pages.append(signed_out)
    signed_out.goto(f"{console.url}/console/")
    expect(signed_out.get_by_role("textbox", name="Access token")).to_be_visible()
    assert serious_violations(signed_out) == []

    console.supervisor_send("POST", "/organizations/o1/canned-responses",
                            {"shortcut": "hi", "title": "Hi", "text": "Hello!"})
    page = console.open_console("alice", bypass_csp=True)
    console.create_request("u-a11y", "Ali", subscriber={"email": "ali@example.com",
                                                        "custom": {"plan": "gold"}})
    page.get_by_role("region", name="Queue").get_by_role("button", name="Accept").click()
    console.bot_says("u-a11y", "b-1", "hello")
    expect(page.get_by_role("log", name="Messages")).to_contain_text("hello")
    page.get_by_role("textbox", name="Message").fill("/")
    expect(page.get_by_role("listbox", name="Canned responses")).to_be_visible()
    assert serious_violations(page) == []

    supervisor = console.open_console("sue", scope="supervisor", bypass_csp=True)
    supervisor.get_by_role("button", name="Supervisor").click()
    expect(supervisor.get_by_role("table", name="Queues").get_by_role("row")).not_to_have_count(1)
    assert serious_violations(supervisor) == []
    supervisor.get_by_role("button", name="Manage").click()
    assert serious_violations(supervisor) == []

    # the agent's history, with a row and its download buttons
    ended = console.http.delete("/sessions/tenants/t1/subscribers/u-a11y",
                                headers=console.bearer())
    assert ended.status_code == 204, ended.text
    expect(page.get_by_role("region", name="Conversation", exact=True)).to_contain_text(
        "This conversation has ended.")
    page.get_by_role("button", name="History").click()
    expect(page.get_by_role("region", name="History").get_by_role(
        "button", name="PDF Ali")).to_be_visible()
    assert serious_violations(page) == []
