"""JSON log lines: shape, bound context fields, extras and exceptions."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lcx.errors import ConfigError
from lcx.logs import (
    JsonFormatter,
    TextFormatter,
    bind,
    bind_global,
    bound_fields,
    configure_logging,
)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def _no_global_fields() -> Iterator[None]:
    yield
    bind_global(instanceId=None)


def record(msg: str = "hello %s", *args: Any, exc: bool = False,
           extra: dict[str, Any] | None = None) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("lcx.test", logging.WARNING, __file__, 1, msg, args or ("you",),
                             exc_info)
    made.__dict__.update(extra or {})
    return made


def test_json_line_has_core_and_bound_fields() -> None:
    """A record renders as one JSON line with ts, level, logger, msg and bound fields."""
    bind_global(instanceId="i-1")
    with bind(requestId="r-1", tenantId="t-1"), bind(conversationId="c-1"):
        line = JsonFormatter().format(record(extra={"durationMs": 1.5}))
    assert "\n" not in line
    entry = json.loads(line)
    assert TS.fullmatch(entry.pop("ts"))
    assert entry == {"level": "warning", "logger": "lcx.test", "msg": "hello you",
                     "instanceId": "i-1", "requestId": "r-1", "tenantId": "t-1",
                     "conversationId": "c-1", "durationMs": 1.5}


def test_exception_is_one_line_with_exc_text() -> None:
    """A record with an exception stays one line and carries the traceback in ``exc``."""
    line = JsonFormatter().format(record(exc=True))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_bind_restores_and_none_unbinds() -> None:
    """Nested bindings win inside, are restored on exit, and None removes a field."""
    with bind(requestId="outer", tenantId="t"):
        with bind(requestId="inner", tenantId=None):
            assert bound_fields() == {"requestId": "inner"}
        assert bound_fields() == {"requestId": "outer", "tenantId": "t"}
    assert bound_fields() == {}


def test_unserializable_extra_is_rendered_as_text() -> None:
    """An extra value JSON cannot encode is written as its str() instead of failing."""
    entry = json.loads(JsonFormatter().format(record(extra={"where": object()})))
    assert entry["where"].startswith("<object object")


def test_text_format_is_readable() -> None:
    """The text formatter writes level, logger, message and key=value fields."""
    with bind(requestId="r-1"):
        line = TextFormatter().format(record())
    assert re.fullmatch(rf"{TS.pattern} warning +lcx\.test: hello you requestId=r-1", line)


def test_configure_logging_installs_one_handler_and_rejects_bad_levels() -> None:
    """configure_logging is idempotent (one lcx handler) and refuses an unknown level."""
    root = logging.getLogger()
    before_handlers, before_level = list(root.handlers), root.level
    try:
        configure_logging("debug", "json")
        configure_logging("info", "text")
        added = [h for h in root.handlers if h not in before_handlers]
        assert len(added) == 1
        assert isinstance(added[0].formatter, TextFormatter)
        assert root.level == logging.INFO
        with pytest.raises(ConfigError, match="verbose"):
            configure_logging("verbose", "json")
    finally:
        root.handlers[:] = before_handlers
        root.setLevel(before_level)
