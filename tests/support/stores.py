"""Store fixtures: ``any_store`` runs a test once per backend; ``postgres_url``.

Load them in a test module with ``pytest_plugins = ["support.stores"]`` (and do not
import this module: pytest must import a plugin first to rewrite its asserts). The
PostgreSQL runs skip (or fail, under ``LCX_REQUIRE_SERVICES=1``) when no server is
reachable: see :mod:`support.postgres`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lcx.store import Store, open_store
from support.postgres import scratch_schema

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each backend: a SQLite file, a fresh schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lcx.db'}"
        return
    with scratch_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL for a fresh, empty schema, dropped after the test."""
    with scratch_schema() as url:
        yield url


@pytest.fixture
async def any_store(store_url: str) -> AsyncIterator[Store]:
    """An open store with every shipped migration applied, closed after the test."""
    async with open_store(store_url) as store:
        yield store
