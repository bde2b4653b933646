"""Rules of the configuration that its types cannot express, and the warnings of a start.

:func:`check_settings` refuses what would pass type checking but could never work: a
store URL lcx has no backend for, a URL that is not one, an edge table under a tenant that
does not use that edge, a provider or channel without its credentials. Each refusal is a
:class:`~lcx.errors.ConfigError` whose message starts with the dotted key, like every
other configuration error. :func:`start_warnings` lists what works but is probably not
meant (a tenant whose events would go out unsigned).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lcx.errors import ConfigError

if TYPE_CHECKING:
    from lcx.config import Settings, TenantConfig

__all__ = ["STORE_SCHEMES", "check_settings", "start_warnings"]

STORE_SCHEMES = ("sqlite", "postgresql", "postgres")
"""The store URL schemes lcx has a backend for."""

REDIS_SCHEMES = ("redis", "rediss", "unix")

EDGE_TABLES = {"genesys": "provider", "zendesk": "provider", "cisco": "provider",
               "livechat": "channel"}
"""Each edge table of a tenant, and the tenant key that selects it."""

CREDENTIALS = {
    "genesys": ("client_id", "client_secret", "organization_id", "deployment_id"),
    "zendesk": ("app_id", "key_id", "key_secret"),
    "cisco": ("api_url", "feed_ref_url"),
    "livechat": ("account_id", "pat", "organization_id", "webhook_secret_key"),
}
"""The keys of each edge table without which the edge cannot open a session."""

EDGE_URLS = ("api_url", "login_url", "feed_ref_url")


def check_settings(settings: Settings) -> None:
    """Refuse a configuration that cannot work.

    Raises:
        ConfigError: the first broken rule; the message starts with the key.
    """
    _check_store_url(settings.store.url)
    if settings.auth.jwt_secret and settings.auth.jwt_public_key_file:
        raise ConfigError("auth: set either jwt_secret (HS256) or jwt_public_key_file "
                          "(RS256/ES256), not both")
    _check_url("server.public_url", settings.server.public_url)
    _check_url("attachments.s3_endpoint", settings.attachments.s3_endpoint, optional=True)
    redis = settings.cluster.redis_url
    if redis and urlsplit(redis).scheme not in REDIS_SCHEMES:
        raise ConfigError(f"cluster.redis_url: expected a redis://, rediss:// or unix:// URL, "
                          f"got {_scheme_of(redis)}")
    for index, tenant in enumerate(settings.tenants):
        _check_tenant(f"tenants[{index}]", tenant)


def start_warnings(settings: Settings) -> list[str]:
    """What ``lcx serve`` should warn about at start: one line per tenant whose bot events
    would be sent unsigned (a ``bot_events_url`` but no ``webhook_secret``)."""
    return [f"tenants[{index}].webhook_secret is empty: events to tenant {tenant.id!r} at "
            f"{tenant.bot_events_url} are sent without an X-Lcx-Signature"
            for index, tenant in enumerate(settings.tenants)
            if tenant.bot_events_url and not tenant.webhook_secret]


def _check_store_url(url: str) -> None:
    scheme, separator, _ = url.partition("://")
    if not separator or scheme.lower() not in STORE_SCHEMES:
        raise ConfigError("store.url: expected sqlite:///path or postgresql://user@host/db, "
                          f"got {_scheme_of(url)}")


def _scheme_of(url: str) -> str:
    """The scheme of a URL, for messages (the rest may carry a password)."""
    scheme, separator, _ = url.partition("://")
    return f"a {scheme}:// URL" if separator and scheme else "no URL scheme"


def _check_url(key: str, value: str, *, optional: bool = False) -> None:
    if optional and not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")


def _check_tenant(key: str, tenant: TenantConfig) -> None:
    _check_url(f"{key}.bot_events_url", tenant.bot_events_url, optional=True)
    _check_url(f"{key}.event_publisher_url", tenant.event_publisher_url, optional=True)
    for table, selector in EDGE_TABLES.items():
        config = getattr(tenant, table)
        chosen = getattr(tenant, selector) == table
        if config is None:
            if chosen:
                raise ConfigError(f"{key}.{table}: required when {selector} = {table!r} "
                                  f"(a [tenants.{table}] table after the tenant's entry)")
            continue
        if not chosen:
            raise ConfigError(f"{key}.{table}: this tenant's {selector} is "
                              f"{getattr(tenant, selector)!r}; [tenants.{table}] is only for "
                              f"{selector} = {table!r}")
        for name in CREDENTIALS[table]:
            if not getattr(config, name):
                raise ConfigError(f"{key}.{table}.{name}: required when {selector} = "
                                  f"{table!r}")
        for name in EDGE_URLS:
            if name in config.__struct_fields__:
                _check_url(f"{key}.{table}.{name}", getattr(config, name),
                           optional=name not in CREDENTIALS[table])
