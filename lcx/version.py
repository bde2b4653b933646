"""The version of lcx, as installed (``lcx --version``, ``/healthz``, ``/openapi.json``)."""

from __future__ import annotations

import importlib.metadata

__all__ = ["lcx_version"]


def lcx_version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``0.0.0`` when lcx
    runs from a source tree that was never installed."""
    try:
        return importlib.metadata.version("lcx")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
