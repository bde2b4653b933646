"""The presence book counts online agents per organization and per group as it hears
them: the count is the one a scan of every entry would give, through status changes,
offline, several groups, repeated announcements and entries expiring unrefreshed."""

from __future__ import annotations

import random

from actors.presence import PRESENCE_TTL_SECONDS, Presence, PresenceBook
from lcx.cluster.local_bus import LocalBus

ORGS = ("o1", "o2")
GROUPS = ("g1", "g2", "g3")


def scanned(book: PresenceBook, org: str, group: str | None) -> int:
    """The count by looking at every entry, the way it was computed before."""
    return sum(1 for (o, _), p in book.current().items()
               if o == org and p.status == "online" and (group is None or group in p.groups))


def test_online_counts_match_a_scan_through_any_mix_of_presence_changes() -> None:
    """1,500 seeded announcements (online, away, offline, one or more groups, a group
    repeated) with time moving on so that some expire: after each, every (org, group)
    count equals a scan."""
    rng = random.Random(20261203)
    now = [0.0]
    book = PresenceBook(LocalBus("solo"), clock=lambda: now[0])
    for _ in range(1500):
        now[0] += rng.choice((0.0, 0.2, 1.5, PRESENCE_TTL_SECONDS / 4))
        groups = tuple(rng.choice(GROUPS) for _ in range(rng.randint(0, 3)))
        book.announce(Presence(org_id=rng.choice(ORGS), agent_id=f"a{rng.randint(0, 30)}",
                               status=rng.choice(("online", "online", "away", "offline")),
                               groups=groups))
        for org in ORGS:
            for group in (None, *GROUPS):
                assert book.online(org, group) == scanned(book, org, group), (org, group)
