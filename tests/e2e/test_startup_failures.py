"""Failures a restart cannot cure stop ``lcx serve`` at once: one line on stderr naming
the cause, an exit code of its own, no traceback, no restart attempts, nothing served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.lcx_process import basic_config

from lcx.startup import EXIT_BIND, EXIT_KEY_FILE, EXIT_STORE

EXIT_CONFIG = 2


def serve(workdir: Path, config: str) -> subprocess.CompletedProcess[str]:
    """Run ``lcx serve`` on ``config`` until it exits by itself."""
    path = workdir / "lcx.toml"
    path.write_text(config)
    env = {key: value for key, value in os.environ.items() if key != "LCX_CONFIG"}
    return subprocess.run([sys.executable, "-m", "lcx", "serve", "--config", str(path)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int,
                            *causes: str) -> None:
    """Exit ``code``, nothing on stdout (never "listening"), one stderr line naming it."""
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for cause in causes:
        assert cause in lines[0]


def with_store(workdir: Path, url: str) -> str:
    return basic_config(workdir).replace(f'url = "sqlite:///{workdir}/lcx.db"', f'url = "{url}"')


def test_a_port_in_use_stops_start_up_at_once(tmp_path: Path) -> None:
    """Another process listens on the port: exit 3, no restart loop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = basic_config(tmp_path).replace("port = 0", f"port = {port}")
        result = serve(tmp_path, config)
    assert_one_line_failure(result, EXIT_BIND, f"127.0.0.1:{port}", "already in use")
    assert result.stderr.startswith("lcx: cannot start: server.port:")


def test_an_address_that_is_not_local_stops_start_up(tmp_path: Path) -> None:
    """A host this machine does not have cannot be listened on either (exit 3)."""
    config = basic_config(tmp_path).replace('host = "127.0.0.1"', 'host = "192.0.2.1"')
    config = config.replace("port = 0", "port = 8089")
    assert_one_line_failure(serve(tmp_path, config), EXIT_BIND, "192.0.2.1:8089")


def test_an_unsupported_store_is_a_configuration_error(tmp_path: Path) -> None:
    """mysql:// is refused with the configuration, before anything starts (exit 2)."""
    result = serve(tmp_path, with_store(tmp_path, "mysql://lcx:pw@db.internal/lcx"))
    assert_one_line_failure(result, EXIT_CONFIG, "store.url:", "mysql://")
    assert "pw" not in result.stderr


def test_an_unreachable_postgresql_store_stops_start_up(tmp_path: Path) -> None:
    """Nothing listens where the store should be: exit 4, the password never shown."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = serve(tmp_path, with_store(tmp_path, f"postgresql://lcx:pw@127.0.0.1:{port}/lcx"))
    assert_one_line_failure(result, EXIT_STORE, "store.url:", f"127.0.0.1:{port}")
    assert ":pw@" not in result.stderr


def test_a_sqlite_store_that_cannot_be_created_stops_start_up(tmp_path: Path) -> None:
    """The SQLite file's directory cannot be made (a file is in the way): exit 4."""
    (tmp_path / "a-file").write_text("")
    result = serve(tmp_path, with_store(tmp_path, f"sqlite:///{tmp_path}/a-file/lcx.db"))
    assert_one_line_failure(result, EXIT_STORE, "store.url:")


@pytest.mark.parametrize(("content", "cause"), [
    (None, "cannot read"),
    ("not a key\n", "is not a PEM public key"),
])
def test_a_bad_key_file_stops_start_up(tmp_path: Path, content: str | None,
                                       cause: str) -> None:
    """A key file that is missing or holds no public key: exit 5."""
    key = tmp_path / "jwt.pem"
    if content is not None:
        key.write_text(content)
    config = basic_config(tmp_path, extra=f'[auth]\njwt_public_key_file = "{key}"\n')
    assert_one_line_failure(serve(tmp_path, config), EXIT_KEY_FILE,
                            "auth.jwt_public_key_file:", cause)
