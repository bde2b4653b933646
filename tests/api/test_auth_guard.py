"""Bearer authentication over real HTTP, and ``lcx token`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Blueprint, request
from support.http import always_ready, serving

from lcx.api.auth import bearer_principal
from lcx.api.bodies import json_response
from lcx.api.http_app import AppDeps, LcxApp, create_app
from lcx.auth import (
    DEV_SECRET_FILE,
    TokenVerifier,
    build_verifier,
    mint_token,
    require_org,
    require_scope,
)
from lcx.config import AuthConfig
from lcx.errors import Unauthorized
from lcx.metrics import Metrics

SECRET = "api-test-secret-0123456789abcdef0123456789ab"
VERIFIER = TokenVerifier(AuthConfig(jwt_secret=SECRET))

guarded = Blueprint("guarded", __name__)


@guarded.get("/organizations/<org_id>/guarded")
async def guarded_route(org_id: str) -> Any:
    principal = bearer_principal(request, VERIFIER)
    require_scope(principal, "agent", "supervisor")
    require_org(principal, org_id)
    return json_response({"sub": principal.sub, "groups": list(principal.groups)})


def make_app() -> LcxApp:
    app = create_app(AppDeps(instance_id="i-test", max_body_bytes=1024, readiness=always_ready,
                             metrics=Metrics()))
    app.register_blueprint(guarded)
    return app


def bearer(**claims: Any) -> dict[str, str]:
    token = mint_token(SECRET, **{"sub": "alice", "org": "o1", "scopes": "agent", **claims})
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


async def get(headers: dict[str, str], org: str = "o1") -> httpx.Response:
    async with serving(make_app()) as client:
        return await client.get(f"/organizations/{org}/guarded", headers=headers)


async def test_valid_token_passes() -> None:
    """A valid agent token of the org reaches the route, which sees its principal."""
    response = await get(bearer(groups=["g1"]))
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "groups": ["g1"]}


async def test_missing_header_is_401_with_challenge() -> None:
    """No Authorization header answers 401 unauthorized with WWW-Authenticate: Bearer."""
    response = await get({})
    assert "Authorization" in error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer a b"])
async def test_malformed_header_is_401_with_challenge(header: str) -> None:
    """Another scheme or a malformed Bearer value answers 401 with an invalid_token challenge."""
    response = await get({"Authorization": header})
    assert "malformed" in error_of(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_expired_token_is_401_with_challenge() -> None:
    """An expired token answers 401 saying it expired, with WWW-Authenticate."""
    response = await get(bearer(ttl_seconds=-60))
    assert "expired" in error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_badly_signed_token_is_401() -> None:
    """A token signed with another secret answers 401 without revealing the secret."""
    token = mint_token("some-other-secret-0123456789abcdef0123", sub="a", org="o1",
                       scopes="agent")
    response = await get({"Authorization": f"Bearer {token}"})
    assert SECRET not in error_of(response, 401, "unauthorized")


async def test_wrong_scope_is_403() -> None:
    """A valid bot token on an agent route answers 403 forbidden naming the needed scopes."""
    response = await get(bearer(scopes="bot"))
    assert "agent, supervisor" in error_of(response, 403, "forbidden")
    assert "www-authenticate" not in response.headers


async def test_other_org_is_403() -> None:
    """A valid agent token of another organization answers 403 forbidden."""
    response = await get(bearer(org="o2"))
    error_of(response, 403, "forbidden")


def run_token(cwd: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in (env or os.environ).items() if k != "LCX_CONFIG"}
    return subprocess.run([sys.executable, "-m", "lcx", "token", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.slow
def test_cli_token_signed_with_configured_secret(tmp_path: Path) -> None:
    """`lcx token` prints a token the configured verifier accepts, with every claim."""
    (tmp_path / "lcx.toml").write_text(
        f'[auth]\njwt_secret = "{SECRET}"\nissuer = "lcx-test"\naudience = "lcx"\n')
    done = run_token(tmp_path, "--config", "lcx.toml", "--scope", "agent", "--scope",
                     "supervisor,bot", "--org", "o1", "--sub", "alice", "--groups", "g1,g2",
                     "--tenants", "t1", "--name", "Alice", "--ttl", "120")
    assert done.returncode == 0, done.stderr
    checker = TokenVerifier(AuthConfig(jwt_secret=SECRET, issuer="lcx-test", audience="lcx"))
    principal = checker.verify(done.stdout.strip())
    assert principal.scopes == {"agent", "supervisor", "bot"}
    assert (principal.sub, principal.org, principal.name) == ("alice", "o1", "Alice")
    assert (principal.groups, principal.tenants) == (("g1", "g2"), ("t1",))
    assert not (tmp_path / DEV_SECRET_FILE).exists()


@pytest.mark.slow
def test_cli_token_uses_one_development_secret_per_user(tmp_path: Path) -> None:
    """Without auth.jwt_secret, `lcx token` signs with the development secret in the
    user's data directory, created once, whatever the working directory."""
    data_home = tmp_path / "data"
    env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_token(tmp_path / "a", "--scope", "admin", "--sub", "ops", env=env)
    second = run_token(tmp_path / "b", "--scope", "admin", "--sub", "ops", env=env)
    assert first.returncode == second.returncode == 0, first.stderr
    path = data_home / "lcx" / DEV_SECRET_FILE
    assert str(path) in first.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    secret = path.read_text().strip()
    for done in (first, second):
        assert TokenVerifier(AuthConfig(jwt_secret=secret)).verify(done.stdout.strip()).is_admin
    assert not (tmp_path / "a" / DEV_SECRET_FILE).exists()


def test_a_token_the_development_secret_refuses_names_the_secret_file(tmp_path: Path) -> None:
    """The 401 of a wrongly signed token says which development secret the server uses."""
    checker = build_verifier(AuthConfig(), tmp_path)
    with pytest.raises(Unauthorized) as refused:
        checker.verify(mint_token("another-secret-of-more-than-32-bytes", sub="a", org="o1",
                                  scopes="agent"))
    path = str(tmp_path / DEV_SECRET_FILE)
    assert refused.value.details == {"devSecret": path}
    assert path in refused.value.message


@pytest.mark.slow
def test_cli_token_config_error_exits_2(tmp_path: Path) -> None:
    """A broken config file makes `lcx token` exit 2 with a message on stderr."""
    (tmp_path / "lcx.toml").write_text("[auth]\njwt_secrett = 'x'\n")
    done = run_token(tmp_path, "--config", "lcx.toml", "--scope", "agent", "--org", "o1",
                     "--sub", "a")
    assert done.returncode == 2
    assert "auth.jwt_secrett" in done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_cli_token_console_url_follows_the_port_or_the_given_url(tmp_path: Path) -> None:
    """`lcx token --console` signs in at the configured port when public_url is left at its
    default, and at `--url` when given (a server started with `--port 0`); a bad `--url`
    is a usage error."""
    (tmp_path / "lcx.toml").write_text(f'[auth]\njwt_secret = "{SECRET}"\n'
                                       '[server]\nport = 9123\n')
    common = ("--config", "lcx.toml", "--scope", "agent", "--org", "o1", "--sub", "a",
              "--console")
    by_port = run_token(tmp_path, *common)
    given = run_token(tmp_path, *common, "--url", "http://127.0.0.1:41234/")
    refused = run_token(tmp_path, *common, "--url", "localhost:41234")
    assert by_port.stdout.startswith("http://127.0.0.1:9123/console/?token=ey"), by_port
    assert given.stdout.startswith("http://127.0.0.1:41234/console/?token=ey"), given
    assert refused.returncode == 2
    assert "expected an http(s) base URL" in refused.stderr
