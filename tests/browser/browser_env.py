"""The browser-test environment: a real ``lcx serve``, the fake bot as a process, Chromium.

:class:`ConsoleEnv` runs both processes on loopback, mints tokens, speaks the bot and
management APIs over HTTP (``httpx``) and opens console pages in their own browser
contexts (one per agent, like separate browsers).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect
from support.lcx_process import LcxProcess

from lcx.auth import mint_token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
JWT_SECRET = "browser-tests-jwt-secret-with-more-than-32-bytes"
WEBHOOK_SECRET = "browser-webhook-secret"
ORG = "o1"
TESTS_DIR = Path(__file__).resolve().parent.parent
TIMEOUT_MS = 10_000
"""How long an expectation waits for the page (the conditions are met in well under 1 s
on a quiet machine; the margin is for a loaded CI)."""


NOTIFY_STUBS = """
(() => {
  // Headless Chromium has no audible output, no notification permission prompt and a tab
  // that is always visible: these stubs record what the console asks of them instead.
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", { get: () => hidden });
  Object.defineProperty(Document.prototype, "visibilityState",
    { get: () => (hidden ? "hidden" : "visible") });
  window.__lcxSetHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__lcxTones = [];
  window.__lcxNotifications = [];
  window.__lcxPermissionAsked = 0;
  class FakeNotification {
    constructor(title, options) {
      window.__lcxNotifications.push({ title, body: (options || {}).body || "" });
    }
    static requestPermission() {
      window.__lcxPermissionAsked += 1;
      FakeNotification.permission = window.__lcxPermissionAnswer || "granted";
      return Promise.resolve(FakeNotification.permission);
    }
  }
  FakeNotification.permission = "default";
  window.Notification = FakeNotification;
  class FakeAudioContext {
    constructor() { this.state = "suspended"; this.currentTime = 0; this.destination = {}; }
    resume() { this.state = "running"; return Promise.resolve(); }
    createOscillator() {
      const node = { frequency: {}, connect: (next) => next,
        start: () => window.__lcxTones.push(node.frequency.value), stop: () => {} };
      return node;
    }
    createGain() {
      return { gain: { setValueAtTime() {}, exponentialRampToValueAtTime() {} },
        connect: (next) => next };
    }
  }
  window.AudioContext = FakeAudioContext;
})();
"""
"""An init script for :meth:`ConsoleEnv.open_console`: ``document.hidden`` switched by
``window.__lcxSetHidden(bool)``, and ``Notification`` / ``AudioContext`` stand-ins that
record notifications shown (``__lcxNotifications``) and tones started (``__lcxTones``); the
permission asked for is granted unless ``window.__lcxPermissionAnswer`` says otherwise."""


def free_port() -> int:
    """A TCP port nobody listens on now (lcx must know it up front for public_url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class FakeBotProcess:
    """``python -m fakes.bot`` as a child process; what it received is read over HTTP."""

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "fake-bot.log"
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> FakeBotProcess:
        """Start it and wait until it prints its URL."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(TESTS_DIR), str(TESTS_DIR.parent), os.environ.get("PYTHONPATH", "")])}
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fakes.bot", "--port", "0", "--secret", WEBHOOK_SECRET],
                cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + 20
        prefix = "fake bot listening on "
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith(prefix):
                    self.base_url = line[len(prefix):].strip()
                    return self
                if not line:
                    break
        raise RuntimeError(f"the fake bot did not start:\n{self.log_path.read_text()}")

    @property
    def events_url(self) -> str:
        """The URL to configure as the tenant's ``bot_events_url``."""
        return self.base_url + "/livechat-events"

    def events(self) -> list[dict[str, Any]]:
        """Every event body received so far, in arrival order (signature checked)."""
        listed = httpx.get(self.base_url + "/_fake/received", timeout=5).json()
        assert all(entry["signatureValid"] for entry in listed), listed
        return [json.loads(entry["body"]) for entry in listed]

    def stop(self) -> None:
        """Terminate the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


def lcx_config(workdir: Path, port: int, bot_url: str, *, heartbeat_seconds: int = 30,
               extra: str = "") -> str:
    """One instance on ``port`` (``public_url`` matching), tenant t1 of o1 (group g1);
    ``extra`` is appended (more tenants)."""
    return f"""
[server]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
shutdown_timeout_seconds = 5

[store]
url = "sqlite:///{workdir}/lcx.db"

[log]
level = "info"
format = "json"

[auth]
jwt_secret = "{JWT_SECRET}"

[attachments]
dir = "{workdir}/attachments"

[delivery]
initial_backoff_ms = 50
max_backoff_ms = 400

[ws]
heartbeat_seconds = {heartbeat_seconds}

[[tenants]]
id = "t1"
organization_id = "{ORG}"
default_user_group = "g1"
bot_events_url = "{bot_url}"
webhook_secret = "{WEBHOOK_SECRET}"
{extra}"""


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """The first truthy ``check()``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class ConsoleEnv:
    """A running lcx with a fake bot, and the browser to open consoles in."""

    def __init__(self, lcx: LcxProcess, bot: FakeBotProcess, browser: Browser) -> None:
        self.lcx = lcx
        self.bot = bot
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []
        self.http = httpx.Client(base_url=lcx.url, timeout=10)

    @property
    def url(self) -> str:
        """lcx's base URL."""
        return self.lcx.url

    def token(self, sub: str, *, scope: str = "agent", groups: tuple[str, ...] = ("g1",),
              name: str | None = None) -> str:
        """A token of o1 signed with lcx's secret."""
        return mint_token(JWT_SECRET, sub=sub, org=ORG, scopes=scope, groups=list(groups),
                          name=name or sub.capitalize())

    def bearer(self, sub: str = "bot-1", scope: str = "bot") -> dict[str, str]:
        """An Authorization header."""
        return {"Authorization": f"Bearer {self.token(sub, scope=scope)}"}

    def open_console(self, sub: str, *, scope: str = "agent", locale: str = "en-US",
                     name: str | None = None, bypass_csp: bool = False,
                     groups: tuple[str, ...] = ("g1",),
                     init_script: str | None = None) -> Page:
        """A signed-in console page of a new agent (its own browser context), connected.

        ``init_script`` runs in every document before the console's own scripts
        (e.g. :data:`NOTIFY_STUBS`).
        """
        context = self.browser.new_context(locale=locale, bypass_csp=bypass_csp,
                                           viewport={"width": 1400, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        if init_script is not None:
            context.add_init_script(init_script)
        self.contexts.append(context)
        page = context.new_page()
        self.pages.append(page)
        token = self.token(sub, scope=scope, name=name, groups=groups)
        page.goto(f"{self.url}/console/?token={token}")
        expect(page.get_by_role("status").filter(has_text="Connected")
               .or_(page.get_by_role("status").filter(has_text="Συνδεδεμένος"))).to_be_visible()
        return page

    # --- the bot's side ------------------------------------------------------------------

    def create_request(self, sub_handle: str, name: str, **body: Any) -> dict[str, Any]:
        """POST /requests for t1 as the bot; the 201 body."""
        response = self.http.post("/requests", headers=self.bearer(), json={
            "tenantId": "t1", "subHandle": sub_handle,
            "subscriber": {"name": name, **body.pop("subscriber", {})}, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def bot_says(self, sub_handle: str, message_id: str, text: str) -> dict[str, Any]:
        """POST /messages as the bot; the 202 body."""
        response = self.http.post("/messages", headers=self.bearer(), json={
            "tenantId": "t1", "subHandle": sub_handle, "id": message_id, "type": "text",
            "text": text})
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        return accepted

    def events_of(self, conversation_id: str) -> list[dict[str, Any]]:
        """The events the bot got for one conversation."""
        return [e for e in self.bot.events() if e.get("conversationId") == conversation_id]

    def supervisor_get(self, path: str) -> Any:
        """GET a management path as a supervisor; the JSON body."""
        response = self.http.get(path, headers=self.bearer("sue", "supervisor"))
        assert response.status_code == 200, response.text
        return response.json()

    def supervisor_send(self, method: str, path: str, body: Any) -> Any:
        """A management write as a supervisor; the JSON body."""
        response = self.http.request(method, path, json=body,
                                     headers=self.bearer("sue", "supervisor"))
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def close(self) -> None:
        """Close the pages' contexts and the HTTP client (the processes are the fixture's)."""
        for context in self.contexts:
            context.close()
        self.http.close()
