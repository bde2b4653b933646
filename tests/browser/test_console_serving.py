"""How lcx serves the console: URL printed, sign-in URL from ``lcx token --console``,
caching headers, a same-origin-only CSP, and nothing but the console's own files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from browser_env import ConsoleEnv
from playwright.sync_api import expect

from lcx.api.console import STATIC_DIR


def test_serve_prints_the_console_url(console: ConsoleEnv) -> None:
    assert console.lcx.process is not None
    assert console.lcx.process.stdout is not None
    line = console.lcx.process.stdout.readline().strip()
    assert line == f"agent console: {console.url}/console/"


def test_token_console_prints_a_sign_in_url_that_signs_in(console: ConsoleEnv,
                                                          tmp_path: Path) -> None:
    assert console.lcx.config_path is not None
    printed = subprocess.run(
        [sys.executable, "-m", "lcx", "token", "--scope", "agent", "--org", "o1", "--sub",
         "carol", "--groups", "g1", "--name", "Carol", "--console",
         "--config", str(console.lcx.config_path)],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert printed.startswith(f"{console.url}/console/?token=ey")
    context = console.browser.new_context()
    console.contexts.append(context)
    page = context.new_page()
    console.pages.append(page)
    page.goto(printed)
    expect(page.get_by_role("status")).to_have_text("Connected")
    assert "token" not in page.url  # the token leaves the address bar
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")


def test_the_site_root_leads_to_the_console_and_signs_in(console: ConsoleEnv) -> None:
    """``/`` answers 302 to ``/console/`` (query kept), so ``/?token=`` signs in."""
    answer = console.http.get("/?token=abc")
    assert (answer.status_code, answer.headers["location"]) == (302, "/console/?token=abc")
    context = console.browser.new_context()
    console.contexts.append(context)
    page = context.new_page()
    console.pages.append(page)
    page.goto(f"{console.url}/?token={console.token('dan')}")
    expect(page.get_by_role("status")).to_have_text("Connected")
    assert page.url == f"{console.url}/console/"


def test_sign_in_form_and_a_refused_token(console: ConsoleEnv) -> None:
    context = console.browser.new_context()
    console.contexts.append(context)
    page = context.new_page()
    console.pages.append(page)
    page.goto(f"{console.url}/console")
    assert page.url == f"{console.url}/console/"
    page.get_by_role("textbox", name="Access token").fill(console.token("dan")[:-4] + "AAAA")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="refused")).to_be_visible()
    page.get_by_role("textbox", name="Access token").fill(console.token("dan"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_have_text("Connected")


def test_caching_headers_csp_and_unknown_files(console: ConsoleEnv) -> None:
    first = console.http.get("/console/")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/html; charset=utf-8"
    assert first.headers["cache-control"] == "no-cache"
    policy = first.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "http" not in policy.replace(console.url, "")  # no host but lcx's own
    again = console.http.get("/console/", headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    script = console.http.get("/console/app.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.content == (STATIC_DIR / "app.js").read_bytes()
    for missing in ("/console/nope.js", "/console/../pyproject.toml", "/console/a/b.js"):
        answer = console.http.get(missing)
        assert answer.status_code == 404, missing
        assert answer.json()["error"]["code"] == "not_found"


def test_the_console_loads_nothing_from_another_host(console: ConsoleEnv) -> None:
    page = console.open_console("erin")
    hosts = page.evaluate("() => performance.getEntriesByType('resource')"
                          ".map(e => new URL(e.name).host)")
    assert set(hosts) <= {console.url.removeprefix("http://")}
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text, path.name
        assert "https://" not in text, path.name
