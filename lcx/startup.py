"""Checks ``lcx serve`` makes before it builds the supervision tree.

A restart cannot cure an address that is taken, a store that cannot be opened or a key
file that cannot be read, so these are found before anything is supervised: each is a
:class:`StartupFailure` carrying the exit code that tells them apart, and ``lcx serve``
prints its one-line message and exits instead of restarting six times.
"""

from __future__ import annotations

import errno
import socket

from lcx.auth import TokenVerifier
from lcx.config import Settings
from lcx.errors import ConfigError, LcxError, StoreError

__all__ = ["EXIT_BIND", "EXIT_KEY_FILE", "EXIT_STORE", "StartupFailure", "preflight"]

EXIT_BIND = 3
"""``server.host``/``server.port`` cannot be listened on."""
EXIT_STORE = 4
"""The store cannot be opened or migrated."""
EXIT_KEY_FILE = 5
"""``auth.jwt_public_key_file`` cannot be read or holds no usable public key."""


class StartupFailure(LcxError):
    """A cause that stops ``lcx serve`` before it starts; ``exit_code`` names its kind
    (1, the generic failure, when not given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause wrote
        self.exit_code = exit_code


async def preflight(settings: Settings) -> None:
    """Check the key file, the listening address and the store, in that order.

    The store is opened (and migrated) and closed again; the address is bound and
    released (port 0 is not checked: any free port will do).

    Raises:
        StartupFailure: the first check that fails, with its exit code.
    """
    check_key_file(settings)
    check_address(settings.server.host, settings.server.port)
    await check_store(settings.store.url)


def check_key_file(settings: Settings) -> None:
    """Raises :class:`StartupFailure` (:data:`EXIT_KEY_FILE`) when the configured public
    key file cannot be read or is not an RSA / P-256 public key."""
    if not settings.auth.jwt_public_key_file:
        return
    try:
        TokenVerifier(settings.auth)
    except ConfigError as exc:
        raise StartupFailure(str(exc), EXIT_KEY_FILE) from None


def check_address(host: str, port: int) -> None:
    """Raises :class:`StartupFailure` (:data:`EXIT_BIND`) when ``host:port`` cannot be
    bound, with the options the HTTP server binds with."""
    if port == 0:
        return
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else \
            (exc.strerror or str(exc))
        raise StartupFailure(f"server.port: cannot listen on {host}:{port}: {reason}",
                             EXIT_BIND) from None
    finally:
        sock.close()


async def check_store(url: str) -> None:
    """Raises :class:`StartupFailure` (:data:`EXIT_STORE`) when the store cannot be opened
    and migrated (its message names the scheme or host, never the password)."""
    from lcx.store import open_store

    try:
        async with open_store(url):
            pass
    except StoreError as exc:
        raise StartupFailure(f"store.url: {exc}", EXIT_STORE) from None
