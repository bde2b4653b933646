"""Bearer token verification, claims, scope rules and the development secret (lcx.auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lcx.auth import (
    DEV_SECRET_FILE,
    Principal,
    TokenVerifier,
    build_verifier,
    mint_token,
    require_org,
    require_scope,
    require_tenant,
    resolve_secret,
)
from lcx.config import AuthConfig
from lcx.errors import ConfigError, Forbidden, Unauthorized

SECRET = "unit-test-secret-0123456789abcdef0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef0123456789ab"


def verifier(**auth: str) -> TokenVerifier:
    return TokenVerifier(AuthConfig(**{"jwt_secret": SECRET, **auth}))


def signed(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, key, algorithm=algorithm)


def refusal(token: str, checker: TokenVerifier | None = None) -> str:
    with pytest.raises(Unauthorized) as caught:
        (checker or verifier()).verify(token)
    return caught.value.message


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


def key_file(tmp_path: Path, pem: bytes) -> str:
    path = tmp_path / "public.pem"
    path.write_bytes(pem)
    return str(path)


def test_valid_token_gives_principal() -> None:
    """A valid HS256 token from mint_token becomes a Principal with every claim."""
    token = mint_token(SECRET, sub="alice", org="o1", scopes=["agent", "supervisor"],
                       groups=["g1", "g2"], tenants=["t1"], name="Alice")
    assert verifier().verify(token) == Principal(
        sub="alice", org="o1", scopes=frozenset({"agent", "supervisor"}), tenants=("t1",),
        groups=("g1", "g2"), name="Alice")


def test_optional_claims_default() -> None:
    """Absent tenants, groups and name give None, () and None."""
    principal = verifier().verify(mint_token(SECRET, sub="b1", org="o1", scopes="bot"))
    assert (principal.tenants, principal.groups, principal.name) == (None, (), None)


def test_expired_token_refused() -> None:
    """An expired token is refused with a message saying so."""
    token = mint_token(SECRET, sub="a", org="o1", scopes="agent", ttl_seconds=-60)
    assert "expired" in refusal(token)


def test_token_without_exp_refused() -> None:
    """exp is required: a token without it is refused naming the claim."""
    token = jwt.encode({"sub": "a", "org": "o1", "scope": "agent"}, SECRET, algorithm="HS256")
    assert "'exp'" in refusal(token)


def test_bad_signature_refused() -> None:
    """A token whose signature does not match its content is refused."""
    header, _, signature = signed({"sub": "a", "org": "o1", "scope": "agent"}).split(".")
    forged = b64({"sub": "a", "org": "o1", "scope": "admin", "exp": int(time.time()) + 60})
    assert "signature" in refusal(f"{header}.{forged}.{signature}")


def test_wrong_key_refused_without_leaking_it() -> None:
    """A token signed with another secret is refused; the message names no secret."""
    message = refusal(signed({"sub": "a", "org": "o1", "scope": "agent"}, OTHER_SECRET))
    assert "signature" in message
    assert SECRET not in message
    assert OTHER_SECRET not in message


def test_alg_none_refused() -> None:
    """An unsigned token (alg none) is refused."""
    claims = {"sub": "a", "org": "o1", "scope": "admin", "exp": int(time.time()) + 60}
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert "algorithm" in refusal(token)


def test_algorithm_confusion_refused(tmp_path: Path,
                                     rsa_pem: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    """An RS256 verifier refuses an HS256 token signed with the public key's PEM text."""
    private, pem = rsa_pem
    checker = TokenVerifier(AuthConfig(jwt_public_key_file=key_file(tmp_path, pem)))
    claims = {"sub": "a", "org": "o1", "scope": "agent", "exp": int(time.time()) + 60}
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = f"{header}.{b64(claims)}"
    mac = hmac.new(pem, body.encode(), hashlib.sha256).digest()
    token = f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "algorithm" in refusal(token, checker)
    assert checker.verify(signed(claims, private, "RS256")).sub == "a"


def test_es256_key_accepts_only_es256(tmp_path: Path) -> None:
    """A P-256 public key verifies ES256 tokens and only those."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    checker = TokenVerifier(AuthConfig(jwt_public_key_file=key_file(tmp_path, pem)))
    assert checker.algorithms == ("ES256",)
    claims = {"sub": "a", "org": "o1", "scope": "agent"}
    assert checker.verify(signed(claims, private, "ES256")).org == "o1"
    assert "algorithm" in refusal(signed(claims), checker)


def test_unreadable_key_file_is_config_error(tmp_path: Path) -> None:
    """A missing or non-PEM key file stops construction with a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"auth\.jwt_public_key_file"):
        TokenVerifier(AuthConfig(jwt_public_key_file=str(tmp_path / "absent.pem")))
    with pytest.raises(ConfigError, match=r"auth\.jwt_public_key_file"):
        TokenVerifier(AuthConfig(jwt_public_key_file=key_file(tmp_path, b"not a key")))


def test_secret_and_key_file_together_is_config_error(
        tmp_path: Path, rsa_pem: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    """Configuring both a secret and a public key file is ambiguous and refused."""
    with pytest.raises(ConfigError, match="not both"):
        TokenVerifier(AuthConfig(jwt_secret=SECRET,
                                 jwt_public_key_file=key_file(tmp_path, rsa_pem[1])))


def test_unconfigured_verifier_refuses_everything() -> None:
    """Without a secret or key file every token is refused as not configured."""
    token = mint_token(SECRET, sub="a", org="o1", scopes="admin")
    assert refusal(token, TokenVerifier(AuthConfig())) == "authentication is not configured"


def test_issuer_checked_when_configured() -> None:
    """With auth.issuer set, a missing or different iss is refused; the right one passes."""
    checker = verifier(issuer="https://idp")
    claims = {"sub": "a", "org": "o1", "scope": "agent"}
    assert "'iss'" in refusal(signed(claims), checker)
    assert "issuer" in refusal(signed({**claims, "iss": "https://evil"}), checker)
    assert checker.verify(signed({**claims, "iss": "https://idp"})).sub == "a"


def test_audience_checked_when_configured() -> None:
    """With auth.audience set, aud must name it; without it, aud is not checked."""
    checker = verifier(audience="lcx")
    claims = {"sub": "a", "org": "o1", "scope": "agent"}
    assert "'aud'" in refusal(signed(claims), checker)
    assert "audience" in refusal(signed({**claims, "aud": "other"}), checker)
    assert checker.verify(signed({**claims, "aud": ["other", "lcx"]})).sub == "a"
    assert verifier().verify(signed({**claims, "aud": "anything"})).sub == "a"


def test_malformed_token_refused() -> None:
    """Garbage is refused as malformed."""
    assert "malformed" in refusal("not-a-jwt")


@pytest.mark.parametrize(("scope", "expected"), [
    ("agent", {"agent"}),
    ("agent supervisor", {"agent", "supervisor"}),
    (["bot", "service"], {"bot", "service"}),
    ("openid bot profile", {"bot"}),
])
def test_scope_parsing(scope: Any, expected: set[str]) -> None:
    """scope may be a space-separated string or a list; unknown scopes are ignored."""
    principal = verifier().verify(signed({"sub": "a", "org": "o1", "scope": scope}))
    assert principal.scopes == expected


@pytest.mark.parametrize("scope", ["openid profile", [], 7, ["agent", 3], None])
def test_no_valid_scope_refused(scope: Any) -> None:
    """A token with no lcx scope, or a scope claim of the wrong type, is refused."""
    claims = {"sub": "a", "org": "o1", "scope": scope}
    assert "scope" in refusal(signed(claims))


def test_org_required_unless_admin() -> None:
    """A non-admin token needs org; an admin token may omit it."""
    assert "'org'" in refusal(signed({"sub": "a", "scope": "agent"}))
    admin = verifier().verify(signed({"sub": "ops", "scope": "admin"}))
    assert admin.org is None
    assert admin.is_admin


@pytest.mark.parametrize(("claim", "value"), [
    ("groups", "g1"), ("groups", [1]), ("tenants", "t1"), ("tenants", {"t": 1}),
    ("name", 5), ("org", ["o1"]),
])
def test_claims_of_wrong_type_refused(claim: str, value: Any) -> None:
    """groups and tenants must be lists of strings, org and name strings."""
    claims = {"sub": "a", "org": "o1", "scope": "agent", claim: value}
    assert repr(claim) in refusal(signed(claims))


def test_missing_sub_refused() -> None:
    """A token without sub is refused."""
    assert "'sub'" in refusal(signed({"org": "o1", "scope": "agent"}))


def principal(*scopes: str, org: str | None = "o1",
              tenants: tuple[str, ...] | None = None) -> Principal:
    return Principal(sub="x", org=org, scopes=frozenset(scopes), tenants=tenants)


def test_require_scope() -> None:
    """require_scope passes on any listed scope and names the needed ones otherwise."""
    require_scope(principal("agent"), "agent", "supervisor")
    with pytest.raises(Forbidden, match="bot, service") as caught:
        require_scope(principal("agent"), "service", "bot")
    assert caught.value.details == {"requiredScopes": ["bot", "service"]}
    with pytest.raises(Forbidden):
        require_scope(principal("admin", org=None), "bot")


def test_require_org() -> None:
    """require_org passes for the token's own org and for admin, refuses other orgs."""
    require_org(principal("agent"), "o1")
    require_org(principal("admin", org=None), "o2")
    with pytest.raises(Forbidden, match="o2"):
        require_org(principal("agent"), "o2")


def test_require_tenant_for_bot_tokens() -> None:
    """A bot token acts for tenants of its org, limited to its tenants claim when present."""
    require_tenant(principal("bot"), "t1", "o1")
    require_tenant(principal("bot", tenants=("t1",)), "t1", "o1")
    with pytest.raises(Forbidden):
        require_tenant(principal("bot"), "t1", "o2")
    with pytest.raises(Forbidden, match="t2"):
        require_tenant(principal("bot", tenants=("t1",)), "t2", "o1")


def test_require_tenant_for_service_and_admin() -> None:
    """A service token passes for any tenant of its org; admin passes everywhere."""
    require_tenant(principal("service", tenants=("t1",)), "t2", "o1")
    require_tenant(principal("admin", org=None), "t9", "o9")
    with pytest.raises(Forbidden):
        require_tenant(principal("service"), "t1", "o2")


def test_resolve_secret_prefers_configured_secret(tmp_path: Path) -> None:
    """A configured auth.jwt_secret is returned and no file is written."""
    assert resolve_secret(AuthConfig(jwt_secret=SECRET), tmp_path) == SECRET
    assert not (tmp_path / DEV_SECRET_FILE).exists()


def test_resolve_secret_creates_file_once(tmp_path: Path) -> None:
    """Without a secret, a private random file secret is created once and then reused."""
    first = resolve_secret(AuthConfig(), tmp_path)
    path = tmp_path / DEV_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 43
    assert resolve_secret(AuthConfig(), tmp_path) == first
    assert sorted(tmp_path.iterdir()) == [path]


def test_resolve_secret_refuses_with_key_file(tmp_path: Path) -> None:
    """With only a public key configured there is no HS256 secret to sign with."""
    with pytest.raises(ConfigError, match=r"auth\.jwt_public_key_file"):
        resolve_secret(AuthConfig(jwt_public_key_file="key.pem"), tmp_path)


def test_build_verifier_uses_development_secret(tmp_path: Path) -> None:
    """build_verifier with no secret verifies tokens signed with the development secret."""
    checker = build_verifier(AuthConfig(), tmp_path)
    secret = resolve_secret(AuthConfig(), tmp_path)
    assert checker.verify(mint_token(secret, sub="a", org="o1", scopes="agent")).sub == "a"
