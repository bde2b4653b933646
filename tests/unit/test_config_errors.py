"""Configuration errors: every problem is a ConfigError whose message starts with the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcx.config import load_settings
from lcx.errors import ConfigError, LcxError

TENANT = '[[tenants]]\nid = "t1"\norganization_id = "o1"\n'


def _error(tmp_path: Path, text: str | bytes, environ: dict[str, str] | None = None) -> str:
    """Load ``text`` as a config file and return the ConfigError message it must raise."""
    path = tmp_path / "lcx.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    return str(info.value)


def test_config_error_is_an_lcx_error() -> None:
    """ConfigError belongs to the one lcx error tree."""
    assert issubclass(ConfigError, LcxError)


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("[server]\nprot = 8080\n", "server.prot: unknown key"),
        ("colour = 1\n", "colour: unknown key"),
        ("[sever]\nport = 1\n", "sever: unknown key"),
        (TENANT + "name = 1\n", "tenants[0].name: unknown key"),
        (TENANT + "[tenants.genesys]\nclientid = 1\n", "tenants[0].genesys.clientid: unknown key"),
        (TENANT + "[tenants.teams]\n", "tenants[0].teams: unknown key"),
    ],
)
def test_unknown_key(tmp_path: Path, text: str, prefix: str) -> None:
    """An unknown key, at any depth, is named with its dotted path."""
    assert _error(tmp_path, text) == prefix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nport = "8080"\n', "server.port: expected int, got str"),
        ("[server]\nport = 80.5\n", "server.port: expected int, got float"),
        ("[server]\nhost = 1\n", "server.host: expected str, got int"),
        ("[ws]\nheartbeat_seconds = true\n", "ws.heartbeat_seconds: expected float, got bool"),
        ("server = 1\n", "server: expected table, got int"),
        ('[tenants]\nid = "t1"\n', "tenants: expected array, got table"),
        (TENANT + "genesys = 5\n", "tenants[0].genesys: expected table, got int"),
        (
            TENANT + "[tenants.genesys]\nclient_id = 7\n",
            "tenants[0].genesys.client_id: expected str, got int",
        ),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, message: str) -> None:
    """A value of the wrong type names the key, the expected type and the given type."""
    assert _error(tmp_path, text) == message


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        (TENANT + 'provider = "teams"\n', "tenants[0].provider: expected one of 'helvia', "),
        (TENANT + 'channel = "sms"\n', "tenants[0].channel: expected one of 'bot', 'livechat'"),
        ('[attachments]\nbackend = "ftp"\n', "attachments.backend: expected one of 'local', 's3'"),
        ('[log]\nformat = "xml"\n', "log.format: expected one of 'json', 'text'"),
        ('[log]\nlevel = "loud"\n', "log.level: expected one of 'debug', "),
    ],
)
def test_bad_enum_value(tmp_path: Path, text: str, prefix: str) -> None:
    """A value outside a fixed set names the key and lists the allowed values."""
    assert _error(tmp_path, text).startswith(prefix)


def test_bad_enum_value_echoes_the_value(tmp_path: Path) -> None:
    """The enum error ends with the refused value."""
    assert _error(tmp_path, TENANT + 'provider = "teams"\n').endswith("got 'teams'")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[tenants]]\norganization_id = "o1"\n', "id"),
        ('[[tenants]]\nid = "t1"\n', "organization_id"),
    ],
)
def test_missing_required_tenant_key(tmp_path: Path, text: str, key: str) -> None:
    """A tenant without ``id`` or ``organization_id`` names the missing key."""
    assert _error(tmp_path, text) == f"tenants[0].{key}: missing required key"


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    """Invalid TOML is reported with the file name and the line number."""
    message = _error(tmp_path, '[server]\nhost = "unterminated\n')
    assert message.startswith(f"{tmp_path / 'lcx.toml'}: invalid TOML: ")
    assert "line 2" in message


def test_non_utf8_file_is_invalid_toml(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported as invalid TOML, not a decoding traceback."""
    message = _error(tmp_path, b'[server]\nhost = "\xff"\n')
    assert message.startswith(f"{tmp_path / 'lcx.toml'}: invalid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    """A config file that does not exist is named in the error."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"{path}: config file not found"


def test_unreadable_path(tmp_path: Path) -> None:
    """A path that cannot be read as a file (a directory) is a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file: ")


def test_unset_environment_variable(tmp_path: Path) -> None:
    """``${NAME}`` with NAME unset names the key and the variable."""
    message = _error(tmp_path, '[auth]\njwt_secret = "${LCX_JWT_SECRET}"\n')
    assert message == "auth.jwt_secret: environment variable LCX_JWT_SECRET is not set"


def test_unset_environment_variable_in_tenant_sub_table(tmp_path: Path) -> None:
    """An unset variable inside a tenant sub-table is named with the tenant's index."""
    text = TENANT + TENANT.replace("t1", "t2") + '[tenants.zendesk]\nkey_secret = "${ZK}"\n'
    message = _error(tmp_path, text)
    assert message == "tenants[1].zendesk.key_secret: environment variable ZK is not set"


@pytest.mark.parametrize("value", ["${", "${}", "${1X}", "${NAME", "${NAME:fallback}"])
def test_malformed_reference(tmp_path: Path, value: str) -> None:
    """A ``${`` that is not a well-formed reference is refused, naming the key."""
    message = _error(tmp_path, f'[auth]\nissuer = "{value}"\n', {"NAME": "x"})
    assert message.startswith("auth.issuer: malformed reference")


def test_duplicate_tenant_id(tmp_path: Path) -> None:
    """Two tenants with the same id are refused, naming the second and the first."""
    message = _error(tmp_path, TENANT + TENANT)
    assert message == "tenants[1].id: duplicate tenant id 't1' (also tenants[0].id)"


def test_empty_tenant_id(tmp_path: Path) -> None:
    """A tenant id must not be empty."""
    message = _error(tmp_path, TENANT.replace('"t1"', '""'))
    assert message == "tenants[0].id: must not be empty"


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range(tmp_path: Path, port: int) -> None:
    """``server.port`` must be within 0..65535."""
    message = _error(tmp_path, f"[server]\nport = {port}\n")
    assert message == f"server.port: must be between 0 and 65535, got {port}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        ("[server]\nshutdown_timeout_seconds = -1\n", "server.shutdown_timeout_seconds"),
        ("[cluster]\nheartbeat_ms = 0\n", "cluster.heartbeat_ms"),
        ("[attachments]\nmax_bytes = -5\n", "attachments.max_bytes"),
        ("[ws]\nmax_queued_frames = 0\n", "ws.max_queued_frames"),
        ("[ws]\nheartbeat_seconds = nan\n", "ws.heartbeat_seconds"),
        ("[delivery]\nmax_attempts = 0\n", "delivery.max_attempts"),
        ("[metrics]\nwindow_seconds = 0\n", "metrics.window_seconds"),
        (
            TENANT + "[tenants.zendesk]\npoll_interval_seconds = 0\n",
            "tenants[0].zendesk.poll_interval_seconds",
        ),
    ],
)
def test_non_positive_number(tmp_path: Path, text: str, key: str) -> None:
    """Sizes, counts, intervals and timeouts must be positive; the message names the key."""
    assert _error(tmp_path, text).startswith(f"{key}: must be positive, got ")


def test_lease_must_outlast_heartbeat(tmp_path: Path) -> None:
    """``cluster.lease_ms`` not greater than ``cluster.heartbeat_ms`` is refused."""
    message = _error(tmp_path, "[cluster]\nheartbeat_ms = 1000\nlease_ms = 1000\n")
    assert message == "cluster.lease_ms: must exceed cluster.heartbeat_ms"


def test_max_backoff_below_initial_backoff(tmp_path: Path) -> None:
    """``delivery.max_backoff_ms`` below ``delivery.initial_backoff_ms`` is refused."""
    message = _error(tmp_path, "[delivery]\ninitial_backoff_ms = 500\nmax_backoff_ms = 100\n")
    assert message == "delivery.max_backoff_ms: must be at least delivery.initial_backoff_ms"


def test_s3_backend_needs_a_bucket(tmp_path: Path) -> None:
    """The s3 attachments backend without ``s3_bucket`` is refused."""
    message = _error(tmp_path, '[attachments]\nbackend = "s3"\n')
    assert message.startswith("attachments.s3_bucket: required when")
