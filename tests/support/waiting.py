"""Waiting for state that lives in another process (or arrives over a socket)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


async def eventually(check: Callable[[], object], timeout: float = 5.0,
                     interval: float = 0.05) -> None:
    """Return once ``check()`` is truthy; raise ``trio.TooSlowError`` after ``timeout``."""
    with trio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - the state lives in another process: poll it
            await trio.sleep(interval)


async def eventually_async(check: Callable[[], Awaitable[T]], timeout: float = 5.0,
                           interval: float = 0.05) -> T:
    """Return the first truthy result of ``await check()`` (e.g. an HTTP poll of another
    process); raise ``trio.TooSlowError`` after ``timeout``."""
    with trio.fail_after(timeout):
        while not (result := await check()):  # noqa: ASYNC110 - polling another process
            await trio.sleep(interval)
    return result
