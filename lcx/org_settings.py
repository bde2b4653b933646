"""Organization livechat settings (``livechat-settings``): shape, defaults, store, cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from lcx.model import iso, utc_now
from lcx.store import Store, Tx


class LivechatSettings(msgspec.Struct, rename="camel", kw_only=True, frozen=True,
                       forbid_unknown_fields=True):
    """How an organization's livechat behaves; the defaults apply until it is changed."""

    routing: Literal["broadcast", "auto"] = "broadcast"
    max_concurrent_chats: int = 3
    request_timeout_seconds: int = 120
    inactivity_timeout_seconds: int = 900
    reject_when_unavailable: bool = False
    end_on_last_leave: bool = True
    retention_days: int = 365
    greeting: str | None = None

    def problems(self) -> list[str]:
        """The fields whose values are out of range (empty when valid)."""
        limits = {"maxConcurrentChats": (self.max_concurrent_chats, 1, 1000),
                  "requestTimeoutSeconds": (self.request_timeout_seconds, 1, 86_400 * 7),
                  "inactivityTimeoutSeconds": (self.inactivity_timeout_seconds, 1, 86_400 * 30),
                  "retentionDays": (self.retention_days, 1, 36_500)}
        bad = [name for name, (value, low, high) in limits.items() if not low <= value <= high]
        if self.greeting is not None and len(self.greeting) > 2000:
            bad.append("greeting")
        return bad


DEFAULT_SETTINGS = LivechatSettings()


def _load(tx: Tx, org_id: str) -> LivechatSettings:
    row = tx.fetchone("SELECT body FROM org_settings WHERE org_id = ?", (org_id,))
    if row is None:
        return DEFAULT_SETTINGS
    return msgspec.json.decode(row["body"], type=LivechatSettings)


class OrgSettings:
    """Reads organization settings through a cache; ``put`` stores and refreshes at once."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._current_store = store
        self._cache: dict[str, LivechatSettings] = {}

    async def get(self, org_id: str) -> LivechatSettings:
        """The organization's settings (defaults when never set)."""
        cached = self._cache.get(org_id)
        if cached is None:
            cached = await self._current_store().read(lambda tx: _load(tx, org_id))
            self._cache[org_id] = cached
        return cached

    async def put(self, org_id: str, settings: LivechatSettings) -> None:
        """Replace the organization's settings, durably, and use them from now on."""
        body = msgspec.json.encode(settings).decode()
        now = iso(utc_now())

        def write(tx: Tx) -> None:
            tx.execute("INSERT INTO org_settings (org_id, body, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (org_id) DO UPDATE SET body = excluded.body, "
                       "updated_at = excluded.updated_at", (org_id, body, now))

        await self._current_store().transaction(write)
        self._cache[org_id] = settings

    def forget(self, org_id: str) -> None:
        """Drop the cached value (after the store changed behind our back)."""
        self._cache.pop(org_id, None)
