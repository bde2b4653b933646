"""Organization livechat settings (``livechat-settings``): stored, and read through a cache.

The shape and defaults are :mod:`lcx.livechat.settings`."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import trio

from lcx.livechat.settings import DEFAULT_SETTINGS, LivechatSettings
from lcx.model import iso, utc_now
from lcx.store import Store, Tx

__all__ = ["CACHE_SECONDS", "DEFAULT_SETTINGS", "LivechatSettings", "OrgSettings"]


CACHE_SECONDS = 5.0
"""How long an instance trusts its cached copy (another instance may have changed it)."""


def _load(tx: Tx, org_id: str) -> LivechatSettings:
    row = tx.fetchone("SELECT body FROM org_settings WHERE org_id = ?", (org_id,))
    if row is None:
        return DEFAULT_SETTINGS
    return msgspec.json.decode(row["body"], type=LivechatSettings)


class OrgSettings:
    """Reads organization settings through a cache; ``put`` stores and refreshes at once."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._current_store = store
        self._cache: dict[str, tuple[LivechatSettings, float]] = {}
        """Settings by organization, with the time they expire (other instances may change
        them: a cached value is trusted for ``CACHE_SECONDS`` only)."""

    async def get(self, org_id: str) -> LivechatSettings:
        """The organization's settings (defaults when never set)."""
        now = trio.current_time()
        cached = self._cache.get(org_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        loaded = await self._current_store().read(lambda tx: _load(tx, org_id))
        self._cache[org_id] = (loaded, now + CACHE_SECONDS)
        return loaded

    async def put(self, org_id: str, settings: LivechatSettings) -> None:
        """Replace the organization's settings, durably, and use them from now on."""
        body = msgspec.json.encode(settings).decode()
        now = iso(utc_now())

        def write(tx: Tx) -> None:
            tx.execute("INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (org_id) DO UPDATE SET body = excluded.body, "
                       "updated_at = excluded.updated_at", (org_id, body, now))

        await self._current_store().transaction(write)
        self._cache[org_id] = (settings, trio.current_time() + CACHE_SECONDS)

    def forget(self, org_id: str) -> None:
        """Drop the cached value (after the store changed behind our back)."""
        self._cache.pop(org_id, None)
