"""Bearer tokens (API.md section 2): who is calling, and what they may do.

Pure logic, no web framework: :class:`TokenVerifier` turns a JWT into a :class:`Principal`
or raises :class:`~lcx.errors.Unauthorized`; :func:`require_scope`, :func:`require_org` and
:func:`require_tenant` raise :class:`~lcx.errors.Forbidden` when a valid principal may not
do something. The HTTP and websocket edges (``lcx.api.auth``) only find the token.

Keys. ``auth.jwt_secret`` verifies HS256 tokens; ``auth.jwt_public_key_file`` (a PEM public
key or certificate) verifies RS256 (RSA key) or ES256 (P-256 key) tokens. Only the
algorithm of the configured key is accepted, so ``alg: none`` and algorithm confusion (an
HS256 token "signed" with the public key text) are refused. Production sets one of them.

Development. With neither set, :func:`build_verifier` (what ``lcx serve`` uses) falls back
to :func:`resolve_secret`: a random secret kept in ``.lcx-dev-secret`` (mode 0600) in the
user's data directory (:func:`dev_secret_dir`, e.g. ``~/.local/share/lcx``), which ``lcx
token`` signs with wherever it runs. A token that this secret does not verify is refused
with the file's path in ``details.devSecret``. A bare ``TokenVerifier(AuthConfig())``
refuses every token ("authentication is not configured").
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
import msgspec
import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import InvalidSubjectError

from lcx.config import AuthConfig
from lcx.errors import ConfigError, Forbidden, Unauthorized

__all__ = [
    "DEV_SECRET_FILE", "SCOPES", "Principal", "TokenVerifier", "build_verifier",
    "dev_secret_dir", "mint_token",
    "parse_scopes", "require_org", "require_scope", "require_tenant", "resolve_secret",
]

SCOPES = frozenset({"bot", "agent", "supervisor", "service", "admin"})
"""Every scope lcx knows; a token's other scopes are ignored."""

DEV_SECRET_FILE = ".lcx-dev-secret"
"""Name of the development secret file, inside :func:`dev_secret_dir`."""

HS256 = "HS256"
_log = logging.getLogger(__name__)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The verified caller of one request or websocket: immutable, built by the verifier."""

    sub: str
    """The caller: an agent id, a bot id or a service name."""
    org: str | None
    """The organization the token is limited to; ``None`` only for ``admin`` tokens."""
    scopes: frozenset[str]
    """The token's lcx scopes (a non-empty subset of :data:`SCOPES`)."""
    tenants: tuple[str, ...] | None = None
    """The tenants a ``bot`` token may act for; ``None``: every tenant of its org."""
    groups: tuple[str, ...] = ()
    """The user groups (queues) an agent or supervisor serves."""
    name: str | None = None
    """Display name of an agent, when the token carries one."""

    def has_any(self, *scopes: str) -> bool:
        """Whether the principal holds at least one of ``scopes``."""
        return not self.scopes.isdisjoint(scopes)

    @property
    def is_admin(self) -> bool:
        """Whether the principal holds the ``admin`` scope (any organization)."""
        return "admin" in self.scopes


# -- verification -----------------------------------------------------------------------------

_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (iat or nbf in the future)"),
    (jwt.InvalidSignatureError, "the token signature is invalid"),
    (jwt.InvalidAlgorithmError, "the token is signed with an algorithm that is not accepted"),
    (jwt.InvalidIssuerError, "the token issuer is not accepted"),
    (jwt.InvalidAudienceError, "the token audience is not accepted"),
    (jwt.InvalidIssuedAtError, "the token claim 'iat' must be a number"),
    (InvalidSubjectError, "the token claim 'sub' must be a string"),
    (jwt.DecodeError, "the token is malformed"),
)


def _refusal(exc: jwt.PyJWTError) -> Unauthorized:
    """Map a PyJWT error to our message; never echoes the token or the key."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthorized(f"the token has no {exc.claim!r} claim")
    for kind, message in _REFUSALS:
        if isinstance(exc, kind):
            return Unauthorized(message)
    return Unauthorized("the token is invalid")


VERIFIED_CACHE_SIZE = 10_000
"""Verified tokens remembered (until their ``exp``); past this the memory starts afresh."""


class TokenVerifier:
    """Verifies bearer JWTs against the configured key; safe to share between tasks.

    Construction reads ``auth.jwt_public_key_file`` once. ``leeway_seconds`` tolerates clock
    skew on ``exp``/``nbf``/``iat`` (default 0: none). A bot sends the same token with
    every request, so a verified token's principal is remembered until its ``exp`` (up to
    :data:`VERIFIED_CACHE_SIZE` tokens): a signature is checked once per token, not once
    per request. ``dev_secret`` names the development secret's file when ``jwt_secret``
    came from it: refusals of a badly signed token then say where the secret is
    (``details.devSecret``).

    Raises (at construction):
        ConfigError: both a secret and a key file are set, or the key file cannot be read
            or is not an RSA or P-256 EC public key (the message names the key).
    """

    def __init__(self, config: AuthConfig, *, leeway_seconds: float = 0.0,
                 dev_secret: Path | None = None) -> None:
        if config.jwt_secret and config.jwt_public_key_file:
            raise ConfigError("auth: set either jwt_secret (HS256) or jwt_public_key_file "
                              "(RS256/ES256), not both")
        self._key: Any = None
        self._algorithms: tuple[str, ...] = ()
        if config.jwt_public_key_file:
            self._key, algorithm = _load_public_key(config.jwt_public_key_file)
            self._algorithms = (algorithm,)
        elif config.jwt_secret:
            self._key, self._algorithms = config.jwt_secret, (HS256,)
        self._issuer = config.issuer or None
        self._audience = config.audience or None
        self._leeway = leeway_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._dev_secret = dev_secret

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The accepted algorithms (``()`` when authentication is not configured)."""
        return self._algorithms

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token.

        Checks the signature with the configured key and algorithm only, requires ``exp``
        (and ``iss``/``aud`` when configured, which must then match), then the lcx claims.

        Raises:
            Unauthorized: authentication is not configured, or the token is malformed,
                expired, badly signed, of another algorithm, issuer or audience, or its
                claims are missing or of the wrong type; the message says which.
        """
        if not self._algorithms:
            raise Unauthorized("authentication is not configured")
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token, self._key, algorithms=list(self._algorithms),
                issuer=self._issuer, audience=self._audience, leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None})
        except jwt.InvalidSignatureError as exc:
            raise self._signature_refusal(exc) from None
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        _require_numeric_dates(claims)
        principal = principal_from_claims(claims)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]) + self._leeway)
        return principal

    def _signature_refusal(self, exc: jwt.InvalidSignatureError) -> Unauthorized:
        if self._dev_secret is None:
            return _refusal(exc)
        return Unauthorized(
            f"the token signature is invalid: this server verifies with the development "
            f"secret in {self._dev_secret}; mint tokens with `lcx token` as the same user",
            details={"devSecret": str(self._dev_secret)})


def _require_numeric_dates(claims: Mapping[str, Any]) -> None:
    """RFC 7519 makes ``exp``, ``nbf`` and ``iat`` JSON numbers; PyJWT also takes a
    numeric string (``"exp": "1796171105"``), which no issuer of ours mints."""
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Unauthorized(f"the token claim {name!r} must be a number")


def _load_public_key(path: str) -> tuple[Any, str]:
    """Read a PEM public key or certificate; return it with the one algorithm it verifies."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"auth.jwt_public_key_file: cannot read {path}: {exc.strerror}") \
            from exc
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"auth.jwt_public_key_file: {path} is not a PEM public key or "
                          "certificate") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ConfigError(f"auth.jwt_public_key_file: {path} must hold an RSA key (RS256) or a "
                      "P-256 EC key (ES256)")


# -- claims -----------------------------------------------------------------------------------

def parse_scopes(value: object) -> frozenset[str]:
    """Return the lcx scopes in a ``scope`` claim (space-separated string or list).

    Unknown scopes are dropped. Raises :class:`Unauthorized` when the claim is absent, of
    the wrong type, or names no lcx scope.
    """
    words = value.split() if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise Unauthorized("the token claim 'scope' must be a string or a list of strings")
    scopes = SCOPES.intersection(words)
    if not scopes:
        raise Unauthorized(f"the token has no lcx scope (one of {', '.join(sorted(SCOPES))})")
    return scopes


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Build the principal of already verified claims (``sub``, ``org``, ``scope``...).

    A ``null`` optional claim counts as absent. Raises :class:`Unauthorized` naming the
    claim when ``sub`` is missing, ``scope`` holds no lcx scope, ``org`` is missing for a
    non-admin token, or a claim has the wrong type.
    """
    scopes = parse_scopes(claims.get("scope"))
    sub = _text(claims, "sub")
    if sub is None:
        raise Unauthorized("the token has no 'sub' claim")
    org = _text(claims, "org")
    if org is None and "admin" not in scopes:
        raise Unauthorized("the token has no 'org' claim (only admin tokens may omit it)")
    return Principal(sub=sub, org=org, scopes=scopes, tenants=_texts(claims, "tenants"),
                     groups=_texts(claims, "groups") or (), name=_text(claims, "name"))


def _text(claims: Mapping[str, Any], claim: str) -> str | None:
    value = claims.get(claim)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Unauthorized(f"the token claim {claim!r} must be a string")
    return value


def _texts(claims: Mapping[str, Any], claim: str) -> tuple[str, ...] | None:
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unauthorized(f"the token claim {claim!r} must be a list of strings")
    return tuple(value)


# -- rules ------------------------------------------------------------------------------------

def require_scope(principal: Principal, *allowed: str) -> None:
    """Pass when the principal holds one of ``allowed``; ``admin`` passes only if listed.

    Raises:
        Forbidden: none of ``allowed`` is held (``details.requiredScopes`` lists them).
    """
    if not principal.has_any(*allowed):
        needed = sorted(allowed)
        raise Forbidden(f"this operation needs one of the scopes: {', '.join(needed)}",
                        details={"requiredScopes": needed})


def require_org(principal: Principal, org_id: str) -> None:
    """Pass when the token is limited to ``org_id``, or is an ``admin`` token.

    Raises:
        Forbidden: the token belongs to another organization.
    """
    if not principal.is_admin and principal.org != org_id:
        raise Forbidden(f"the token is not valid for organization {org_id!r}")


def require_tenant(principal: Principal, tenant_id: str, tenant_org: str) -> None:
    """Pass when the principal may act for tenant ``tenant_id`` of organization ``tenant_org``.

    The tenant must belong to the token's organization (``admin`` passes); a token with a
    ``tenants`` claim must also list it, unless it holds ``service``. Scopes are not checked
    here: call :func:`require_scope` too.

    Raises:
        Forbidden: the tenant is of another organization, or not in the token's tenants.
    """
    if principal.is_admin:
        return
    if principal.org != tenant_org:
        raise Forbidden(f"the token is not valid for tenant {tenant_id!r}")
    limited = principal.tenants is not None and not principal.has_any("service")
    if limited and tenant_id not in (principal.tenants or ()):
        raise Forbidden(f"the token may not act for tenant {tenant_id!r}",
                        details={"tenantId": tenant_id})


# -- keys and tokens for development ----------------------------------------------------------

def dev_secret_dir() -> Path:
    """The directory of the development secret: this user's data directory for lcx
    (``$XDG_DATA_HOME/lcx``, by default ``~/.local/share/lcx`` on Linux), so that
    ``lcx serve`` and ``lcx token`` agree whatever their working directories."""
    return platformdirs.user_data_path("lcx", appauthor=False)


def resolve_secret(config: AuthConfig, state_dir: Path) -> str:
    """Return the HS256 secret: ``auth.jwt_secret``, else the development secret.

    The development secret is 32 random bytes (urlsafe base64) kept in
    ``state_dir/.lcx-dev-secret`` with mode 0600 (``state_dir`` is normally
    :func:`dev_secret_dir`, created with mode 0700 if missing): created on first use
    (atomically, so concurrent callers agree) and read afterwards; idempotent. Production
    sets ``auth.jwt_secret`` instead. Logs a warning, naming the file, when the development
    secret is used.

    Raises:
        ConfigError: ``auth.jwt_public_key_file`` is set (there is no secret to sign
            with), or the file cannot be created or read, or is empty.
    """
    if config.jwt_secret:
        return config.jwt_secret
    if config.jwt_public_key_file:
        raise ConfigError("auth.jwt_public_key_file: tokens are RS256/ES256 and signed by "
                          "your identity provider; lcx has no HS256 secret to sign with")
    path = state_dir / DEV_SECRET_FILE
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = _read_or_create(path)
    except OSError as exc:
        raise ConfigError(f"auth.jwt_secret: not set, and the development secret {path} "
                          f"cannot be used: {exc.strerror}") from exc
    if not secret:
        raise ConfigError(f"auth.jwt_secret: not set, and the development secret {path} is "
                          "empty; delete it to make a new one")
    if path not in _warned_dev_secrets:
        _warned_dev_secrets.add(path)
        _log.warning("auth.jwt_secret is not set: using the development secret in %s; "
                     "production must set auth.jwt_secret", path, extra={"path": str(path)})
    return secret


_warned_dev_secrets: set[Path] = set()
"""Development secret files already warned about (once per process is enough)."""


def _read_or_create(path: Path) -> str:
    """Create ``path`` with a fresh secret unless it exists; return its content.

    The secret is written to a private temporary file first and hard-linked into place,
    so no reader ever sees a half-written file and the first creator wins.
    """
    if not path.exists():
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


def build_verifier(config: AuthConfig, state_dir: Path, *,
                   leeway_seconds: float = 0.0) -> TokenVerifier:
    """Return the verifier of ``lcx serve``: the configured key, else the development secret.

    Raises:
        ConfigError: as :class:`TokenVerifier` and :func:`resolve_secret` do.
    """
    if config.jwt_public_key_file or config.jwt_secret:
        return TokenVerifier(config, leeway_seconds=leeway_seconds)
    config = msgspec.structs.replace(config, jwt_secret=resolve_secret(config, state_dir))
    return TokenVerifier(config, leeway_seconds=leeway_seconds,
                         dev_secret=state_dir / DEV_SECRET_FILE)


def mint_token(secret: str, *, sub: str, org: str | None, scopes: Iterable[str] | str,
               groups: Iterable[str] = (), tenants: Iterable[str] | None = None,
               name: str | None = None, ttl_seconds: int = 3600, issuer: str = "",
               audience: str = "") -> str:
    """Return an HS256 token with lcx's claims, for development and tests.

    ``scopes`` is a space-separated string or an iterable; it is not checked, so tests can
    mint refused tokens (a negative ``ttl_seconds`` mints an expired one). ``iss``/``aud``
    are set only when given; ``org``, ``tenants`` and ``name`` only when not ``None``.

    Raises:
        ValueError: ``secret`` is empty.
    """
    if not secret:
        raise ValueError("mint_token needs a non-empty secret")
    now = int(time.time())
    scope = scopes if isinstance(scopes, str) else " ".join(scopes)
    claims: dict[str, Any] = {"sub": sub, "scope": scope, "iat": now, "exp": now + ttl_seconds}
    optional: dict[str, Any] = {
        "org": org, "name": name, "iss": issuer or None, "aud": audience or None,
        "tenants": None if tenants is None else list(tenants), "groups": list(groups) or None}
    claims.update((claim, value) for claim, value in optional.items() if value is not None)
    return jwt.encode(claims, secret, algorithm=HS256)
