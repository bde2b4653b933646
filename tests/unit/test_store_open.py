"""open_store: URL forms, backend registry, and what it owns."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcx.errors import StoreError, StoreUnavailable
from lcx.store import Tx, open_store
from lcx.store.sqlite import parse_sqlite_url


def tables(tx: Tx) -> list[str]:
    rows = tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [row["name"] for row in rows]


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///relative/lcx.db", "relative/lcx.db"),
    ("sqlite:///./lcx.db", "./lcx.db"),
    ("sqlite:////abs/path/lcx.db", "/abs/path/lcx.db"),
    ("sqlite://:memory:", None),
    ("sqlite:///:memory:", None),
])
def test_parse_sqlite_url_forms(url: str, expected: str | None) -> None:
    """The three documented sqlite URL forms map to a relative path, an absolute one, memory."""
    assert parse_sqlite_url(url) == expected


@pytest.mark.parametrize("url", ["sqlite://lcx.db", "sqlite:///", "sqlite://"])
def test_malformed_sqlite_url_is_refused(url: str) -> None:
    """A sqlite URL without the leading slash of a path is a StoreError."""
    with pytest.raises(StoreError, match="malformed sqlite URL"):
        parse_sqlite_url(url)


async def test_relative_path_is_created_with_parent_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///a/b/lcx.db creates a/b/ under the working directory and migrates the file."""
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///a/b/lcx.db") as store:
        assert store.dialect == "sqlite"
        assert "org_settings" in await store.read(tables)
    assert (tmp_path / "a" / "b" / "lcx.db").is_file()


async def test_absolute_path(tmp_path: Path) -> None:
    """sqlite:////abs/path opens the absolute path."""
    async with open_store(f"sqlite:///{tmp_path}/x/abs.db"):
        pass
    assert (tmp_path / "x" / "abs.db").is_file()


async def test_memory_stores_are_private() -> None:
    """Each sqlite://:memory: store is its own database."""
    async with open_store("sqlite://:memory:") as one, \
            open_store("sqlite://:memory:", migrations=False) as two:
        assert "org_settings" in await one.read(tables)
        assert await two.read(tables) == []


async def test_migrations_false_leaves_schema_alone(tmp_path: Path) -> None:
    """migrations=False opens the store without touching its schema."""
    async with open_store(f"sqlite:///{tmp_path}/lcx.db", migrations=False) as store:
        assert await store.read(tables) == []


async def test_unknown_scheme_is_named() -> None:
    """An unknown scheme raises StoreError naming the scheme, not the whole URL."""
    with pytest.raises(StoreError, match="'mysql'") as info:
        async with open_store("mysql://user:secret@host/db"):
            pass
    assert "secret" not in str(info.value)


async def test_url_without_scheme_is_refused() -> None:
    """A bare path is not a store URL."""
    with pytest.raises(StoreError, match="no scheme"):
        async with open_store("lcx.db"):
            pass


@pytest.mark.parametrize("url", ["postgresql://u:secret@127.0.0.1:1/db",
                                 "postgres://u:secret@127.0.0.1:1/db"])
async def test_unreachable_postgresql_is_unavailable_without_the_password(url: str) -> None:
    """Both PostgreSQL schemes open the postgres backend; an unreachable server is
    StoreUnavailable, and the message never shows the password."""
    with pytest.raises(StoreUnavailable) as raised:
        async with open_store(url):
            pass
    assert "secret" not in str(raised.value)


async def test_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    """A path that cannot be opened as a database file raises StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="cannot open sqlite database"):
        async with open_store(f"sqlite:///{tmp_path}"):
            pass


async def test_context_manager_closes_the_store(tmp_path: Path) -> None:
    """Leaving open_store closes the store: later calls raise StoreUnavailable."""
    async with open_store(f"sqlite:///{tmp_path}/lcx.db") as store:
        pass
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.ping()
