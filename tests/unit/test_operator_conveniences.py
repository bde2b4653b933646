"""Small things operators rely on: ``lcx --version``, and libraries that stay quiet."""

from __future__ import annotations

import logging

import pytest

from lcx.cli import main
from lcx.logs import configure_logging
from lcx.version import lcx_version


def test_version_option_prints_the_installed_version(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """``lcx --version`` prints ``lcx <version>`` and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"lcx {lcx_version()}"


@pytest.mark.parametrize("library", ["httpx", "httpcore"])
def test_http_client_logs_only_warnings_unless_debugging(library: str) -> None:
    """httpx's line per request is hidden at info level and shown at debug level."""
    logger = logging.getLogger(library)
    before = logger.level
    try:
        configure_logging("info", "json")
        assert not logger.isEnabledFor(logging.INFO)
        assert logger.isEnabledFor(logging.WARNING)
        configure_logging("debug", "json")
        assert logger.isEnabledFor(logging.INFO)
        configure_logging("error", "json")
        assert not logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(before)
        configure_logging("info", "json")
