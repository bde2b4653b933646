"""Organization settings are cached briefly: another instance's change is seen within
CACHE_SECONDS, and our own change at once."""

from __future__ import annotations

from pathlib import Path

import trio

from lcx.org_settings import CACHE_SECONDS, LivechatSettings, OrgSettings
from lcx.store import Tx, open_store


async def test_a_change_made_elsewhere_is_seen_after_the_cache_expires(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Instance B's cached settings give way to instance A's write after CACHE_SECONDS."""
    async with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        here, there = OrgSettings(lambda: store), OrgSettings(lambda: store)
        assert (await there.get("o1")).routing == "broadcast"
        await here.put("o1", LivechatSettings(routing="auto"))
        assert (await here.get("o1")).routing == "auto"
        assert (await there.get("o1")).routing == "broadcast"  # still cached
        await trio.sleep(CACHE_SECONDS + 0.1)
        assert (await there.get("o1")).routing == "auto"

        def count(tx: Tx) -> int:
            row = tx.fetchone("SELECT count(*) AS n FROM org_settings")
            return 0 if row is None else int(row["n"])

        assert await store.read(count) == 1
