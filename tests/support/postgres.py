"""PostgreSQL for tests: one scratch database per test process, a fresh schema per use.

Server
    ``LCX_TEST_POSTGRES_URL`` (a role that may ``CREATE DATABASE``, e.g.
    ``postgresql://postgres@127.0.0.1:5432/postgres``), else the local server on its
    default port as ``postgres``. When it cannot be reached, :func:`require_postgres`
    skips the test with the reason, or fails it when ``LCX_REQUIRE_SERVICES=1`` (CI).

Isolation
    The first use creates the database ``lcx_test_<pid>_<random>``, with an ICU ``en-US``
    default collation when the server has ICU (so a comparison that depends on the
    database's locale shows up in the tests, not in production), and drops it at process
    exit; a role that may not create databases gets its own database used instead.
    :func:`scratch_schema` and :func:`scratch_url` make a fresh schema in it and return a
    URL whose ``search_path`` is that schema and whose ``application_name`` is the
    schema's name (so a test can find its store's connections in ``pg_stat_activity``).
    A schema costs a few milliseconds, where a database costs a copy of its template.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

URL_ENV = "LCX_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUIRE_ENV = "LCX_REQUIRE_SERVICES"


def admin_url() -> str:
    """The URL of the server's admin connection (see the module docstring)."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


@functools.cache
def _unreachable() -> str | None:
    """Why the server cannot be used, or ``None`` when it can (checked once)."""
    try:
        with psycopg.connect(admin_url(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None


def require_postgres() -> str:
    """Return the admin URL, or skip (fail under ``LCX_REQUIRE_SERVICES=1``) the test."""
    reason = _unreachable()
    if reason is not None:
        where = urlsplit(admin_url()).hostname or "localhost"
        message = f"PostgreSQL at {where} is not reachable ({reason}); set {URL_ENV}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    return admin_url()


def database_url(dbname: str, **params: str) -> str:
    """The admin URL pointed at database ``dbname``, with extra libpq ``params``."""
    parts = urlsplit(admin_url())
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(path=f"/{dbname}", query=query))


def _admin(statement: sql.Composable, dbname: str | None = None) -> None:
    url = admin_url() if dbname is None else database_url(dbname)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def create_database(prefix: str = "lcx_test") -> str:
    """Create an empty database (ICU ``en-US`` collation when available); return its name.

    The caller drops it (:func:`drop_database`).
    """
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    icu = sql.SQL(" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    try:
        _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) + icu)
    except psycopg.errors.FeatureNotSupported:  # a server built without ICU
        _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database`, closing its sessions first."""
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@functools.cache
def session_database() -> str:
    """The name of this process's scratch database, created on first use (dropped at
    exit); the admin URL's own database when its role may not create databases."""
    require_postgres()
    try:
        name = create_database()
    except psycopg.errors.InsufficientPrivilege:
        return urlsplit(admin_url()).path.lstrip("/") or "postgres"
    atexit.register(drop_database, name)
    return name


def scratch_url() -> str:
    """A store URL for a fresh, empty schema of the session database (skips without a
    server). The schema goes with the database at exit: use :func:`scratch_schema` to
    drop it sooner."""
    dbname = session_database()
    schema = f"s_{secrets.token_hex(6)}"
    _admin(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)), dbname)
    return database_url(dbname, options=f"-csearch_path={schema}", application_name=schema)


def schema_of(url: str) -> str:
    """The schema (and ``application_name``) of a :func:`scratch_url` URL."""
    query = dict(part.split("=", 1) for part in urlsplit(url).query.split("&") if part)
    return query["application_name"]


@contextmanager
def scratch_schema() -> Iterator[str]:
    """Yield a :func:`scratch_url` URL; drop its schema (and everything in it) on exit."""
    url = scratch_url()
    try:
        yield url
    finally:
        statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
        _admin(statement.format(sql.Identifier(schema_of(url))), session_database())
