"""Typed configuration: the one place that reads ``config.toml`` and the environment.

:func:`load_settings` reads a TOML file (API.md section 9), replaces ``${NAME}`` inside every
string value from the environment, converts the result into the frozen :class:`Settings` tree
and checks the rules a type cannot express. Every key has a default, so no file at all gives
a runnable single-instance configuration. Every problem is a :class:`~lcx.errors.ConfigError`
whose message starts with the dotted key path (``tenants[0].genesys.client_id: ...``) or, for
a file that cannot be read or parsed, with the file name.

Environment references inside string values:

- ``${NAME}``: the value of ``NAME``; an error when ``NAME`` is not set.
- ``${NAME:-fallback}``: the value of ``NAME``, or ``fallback`` when it is unset or empty.
- ``$${``: a literal ``${``.

Replacement is a single pass: a value taken from the environment is never expanded again.
Nothing else in lcx reads ``os.environ``; callers pass the :class:`Settings` down.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from lcx.config_checks import check_settings
from lcx.errors import ConfigError

Provider = Literal["helvia", "genesys", "cisco", "zendesk", "livechat"]
Channel = Literal["bot", "livechat", "messenger", "twilio", "x", "aex"]
AttachmentBackend = Literal["local", "s3"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "text"]

CONFIG_ENV_VAR = "LCX_CONFIG"


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[server]``: the HTTP listener, request size limit and shutdown grace period."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 1_048_576
    shutdown_timeout_seconds: float = 20.0


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[store]``: the database URL (``sqlite:///path`` or ``postgresql://...``) and, for
    SQLite, how hard a commit syncs (``full``: fsynced, survives a power cut; ``normal``:
    survives a kill of lcx but not an OS crash; opt-in)."""

    url: str = "sqlite:///./lcx.db"
    sqlite_synchronous: Literal["full", "normal"] = "full"
    idempotency_days: int = 7
    """How long the answer to an idempotent call (a bot message's ``id``, an
    ``Idempotency-Key``) is kept: a resend within it gets the first answer; the daily
    retention sweep deletes older ones."""
    postgres_inline_connections: int = 4
    """PostgreSQL only: connections each instance keeps open to run transactions on its
    event loop's thread (0 to 64; 0: every transaction in a worker thread), besides its
    pool of up to 10."""


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[cluster]``: Redis bus (empty URL: single instance), instance id, heartbeat, lease."""

    redis_url: str = ""
    instance_id: str = ""
    heartbeat_ms: int = 1000
    lease_ms: int = 5000
    isolated_grace_ms: int = 30000
    """How long an instance cut off from the cluster keeps its ownership sweep idle (it
    wakes no conversation, queue or provider stream as if it owned them all) before it
    serves alone; at least ``lease_ms``."""


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[auth]``: JWT verification; an empty ``jwt_secret`` means "not configured"."""

    jwt_secret: str = ""
    jwt_public_key_file: str = ""
    issuer: str = ""
    audience: str = ""


class GenesysConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.genesys]``: Genesys Cloud credentials and endpoints of one tenant."""

    api_url: str = "https://api.mypurecloud.com"
    login_url: str = "https://login.mypurecloud.com"
    client_id: str = ""
    client_secret: str = ""
    organization_id: str = ""
    deployment_id: str = ""
    queue_name: str = ""


class LivechatConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.livechat]``: LiveChat account, tokens and request rate of one tenant."""

    api_url: str = "https://api.livechatinc.com"
    account_id: str = ""
    pat: str = ""
    organization_id: str = ""
    webhook_secret_key: str = ""
    signature_secret: str = ""
    requests_per_second: float = 10.0


class ZendeskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.zendesk]``: Sunshine Conversations app and keys of one tenant."""

    api_url: str = "https://api.smooch.io"
    app_id: str = ""
    key_id: str = ""
    key_secret: str = ""
    webhook_api_key: str = ""
    poll_interval_seconds: float = 5.0


class CiscoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.cisco]``: Cisco chat endpoints and poll interval of one tenant."""

    api_url: str = ""
    feed_ref_url: str = ""
    poll_interval_seconds: float = 5.0


class MessengerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.messenger]``: the Facebook page whose Messenger customers the tenant
    serves (webhooks matched by page id)."""

    api_url: str = "https://graph.facebook.com/v21.0"
    page_id: str = ""
    page_access_token: str = ""
    app_secret: str = ""
    verify_token: str = ""
    spam_threshold: int = 2000


class TwilioConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.twilio]``: the Twilio account and number (SMS or WhatsApp) of a tenant
    (webhooks matched by ``AccountSid`` and ``To``)."""

    api_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    webhook_url: str = ""
    spam_threshold: int = 2000


class XConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.x]``: the X business account whose direct messages the tenant serves
    (webhooks matched by ``for_user_id``)."""

    api_url: str = "https://api.x.com"
    user_id: str = ""
    consumer_secret: str = ""
    access_token: str = ""
    spam_threshold: int = 2000


class AexConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[tenants.aex]``: the AEX deployment whose ``/aex/initiate`` calls land here."""

    deployment_id: str = ""


class TenantConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[tenants]]`` entry (``id``, ``organization_id`` required; absent sub-table: None)."""

    id: str
    organization_id: str
    provider: Provider = "helvia"
    channel: Channel = "bot"
    default_user_group: str = ""
    bot_events_url: str = ""
    webhook_secret: str = ""
    event_publisher_url: str = ""
    event_publisher_token: str = ""
    genesys: GenesysConfig | None = None
    livechat: LivechatConfig | None = None
    zendesk: ZendeskConfig | None = None
    cisco: CiscoConfig | None = None
    messenger: MessengerConfig | None = None
    twilio: TwilioConfig | None = None
    x: XConfig | None = None
    aex: AexConfig | None = None


class AttachmentsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[attachments]``: where files are kept (local dir or S3), size cap, URL lifetime."""

    backend: AttachmentBackend = "local"
    dir: str = "./attachments"
    max_bytes: int = 26_214_400
    url_ttl_seconds: int = 3600
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""


class WsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[ws]``: agent websocket backlog limits and heartbeat interval."""

    max_queued_frames: int = 1000
    max_queued_bytes: int = 1024 * 1024
    """Bytes one socket may have waiting to be written (then it is cut off, 4008)."""
    max_queued_bytes_total: int = 64 * 1024 * 1024
    """Bytes all the agent sockets of one instance may have waiting together."""
    heartbeat_seconds: float = 20.0


class DeliveryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[delivery]``: retry policy of outbound deliveries (attempts, backoff bounds)."""

    max_attempts: int = 8
    initial_backoff_ms: int = 200
    max_backoff_ms: int = 30_000


class EdgesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[edges]``: the circuit breaker of calls to providers and channels (per account):
    retryable failures in a row that open it, its first cooldown and the cap its doubling
    stops at."""

    breaker_failures: int = 5
    breaker_cooldown_ms: int = 1000
    breaker_max_cooldown_ms: int = 30_000


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[metrics]``: the window of the average waiting time (API.md section 3)."""

    window_seconds: int = 3600


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[log]``: minimum log level and output format."""

    level: LogLevel = "info"
    format: LogFormat = "json"


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole configuration, built once at start-up and passed down; immutable."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    tenants: tuple[TenantConfig, ...] = ()
    attachments: AttachmentsConfig = msgspec.field(default_factory=AttachmentsConfig)
    ws: WsConfig = msgspec.field(default_factory=WsConfig)
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    edges: EdgesConfig = msgspec.field(default_factory=EdgesConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, expand and validate the configuration; ``path=None`` gives all the defaults.

    ``environ`` (default ``os.environ``) supplies ``${NAME}`` references. Raises
    :class:`ConfigError` for a missing or unreadable file, invalid TOML, an unset variable,
    an unknown key, a wrong type or value, or a broken cross-field rule.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    raw = {} if path is None else _read_toml(os.fspath(path))
    settings = _convert(_substitute(raw, "", env))
    _validate(settings)
    return settings


def resolve_config_path(
    cli_path: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Return the config file to load: ``--config`` wins, then ``LCX_CONFIG``, else ``None``.

    Empty strings count as not given. ``environ`` defaults to ``os.environ``. Never raises.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    return cli_path or env.get(CONFIG_ENV_VAR) or None


def default_instance_id() -> str:
    """Return ``"<hostname>-<pid>"``, the instance id used when none is configured."""
    return f"{socket.gethostname()}-{os.getpid()}"


def effective_instance_id(settings: Settings) -> str:
    """Return ``cluster.instance_id``, or :func:`default_instance_id` when it is empty."""
    return settings.cluster.instance_id or default_instance_id()


_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _substitute(value: Any, key: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expand(value, key, environ)
    if isinstance(value, dict):
        return {k: _substitute(v, _join(key, k), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{key}[{i}]", environ) for i, v in enumerate(value)]
    return value


def _expand(text: str, key: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            raise ConfigError(
                f"{key}: malformed reference; use ${{NAME}} or ${{NAME:-fallback}}, "
                "and $${ for a literal ${"
            )
        value = environ.get(name)
        if fallback is not None:
            return value or fallback
        if value is None:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return value

    return _REFERENCE.sub(replace, text)


_TYPE_NAMES = {"object": "table", "object | null": "table"}


def _convert(raw: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(str(exc))) from exc


def _describe(error: str) -> str:
    """Turn a msgspec error (``Expected `int`, got `str` - at `$.server.port```) into ours."""
    what, _, where = error.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", what):
        return f"{_join(path, found[1])}: unknown key"
    if found := re.fullmatch(r"Object missing required field `(.*)`", what):
        return f"{_join(path, found[1])}: missing required key"
    if found := re.fullmatch(r"Expected `(.*)`, got `(.*)`", what):
        expected, got = (_TYPE_NAMES.get(name, name) for name in found.groups())
        return f"{path}: expected {expected}, got {got}"
    if found := re.fullmatch(r"Invalid enum value (.*)", what):
        choices = ", ".join(repr(choice) for choice in _choices(path))
        return f"{path}: expected one of {choices}; got {found[1]}"
    return f"{path or '<root>'}: {what}"


def _choices(path: str) -> tuple[Any, ...]:
    """Return the ``Literal`` values allowed at a msgspec path such as ``tenants[0].provider``."""
    kind: Any = Settings
    for part in re.findall(r"[^.\[\]]+", path):
        kind = typing.get_args(kind)[0] if part.isdigit() else _field_type(kind, part)
    return typing.get_args(kind)


def _field_type(struct: type, name: str) -> Any:
    """Return the declared type of a Struct field, with ``X | None`` narrowed to ``X``."""
    kind = typing.get_type_hints(struct)[name]
    if isinstance(kind, types.UnionType):
        return next(member for member in typing.get_args(kind) if member is not type(None))
    return kind


def _validate(settings: Settings) -> None:
    _check_numbers(settings, "")
    port, cl, de = settings.server.port, settings.cluster, settings.delivery
    _require(0 <= port <= 65535, f"server.port: must be between 0 and 65535, got {port}")
    inline = settings.store.postgres_inline_connections
    _require(inline <= 64,
             f"store.postgres_inline_connections: must be at most 64, got {inline}")
    _require(cl.lease_ms > cl.heartbeat_ms, "cluster.lease_ms: must exceed cluster.heartbeat_ms")
    _require(cl.isolated_grace_ms >= cl.lease_ms,
             "cluster.isolated_grace_ms: must be at least cluster.lease_ms")
    _require(
        de.max_backoff_ms >= de.initial_backoff_ms,
        "delivery.max_backoff_ms: must be at least delivery.initial_backoff_ms",
    )
    _require(
        settings.attachments.backend != "s3" or bool(settings.attachments.s3_bucket),
        'attachments.s3_bucket: required when attachments.backend = "s3"',
    )
    _require(settings.ws.max_queued_bytes_total >= settings.ws.max_queued_bytes,
             "ws.max_queued_bytes_total: must be at least ws.max_queued_bytes")
    _check_tenant_ids(settings.tenants)
    check_settings(settings)
    edges = settings.edges
    _require(edges.breaker_max_cooldown_ms >= edges.breaker_cooldown_ms,
             "edges.breaker_max_cooldown_ms: must be at least edges.breaker_cooldown_ms")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


_ZERO_ALLOWED = frozenset({"store.postgres_inline_connections"})
"""Numbers that may be 0 (no inline connection); ``server.port`` has its own check."""


def _check_numbers(node: object, key: str) -> None:
    """Every number must be positive, except those of :data:`_ZERO_ALLOWED` and
    ``server.port`` (0 asks for a free port; :func:`_validate` checks its range)."""
    if isinstance(node, msgspec.Struct):
        for name in node.__struct_fields__:
            _check_numbers(getattr(node, name), _join(key, name))
    elif isinstance(node, tuple):
        for index, item in enumerate(node):
            _check_numbers(item, f"{key}[{index}]")
    elif isinstance(node, int | float):
        if key == "server.port":
            return  # its own range check, 0..65535
        if key in _ZERO_ALLOWED:
            _require(node >= 0, f"{key}: must not be negative, got {node}")
        else:
            _require(node > 0, f"{key}: must be positive, got {node}")


def _check_tenant_ids(tenants: tuple[TenantConfig, ...]) -> None:
    first: dict[str, int] = {}
    for index, tenant in enumerate(tenants):
        key = f"tenants[{index}].id"
        _require(bool(tenant.id), f"{key}: must not be empty")
        _require(
            tenant.id not in first,
            f"{key}: duplicate tenant id {tenant.id!r} (also tenants[{first.get(tenant.id)}].id)",
        )
        first[tenant.id] = index
