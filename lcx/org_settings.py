"""Organization livechat settings (``livechat-settings``): shape, defaults, store, cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
import trio
from msgspec import Meta

from lcx.model import iso, utc_now
from lcx.store import Store, Tx


class LivechatSettings(msgspec.Struct, rename="camel", kw_only=True, frozen=True,
                       forbid_unknown_fields=True):
    """How an organization's livechat behaves; the defaults apply until it is changed."""

    routing: Literal["broadcast", "auto"] = "broadcast"
    max_concurrent_chats: Annotated[int, Meta(ge=1, le=1000)] = 3
    request_timeout_seconds: Annotated[int, Meta(ge=1, le=7 * 86_400)] = 120
    inactivity_timeout_seconds: Annotated[int, Meta(ge=1, le=30 * 86_400)] = 900
    reject_when_unavailable: bool = False
    end_on_last_leave: bool = True
    retention_days: Annotated[int, Meta(ge=1, le=36_500)] = 365
    greeting: Annotated[str, Meta(max_length=2000)] | None = None


DEFAULT_SETTINGS = LivechatSettings()
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
