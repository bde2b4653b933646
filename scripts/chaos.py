"""The chaos suite: nothing acknowledged is lost while instances, Redis and PostgreSQL
fail in turn under load.

Starts a private redis-server, a private PostgreSQL server (initdb into a temporary
directory), a fake bot and three real ``lcx serve`` instances (heartbeat 200 ms, lease
1.2 s), each reaching Redis through a TCP proxy of this process. Under a steady load of
message pairs (a bot posting user messages to any instance, agents on websockets spread
over the instances answering each; new requests raced by two agents), it injects in turn:
kill -9 of a random instance every 10 s (restarted after 3 s), SIGSTOP of the leader,
Redis restarted, Redis paused, PostgreSQL restarted, the leader cut from Redis. Then it
accounts for every 202 and every ack (see tests/cluster/chaos_run.py), prints a table of
the faults and of what was lost, and writes the figures as JSON.

Run: ``.venv/bin/python scripts/chaos.py [--rate 100] [--kills 3] [--json chaos.json]``
(needs redis-server and the PostgreSQL server binaries, as the test suite does). Exits 1
when anything was lost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "cluster")]

from chaos_run import ChaosPlan, chaos, table  # noqa: E402


async def main(plan: ChaosPlan, json_path: Path, logs: Path | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = await chaos(plan, Path(tmp), json_path=json_path, logs=logs)
    print(table(result))
    print(f"figures written to {json_path}")
    return 1 if any(result["lost"].values()) else 0


if __name__ == "__main__":
    defaults = ChaosPlan()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=defaults.rate,
                        help="message pairs a second")
    parser.add_argument("--conversations", type=int, default=defaults.conversations)
    parser.add_argument("--agents", type=int, default=defaults.agents)
    parser.add_argument("--kills", type=int, default=defaults.kills,
                        help="kill -9 of a random instance, one every 10 s")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, default=Path("chaos.json"),
                        help="where to write the figures")
    parser.add_argument("--logs", type=Path, default=None,
                        help="a directory to copy the instances' logs into")
    arguments = parser.parse_args()
    chosen = ChaosPlan(rate=arguments.rate, conversations=arguments.conversations,
                       agents=arguments.agents, kills=arguments.kills, seed=arguments.seed)
    sys.exit(trio.run(main, chosen, arguments.json, arguments.logs))
