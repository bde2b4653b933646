"""``lcx status``: the cluster as one instance sees it (``GET /cluster``), as a table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from lcx.auth import dev_secret_dir, mint_token, resolve_secret
from lcx.config import load_settings, resolve_config_path


def add_status_parser(commands: Any) -> None:
    """Register ``lcx status``."""
    status = commands.add_parser("status", help="show the cluster: members, leader, bus")
    status.add_argument("--config", help="configuration file (default: $LCX_CONFIG)")
    status.add_argument("--url", help="an instance's base URL (default: server.public_url)")
    status.add_argument("--token", help="a service or admin token (default: minted with "
                                        "the configured HS256 secret)")


def status_command(args: argparse.Namespace) -> int:
    """Print the cluster status; 1 when the instance cannot be reached."""
    settings = load_settings(resolve_config_path(args.config))
    url = (args.url or settings.server.public_url).rstrip("/")
    token = args.token or mint_token(resolve_secret(settings.auth, dev_secret_dir()),
                                     sub="lcx-status", org=None, scopes="admin",
                                     ttl_seconds=60, issuer=settings.auth.issuer,
                                     audience=settings.auth.audience)
    try:
        response = httpx.get(f"{url}/cluster", headers={"Authorization": f"Bearer {token}"},
                             timeout=10)
    except httpx.HTTPError as exc:
        print(f"lcx status: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"lcx status: {url} answered {response.status_code}: {response.text}",
              file=sys.stderr)
        return 1
    print(render(response.json()))
    return 0


def render(view: dict[str, Any]) -> str:
    """The ``GET /cluster`` document as a table."""
    leader = view.get("leader") or {}
    rtt = view["bus"]["rttMs"]
    lines = [f"seen from {view['instanceId']}; leader {leader.get('instanceId', '-')} "
             f"(term {leader.get('term', '-')}); bus rtt "
             f"{'-' if rtt is None else f'{rtt:.2f} ms'}", "",
             f"{'instance':<24} {'role':<8} {'state':<9} {'last heartbeat':<26} actors"]
    for member in view["members"]:
        role = "leader" if member["instanceId"] == leader.get("instanceId") else "member"
        state = "draining" if member["draining"] else "serving"
        actors = ", ".join(f"{kind}={n}" for kind, n in sorted(member["actors"].items()))
        lines.append(f"{member['instanceId']:<24} {role:<8} {state:<9} "
                     f"{member['lastHeartbeatAt']:<26} {actors or '-'}")
    return "\n".join(lines)
