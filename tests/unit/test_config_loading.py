"""Loading configuration: defaults, the example file, ${VAR} substitution, file choice."""

from __future__ import annotations

import os
import socket
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lcx.config import (
    CiscoConfig,
    GenesysConfig,
    LivechatConfig,
    Settings,
    TenantConfig,
    ZendeskConfig,
    default_instance_id,
    effective_instance_id,
    load_settings,
    resolve_config_path,
)
from lcx.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.toml"

TENANT = '[[tenants]]\nid = "t1"\norganization_id = "o1"\n'
GENESYS_CREDENTIALS = 'client_id = "cid"\norganization_id = "gorg"\ndeployment_id = "dep"\n'
"""A genesys table's required keys but ``client_secret``."""


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "lcx.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ=environ or {})


def test_no_file_gives_the_documented_defaults() -> None:
    """With no file every key takes its API.md default and the secret is unset."""
    settings = load_settings(None, environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.server.public_url == "http://127.0.0.1:8080"
    assert settings.server.max_body_bytes == 1_048_576
    assert settings.server.shutdown_timeout_seconds == 20
    assert settings.store.url == "sqlite:///./lcx.db"
    assert settings.cluster.redis_url == ""
    assert (settings.cluster.heartbeat_ms, settings.cluster.lease_ms) == (1000, 5000)
    assert settings.auth.jwt_secret == ""
    assert settings.tenants == ()
    assert settings.attachments.backend == "local"
    assert settings.attachments.max_bytes == 26_214_400
    assert settings.attachments.url_ttl_seconds == 3600
    assert (settings.ws.max_queued_frames, settings.ws.heartbeat_seconds) == (1000, 20)
    assert settings.delivery.max_attempts == 8
    assert (settings.delivery.initial_backoff_ms, settings.delivery.max_backoff_ms) == (200, 30000)
    assert settings.metrics.window_seconds == 3600
    assert (settings.log.level, settings.log.format) == ("info", "json")


def test_empty_file_equals_no_file(tmp_path: Path) -> None:
    """An empty file gives exactly the same settings as no file."""
    assert _load(tmp_path, "") == load_settings(None, environ={})


EXAMPLE_EDGE_ENV = {
    name: f"value-of-{name.lower()}" for name in (
        "GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET", "GENESYS_ORGANIZATION_ID",
        "GENESYS_DEPLOYMENT_ID", "LIVECHAT_ACCOUNT_ID", "LIVECHAT_PAT",
        "LIVECHAT_ORGANIZATION_ID", "LIVECHAT_WEBHOOK_SECRET", "ZENDESK_APP_ID",
        "ZENDESK_KEY_ID", "ZENDESK_KEY_SECRET")
} | {"CISCO_API_URL": "https://ccp.example.org", "CISCO_FEED_REF_URL":
     "https://ccp.example.org/ccp-webapp/ccp/feed/100000"}
"""The edge credentials the example file takes from the environment."""


def test_example_config_loads_once_its_edge_credentials_are_set() -> None:
    """The repository's config.toml loads with its edges' variables and nothing else."""
    settings = load_settings(EXAMPLE, environ=EXAMPLE_EDGE_ENV)
    assert [tenant.id for tenant in settings.tenants] == [f"t{n}" for n in range(1, 10)]
    assert settings.auth.jwt_secret == ""


def test_example_config_names_the_first_missing_credential() -> None:
    """Without them, the first edge credential is named with its variable."""
    with pytest.raises(ConfigError, match=r"^tenants\[1\]\.genesys\.client_id: environment "
                                          "variable GENESYS_CLIENT_ID is not set$"):
        load_settings(EXAMPLE, environ={})


def test_example_config_takes_secrets_from_the_environment() -> None:
    """The example file's secrets come from the variables it names."""
    environ = {**EXAMPLE_EDGE_ENV, "LCX_JWT_SECRET": "s3cret", "GENESYS_CLIENT_ID": "cid"}
    settings = load_settings(EXAMPLE, environ=environ)
    assert settings.auth.jwt_secret == "s3cret"
    genesys = settings.tenants[1].genesys
    assert genesys is not None
    assert genesys.client_id == "cid"


def _schema_keys(struct: type, prefix: str = "") -> set[str]:
    """Return the dotted keys a Struct accepts, descending into its sub-table Structs."""
    keys: set[str] = set()
    for name, kind in typing.get_type_hints(struct).items():
        options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
        tables = [k for k in options if isinstance(k, type) and issubclass(k, msgspec.Struct)]
        keys |= _schema_keys(tables[0], f"{prefix}{name}.") if tables else {prefix + name}
    return keys


def _toml_keys(raw: dict[str, Any], prefix: str = "") -> set[str]:
    """Return the dotted keys set in parsed TOML, descending into tables (not arrays)."""
    keys: set[str] = set()
    for name, value in raw.items():
        nested = isinstance(value, dict)
        keys |= _toml_keys(value, f"{prefix}{name}.") if nested else {prefix + name}
    return keys


def test_example_config_shows_every_key() -> None:
    """Every key of every section, tenant sub-tables included, appears in config.toml."""
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert _toml_keys(raw) == _schema_keys(Settings)
    tenant_keys = set().union(*(_toml_keys(tenant) for tenant in raw["tenants"]))
    assert tenant_keys == _schema_keys(TenantConfig)


def test_environment_variable_is_substituted(tmp_path: Path) -> None:
    """``${NAME}`` is replaced by the variable's value, also inside a longer string."""
    text = '[store]\nurl = "postgresql://lcx:${PGPASS}@db/lcx"\n'
    settings = _load(tmp_path, text, {"PGPASS": "pw"})
    assert settings.store.url == "postgresql://lcx:pw@db/lcx"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, "dev"), ({"LCX_JWT_SECRET": ""}, "dev"), ({"LCX_JWT_SECRET": "prod"}, "prod")],
)
def test_fallback_applies_when_unset_or_empty(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    """``${NAME:-fallback}`` gives the fallback when NAME is unset or empty."""
    settings = _load(tmp_path, '[auth]\njwt_secret = "${LCX_JWT_SECRET:-dev}"\n', environ)
    assert settings.auth.jwt_secret == expected


def test_empty_fallback_gives_empty_string(tmp_path: Path) -> None:
    """``${NAME:-}`` gives an empty string when NAME is unset."""
    settings = _load(tmp_path, '[auth]\njwt_secret = "${LCX_JWT_SECRET:-}"\n')
    assert settings.auth.jwt_secret == ""


def test_set_but_empty_variable_without_fallback_is_empty(tmp_path: Path) -> None:
    """``${NAME}`` with NAME set to "" is an empty string, not an error."""
    settings = _load(tmp_path, '[auth]\nissuer = "${ISS}"\n', {"ISS": ""})
    assert settings.auth.issuer == ""


def test_double_dollar_escapes_a_literal_reference(tmp_path: Path) -> None:
    """``$${NAME}`` yields the text ``${NAME}`` without looking NAME up."""
    settings = _load(tmp_path, '[auth]\nissuer = "a$${NOT_SET}b$x"\n')
    assert settings.auth.issuer == "a${NOT_SET}b$x"


def test_substituted_value_is_not_expanded_again(tmp_path: Path) -> None:
    """A value taken from the environment is used verbatim, even if it contains ``${``."""
    settings = _load(tmp_path, '[auth]\njwt_secret = "${S}"\n', {"S": "${OTHER}"})
    assert settings.auth.jwt_secret == "${OTHER}"


def test_substitution_reaches_tenant_sub_tables(tmp_path: Path) -> None:
    """References inside ``[tenants.genesys]`` are replaced like any other string."""
    text = (TENANT + 'provider = "genesys"\n[tenants.genesys]\n' + GENESYS_CREDENTIALS
            + 'client_secret = "${GENESYS_CLIENT_SECRET}"\n')
    settings = _load(tmp_path, text, {"GENESYS_CLIENT_SECRET": "gs"})
    assert settings.tenants[0].genesys == GenesysConfig(
        client_id="cid", organization_id="gorg", deployment_id="dep", client_secret="gs")


def test_non_string_values_are_left_alone(tmp_path: Path) -> None:
    """Numbers are not touched by substitution and ints are accepted for float keys."""
    settings = _load(tmp_path, "[ws]\nheartbeat_seconds = 5\n[server]\nport = 0\n")
    assert settings.ws.heartbeat_seconds == 5.0
    assert settings.server.port == 0


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``environ=`` the process environment supplies the references."""
    monkeypatch.setenv("LCX_TEST_ISSUER", "from-os")
    path = tmp_path / "lcx.toml"
    path.write_text('[auth]\nissuer = "${LCX_TEST_ISSUER}"\n', encoding="utf-8")
    assert load_settings(str(path)).auth.issuer == "from-os"


def test_tenants_keep_their_own_sub_tables(tmp_path: Path) -> None:
    """A ``[tenants.x]`` table belongs to the ``[[tenants]]`` entry just above it."""
    text = (
        '[[tenants]]\nid = "a"\norganization_id = "o1"\nprovider = "genesys"\n'
        '[tenants.genesys]\nqueue_name = "q"\nclient_secret = "cs"\n' + GENESYS_CREDENTIALS +
        '[[tenants]]\nid = "b"\norganization_id = "o1"\nprovider = "zendesk"\n'
        'channel = "livechat"\n'
        '[tenants.zendesk]\napp_id = "app"\nkey_id = "k"\nkey_secret = "ks"\n'
        '[tenants.livechat]\naccount_id = "acc"\npat = "p"\norganization_id = "lo"\n'
        'webhook_secret_key = "w"\n'
        '[[tenants]]\nid = "c"\norganization_id = "o2"\nprovider = "cisco"\n'
        '[tenants.cisco]\napi_url = "http://cisco"\nfeed_ref_url = "http://cisco/feed"\n'
    )
    a, b, c = _load(tmp_path, text).tenants
    assert a.genesys == GenesysConfig(queue_name="q", client_id="cid", client_secret="cs",
                                      organization_id="gorg", deployment_id="dep")
    assert (a.zendesk, a.livechat, a.cisco) == (None, None, None)
    assert (b.provider, b.channel, b.genesys) == ("zendesk", "livechat", None)
    assert b.zendesk == ZendeskConfig(app_id="app", key_id="k", key_secret="ks")
    assert b.livechat == LivechatConfig(account_id="acc", pat="p", organization_id="lo",
                                        webhook_secret_key="w")
    assert c.cisco == CiscoConfig(api_url="http://cisco", feed_ref_url="http://cisco/feed")


def test_tenant_defaults(tmp_path: Path) -> None:
    """A tenant with only its ids uses the helvia provider, the bot channel, no sub-tables."""
    (tenant,) = _load(tmp_path, TENANT).tenants
    assert (tenant.provider, tenant.channel) == ("helvia", "bot")
    assert tenant.bot_events_url == tenant.webhook_secret == tenant.default_user_group == ""
    assert (tenant.genesys, tenant.livechat, tenant.zendesk, tenant.cisco) == (None,) * 4


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    settings = load_settings(environ={})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cli_path", "environ", "expected"),
    [
        ("cli.toml", {"LCX_CONFIG": "env.toml"}, "cli.toml"),
        (None, {"LCX_CONFIG": "env.toml"}, "env.toml"),
        ("", {"LCX_CONFIG": "env.toml"}, "env.toml"),
        (None, {}, None),
        (None, {"LCX_CONFIG": ""}, None),
    ],
)
def test_config_path_precedence(
    cli_path: str | None, environ: dict[str, str], expected: str | None
) -> None:
    """``--config`` wins over ``LCX_CONFIG``; neither (or empty) means no file."""
    assert resolve_config_path(cli_path, environ) == expected


def test_instance_id_defaults_to_hostname_and_pid() -> None:
    """An empty ``cluster.instance_id`` resolves to ``<hostname>-<pid>``."""
    expected = f"{socket.gethostname()}-{os.getpid()}"
    assert default_instance_id() == expected
    assert effective_instance_id(load_settings(environ={})) == expected


def test_configured_instance_id_is_kept(tmp_path: Path) -> None:
    """A configured ``cluster.instance_id`` is kept as given."""
    settings = _load(tmp_path, '[cluster]\ninstance_id = "node-a"\n')
    assert settings.cluster.instance_id == "node-a"
    assert effective_instance_id(settings) == "node-a"
