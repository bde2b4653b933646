"""``bench_relay.py --reference`` starts its own server: it refuses the flags that name
another one, and the reference's command line carries the bench's secrets and tenant."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_relay import parse_arguments
from benchkit import JWT_SECRET, TENANT, WEBHOOK_SECRET
from reference_server import REFERENCES, node_command


def test_reference_node_is_accepted_alone() -> None:
    arguments = parse_arguments(["--reference", "node", "--rates", "200", "--seconds", "20"])
    assert arguments.reference == "node"
    assert arguments.rates == [200.0]


def test_without_reference_lcx_is_measured() -> None:
    assert parse_arguments([]).reference is None


@pytest.mark.parametrize("flags", [["--base-url", "http://127.0.0.1:8080"], ["--pid", "1"],
                                   ["--cluster", "2"], ["--lcx-root", "/tmp/old"]])
def test_reference_refuses_another_server(flags: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["--reference", "node", *flags])
    assert exited.value.code == 2
    assert f"drop {flags[0]}" in capsys.readouterr().err


def test_an_unknown_reference_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--reference", "go"])


def test_the_node_command_carries_the_bench_secrets(tmp_path: Path) -> None:
    command = node_command(REFERENCES["node"], tmp_path / "relay.db", 9123)
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert command[1].endswith("scripts/reference/node_relay/server.js")
    assert options["--jwt-secret"] == JWT_SECRET
    assert options["--webhook-secret"] == WEBHOOK_SECRET
    assert options["--tenant"] == TENANT
    assert options["--bot-url"] == "http://127.0.0.1:9123/livechat-events"
    assert options["--db"] == str(tmp_path / "relay.db")
