"""Browser tests: a real ``lcx serve`` and fake bot, driven through Debian's Chromium.

Chromium is launched once per session (``/usr/bin/chromium`` with the flags CI needs);
every test gets its own lcx and fake bot processes and its own browser contexts. When a
test fails, a screenshot of each of its pages is saved under ``.artifacts/browser/``
(and its path printed with the report).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_env import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    ConsoleEnv,
    FakeBotProcess,
    free_port,
    lcx_config,
)
from playwright.sync_api import Browser, Playwright, sync_playwright
from support.lcx_process import LcxProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                          headless=True)
    yield launched
    launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def console(request: pytest.FixtureRequest, tmp_path: Path, browser: Browser
            ) -> Iterator[ConsoleEnv]:
    bot = FakeBotProcess(tmp_path).start()
    # a test module may add to the configuration (e.g. a channel's tenant)
    extra = getattr(request.module, "LCX_EXTRA_CONFIG", "")
    lcx = LcxProcess(tmp_path, lcx_config(tmp_path, free_port(), bot.events_url,
                                          extra=extra))
    env: ConsoleEnv | None = None
    try:
        lcx.start()
        env = ConsoleEnv(lcx, bot, browser)
        yield env
    finally:
        if env is not None:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                _screenshots(request.node.name, env)
            env.close()
        lcx.kill()
        bot.stop()


def _screenshots(test_name: str, env: ConsoleEnv) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index, page in enumerate(env.pages):
        path = ARTIFACTS / f"{test_name}-{index}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"screenshot of page {index} failed: {exc}")
        else:
            print(f"screenshot: {path}")
