"""Operations routes (API.md section 8): ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import trio
from quart import Blueprint
from quart_trio.wrappers import TrioResponse

from lcx.api.bodies import json_response
from lcx.api.common import Health, Readiness
from lcx.errors import StoreError, Unavailable
from lcx.metrics import CONTENT_TYPE
from lcx.version import lcx_version

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps

__all__ = ["ReadinessCheck", "check_ready", "ops_blueprint", "readiness_checks"]

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when a dependency answers; raises when it does not."""

_log = logging.getLogger(__name__)



def readiness_checks(checks: Mapping[str, ReadinessCheck], *,
                     timeout: float = 2.0) -> ReadinessCheck:
    """Combine named checks (``{"store": store.ping, "redis": bus.ping}``) into one.

    The combined check runs them in order, each within ``timeout`` seconds, and raises
    :class:`~lcx.errors.Unavailable` with ``details.dependency`` naming the first that
    fails or is too slow. The cause is logged, never put in the response (it may hold a
    DSN or a host name).
    """

    async def check_all() -> None:
        for name, check in checks.items():
            try:
                with trio.fail_after(timeout):
                    await check()
            except trio.TooSlowError as exc:
                raise Unavailable(f"{name} did not answer within {timeout:g}s",
                                  details={"dependency": name, "reason": "timeout"}) from exc
            except Exception as exc:
                _log.warning("readiness check %s failed: %r", name, exc)
                raise Unavailable(f"{name} is not available",
                                  details={"dependency": name}) from exc

    return check_all


async def check_ready(readiness: ReadinessCheck) -> None:
    """Run ``readiness`` and turn any failure into :class:`~lcx.errors.Unavailable`.

    An ``Unavailable`` passes through as raised; a store error names ``store``; anything
    else names ``unknown`` and is logged.
    """
    try:
        await readiness()
    except Unavailable:
        raise
    except Exception as exc:
        dependency = "store" if isinstance(exc, StoreError) else "unknown"
        _log.warning("readiness failed (%s): %r", dependency, exc)
        raise Unavailable("not ready", details={"dependency": dependency}) from exc


def ops_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the operations routes, answering from ``deps``."""
    blueprint = Blueprint("ops", __name__)
    version = lcx_version()

    @blueprint.get("/healthz")
    async def healthz() -> TrioResponse:
        return json_response(Health(instance_id=deps.instance_id, version=version))

    @blueprint.get("/readyz")
    async def readyz() -> TrioResponse:
        if deps.draining():
            raise Unavailable("draining for shutdown", details={"reason": "draining"})
        await check_ready(deps.readiness)
        return json_response(Readiness())

    @blueprint.get("/metrics")
    async def metrics() -> TrioResponse:
        return TrioResponse(deps.metrics.render(), content_type=CONTENT_TYPE)

    return blueprint
