"""What the HTTP routes need (:class:`AppDeps`), in a leaf module every blueprint may import."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lcx.metrics import Metrics

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.api.agent_sockets import SocketDirectory
    from lcx.attachments import AttachmentStorage
    from lcx.auth import TokenVerifier
    from lcx.config import Settings
    from lcx.demo import Demo


def _never_draining() -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class AppDeps:
    """What the routes need, built once by the composition root (``lcx/instance.py``).

    Keyword-only, so a new field (store, auth, actor refs) can be added anywhere.
    """

    instance_id: str
    max_body_bytes: int
    readiness: Callable[[], Awaitable[None]]
    """Returns when the instance can take work; raises (``Unavailable`` naming the
    dependency, ideally; see :func:`lcx.api.ops.readiness_checks`) when it cannot."""
    metrics: Metrics
    draining: Callable[[], bool] = _never_draining
    verifier: TokenVerifier | None = None
    """Checks bearer tokens; routes that need auth refuse every call without one."""
    livechat: Livechat | None = None
    """The livechat domain (actors, store, tenants); None in ops-only test apps."""
    config: Settings | None = None
    """The instance's settings (tenants, limits)."""
    sockets: SocketDirectory | None = None
    """The agent sockets held by this instance (the websocket route registers them)."""
    cluster_status: Callable[[], Awaitable[Any]] | None = None
    webhooks: tuple[Mapping[str, Any], Callable[[], None]] | None = None
    """The configured channels (by name) and the hint that wakes the inbox processor."""
    """The ``GET /cluster`` document (members, leader, bus latency)."""
    attachments: AttachmentStorage | None = None
    """Where uploaded files live; None: no attachment routes."""
    demo: Demo | None = None
    """The demo tenant when lcx runs without a configuration file (the customer
    simulator's routes exist only then)."""
