"""Waiting for state that lives in another process (or arrives over a socket)."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def eventually(check: Callable[[], object], timeout: float = 5.0,
                     interval: float = 0.05) -> None:
    """Return once ``check()`` is truthy; raise ``trio.TooSlowError`` after ``timeout``."""
    with trio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - the state lives in another process: poll it
            await trio.sleep(interval)
