"""The real ``lcx serve`` process: ops routes, error envelope, signals, config errors."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.lcx_process import LcxProcess, basic_config


@pytest.fixture
def lcx(tmp_path: Path) -> LcxProcess:
    return LcxProcess(tmp_path, basic_config(tmp_path))


def test_serve_answers_ops_routes_and_stops_on_sigterm(lcx: LcxProcess,
                                                       tmp_path: Path) -> None:
    """healthz, readyz, metrics and an unknown path answer; SIGTERM exits 0 promptly."""
    with lcx:
        with httpx.Client(base_url=lcx.url, timeout=5) as client:
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert health.headers["x-request-id"]
            ready = client.get("/readyz")
            assert ready.status_code == 200
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            # every service and keyed supervisor of the tree is counted while it runs
            assert re.search(r'lcx_actors_live\{kind="service"\} [1-9]', metrics.text)
            assert re.search(r'lcx_actors_live\{kind="supervisor"\} [1-9]', metrics.text)
            assert "lcx_mailbox_depth" in metrics.text or "lcx_actor_restarts" in metrics.text
            assert 'lcx_http_requests_total{method="GET",route="/healthz",status="200"}' \
                in metrics.text
            missing = client.get("/no/such/path", headers={"X-Request-Id": "abc-123"})
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "not_found"
            assert missing.headers["x-request-id"] == "abc-123"
            wrong_method = client.delete("/healthz")
            assert wrong_method.status_code == 405
            assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        began = time.monotonic()
        assert lcx.stop(signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - began < 5
    assert (tmp_path / "lcx.db").exists()
    messages = [json.loads(line)["msg"] for line in lcx.log().splitlines()
                if line.startswith("{")]
    assert "shutting down" in messages
    assert messages[-1] == "lcx stopped"


def test_serve_stops_on_sigint_with_exit_code_zero(lcx: LcxProcess) -> None:
    """SIGINT (Ctrl-C) is a graceful stop too."""
    with lcx:
        assert lcx.stop(signal.SIGINT, timeout=10) == 0


def test_serve_runs_on_embedded_defaults_without_a_config(tmp_path: Path) -> None:
    """With no config file lcx listens on 127.0.0.1:8080 and creates ./lcx.db, migrated."""
    import socket
    import sqlite3

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("127.0.0.1:8080 is in use on this machine")
    with LcxProcess(tmp_path, None) as lcx:
        assert lcx.url == "http://127.0.0.1:8080"
        assert httpx.get(f"{lcx.url}/readyz", timeout=5).status_code == 200
        assert lcx.stop(signal.SIGTERM, timeout=10) == 0
    db = sqlite3.connect(tmp_path / "lcx.db")
    try:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    finally:
        db.close()
    assert versions
    assert versions == sorted(versions)


def test_bad_config_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    """An unknown key makes lcx serve exit 2 with a message naming it."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 8080\n")
    result = subprocess.run([sys.executable, "-m", "lcx", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=30, env=_base_env(),
                            check=False)
    assert result.returncode == 2
    assert "server.prot: unknown key" in result.stderr


def _base_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "LCX_CONFIG"}
