"""Nothing acknowledged is lost while instances, Redis and PostgreSQL fail in turn under
load: a short run of the chaos suite (``scripts/chaos.py`` is the long one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_run import ChaosPlan, chaos, table

pytestmark = pytest.mark.slow

SHORT = ChaosPlan(rate=6.0, conversations=6, agents=4, new_request_every=3.0, kills=1,
                  kill_every=5.0, restart_after=3.0, leader_pause=3.0, redis_pause=5.0,
                  partition=3.0, gap=1.5, tail=2.0, settle_timeout=60.0, seed=7)
"""Every fault once, at a load a shared two-core machine carries."""

FAULTS = ["kill", "leader_pause", "redis_restart", "redis_pause", "postgres_restart",
          "partition"]


# callers cut off mid-request (an instance killed or paused under them, a run that ends)
# leave httpx's request streams unfinished; they are collected later with a warning
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_every_acknowledgement_survives_the_faults(tmp_path: Path) -> None:
    """kill -9, a paused leader, Redis restarted and paused, PostgreSQL restarted and the
    leader cut from Redis, one after the other under load: every 202 and every ack is in
    its transcript, reached the other side once, and no request had two agents."""
    result = await chaos(SHORT, tmp_path, say=print, json_path=tmp_path / "chaos.json",
                         logs=tmp_path / "logs")
    report = table(result)
    print(report)
    assert [fault["kind"] for fault in result["faults"]] == FAULTS, report
    assert result["user_messages_acked"] > 0, report
    assert result["lost"] == dict.fromkeys(result["lost"], 0), report
    assert result["agent_messages_acked"] == result["user_messages_acked"], report
