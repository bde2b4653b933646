"""The demo lcx runs when it is given no configuration file.

With no ``--config`` and no ``LCX_CONFIG``, :func:`demo_settings` adds to the embedded
defaults one organization ``demo`` with one tenant ``demo`` served by lcx's own agents
(user group ``support``), whose bot events go to lcx itself: the customer simulator at
``/console/try`` (:mod:`lcx.api.demo`) receives them, checks their signature and shows them
as the bot would see them. :func:`welcome` is what ``lcx serve`` prints once it listens:
ready sign-in URLs for a demo agent and a supervisor, and the simulator's URL.

Nothing of this exists when a configuration file is given, however empty: the demo is a
first run, never a mode a deployment can switch on.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import msgspec

from lcx.config import Settings, TenantConfig

__all__ = ["DEMO_GROUP", "DEMO_ORG", "DEMO_TENANT", "SIMULATOR_PATH", "STATIC_DIR", "Demo",
           "demo_settings", "welcome"]

DEMO_ORG = "demo"
DEMO_TENANT = "demo"
DEMO_GROUP = "support"
SIMULATOR_PATH = "/console/try"
EVENTS_PATH = f"{SIMULATOR_PATH}/events"
"""Where the demo tenant's bot events are POSTed (and read back by the simulator)."""
STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_TTL_SECONDS = 8 * 3600
"""Lifetime of the tokens in the printed URLs: a working day of trying things."""


@dataclass(frozen=True)
class Demo:
    """What the simulator's routes need to know about the demo tenant."""

    tenant_id: str
    organization_id: str
    user_group: str
    webhook_secret: str
    """Signs the demo tenant's events; the simulator checks each signature with it."""


def demo_settings(settings: Settings) -> tuple[Settings, Demo]:
    """``settings`` (the embedded defaults, normally) with the demo tenant added.

    The tenant's ``bot_events_url`` is lcx's own simulator, so the port must be known
    before the server starts: port 0 is replaced by a free port picked now (and
    ``server.public_url`` follows it). A fresh webhook secret signs this run's events.
    """
    server = settings.server
    if server.port == 0:
        port = _free_port(server.host)
        server = msgspec.structs.replace(server, port=port,
                                         public_url=f"http://{_url_host(server.host)}:{port}")
    demo = Demo(DEMO_TENANT, DEMO_ORG, DEMO_GROUP, secrets.token_urlsafe(24))
    tenant = TenantConfig(id=demo.tenant_id, organization_id=demo.organization_id,
                          provider="helvia", default_user_group=demo.user_group,
                          bot_events_url=server.public_url.rstrip("/") + EVENTS_PATH,
                          webhook_secret=demo.webhook_secret)
    return msgspec.structs.replace(settings, server=server,
                                   tenants=(*settings.tenants, tenant)), demo


def welcome(base_url: str, secret: str, *, issuer: str = "", audience: str = "") -> str:
    """The lines ``lcx serve`` prints for the demo: what it is and the URLs to open.

    ``secret`` signs the tokens of the URLs (the development secret, in the demo).
    """
    from lcx.auth import mint_token

    def token(sub: str, scopes: str, name: str | None = None) -> str:
        return mint_token(secret, sub=sub, org=DEMO_ORG, scopes=scopes,
                          groups=[DEMO_GROUP] if scopes != "bot" else (),
                          tenants=[DEMO_TENANT] if scopes == "bot" else None, name=name,
                          ttl_seconds=TOKEN_TTL_SECONDS, issuer=issuer, audience=audience)

    base = base_url.rstrip("/")
    agent = f"{base}/console/?token={token('alice', 'agent', 'Alice')}"
    supervisor = f"{base}/console/?token={token('sam', 'supervisor', 'Sam')}"
    simulator = f"{base}{SIMULATOR_PATH}?token={token('demo-bot', 'bot')}"
    return "\n".join((
        f"demo: no configuration file, so this is the demo: organization {DEMO_ORG!r}, "
        f"tenant {DEMO_TENANT!r}, user group {DEMO_GROUP!r}, lcx's own agents",
        "demo: open these in two browser windows (the tokens last 8 hours):",
        f"demo:   agent Alice:         {agent}",
        f"demo:   customer simulator:  {simulator}",
        f"demo:   supervisor Sam:      {supervisor}",
        f"demo: more agents: lcx token --scope agent --org {DEMO_ORG} --groups {DEMO_GROUP} "
        "--sub bob --name Bob --console",
        "demo: production runs with --config FILE (see config.toml and docs/operations.md)",
    ))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
