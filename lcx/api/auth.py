"""Finding the bearer token of a request or websocket and verifying it (API.md section 2).

Routes call :func:`bearer_principal` (or :func:`authenticate`, which also checks scopes)
with the app's :class:`~lcx.auth.TokenVerifier`; the websocket calls
:func:`principal_from_query_or_frame` with the ``?token=`` value or the ``auth`` frame's
token. Every 401 from an HTTP request carries ``WWW-Authenticate: Bearer`` (RFC 6750).
"""

from __future__ import annotations

import re

from quart.wrappers import Request

from lcx.auth import Principal, TokenVerifier, require_scope
from lcx.errors import Unauthorized

__all__ = ["authenticate", "bearer_principal", "bearer_token", "principal_from_query_or_frame",
           "principal_of_header", "token_of_header"]

_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_CHALLENGE = 'Bearer realm="lcx"'
TOKENS_REMEMBERED = 10_000
"""``Authorization`` values whose token :func:`token_of_header` remembers (a bot sends
the same one with every request); past this the memory starts afresh."""
_tokens: dict[str, str] = {}


def _challenge(message: str, *, invalid_token: bool) -> dict[str, str]:
    if not invalid_token:
        return {"WWW-Authenticate": _CHALLENGE}
    description = message.replace("\\", "").replace('"', "'")
    return {"WWW-Authenticate":
            f'{_CHALLENGE}, error="invalid_token", error_description="{description}"'}


def bearer_token(request: Request) -> str:
    """Return the token of the request's ``Authorization: Bearer <token>`` header.

    Raises:
        Unauthorized: the header is missing, of another scheme, or malformed; it carries
            ``WWW-Authenticate: Bearer``.
    """
    return token_of_header(request.headers.get("Authorization"))


def token_of_header(header: str | None) -> str:
    """Return the token of an ``Authorization`` header value (``None``: no header).

    Raises:
        Unauthorized: as :func:`bearer_token`.
    """
    if not header:
        message = "missing Authorization header; send 'Authorization: Bearer <token>'"
        raise Unauthorized(message, headers=_challenge(message, invalid_token=False))
    token = _tokens.get(header)
    if token is not None:
        return token
    found = _BEARER.fullmatch(header.strip())
    if found is None:
        message = "malformed Authorization header; expected 'Bearer <token>'"
        raise Unauthorized(message, headers=_challenge(message, invalid_token=True))
    if len(_tokens) >= TOKENS_REMEMBERED:
        _tokens.clear()
    token = _tokens[header] = found[1]
    return token


def bearer_principal(request: Request, verifier: TokenVerifier) -> Principal:
    """Return the verified principal of the request's bearer token.

    Raises:
        Unauthorized: the header is missing or malformed, or the token is refused (expired,
            badly signed, wrong claims...); it carries ``WWW-Authenticate: Bearer``.
    """
    return principal_of_header(request.headers.get("Authorization"), verifier)


def principal_of_header(header: str | None, verifier: TokenVerifier,
                        *scopes: str) -> Principal:
    """Return the verified principal of an ``Authorization`` header value, which must hold
    one of ``scopes`` when some are given (the lean routes read headers as bytes).

    Raises:
        Unauthorized: as :func:`bearer_principal`.
        Forbidden: the token holds none of ``scopes``.
    """
    token = token_of_header(header)
    try:
        principal = verifier.verify(token)
    except Unauthorized as exc:
        raise Unauthorized(exc.message, details=exc.details,
                           headers=_challenge(exc.message, invalid_token=True)) from None
    if scopes:
        require_scope(principal, *scopes)
    return principal


def authenticate(request: Request, verifier: TokenVerifier, *scopes: str) -> Principal:
    """Return the request's principal, which must hold one of ``scopes``.

    Raises:
        Unauthorized: as :func:`bearer_principal`.
        Forbidden: the token holds none of ``scopes``.
    """
    principal = bearer_principal(request, verifier)
    require_scope(principal, *scopes)
    return principal


def principal_from_query_or_frame(token: str | None, verifier: TokenVerifier) -> Principal:
    """Verify the token a websocket sent (``?token=`` or the first ``auth`` frame).

    Raises:
        Unauthorized: the token is missing or refused (the websocket closes with 4401).
    """
    if not token:
        raise Unauthorized("missing token; pass ?token=<jwt> or send an auth frame")
    return verifier.verify(token)
