"""Configurations that type-check but could never work are refused at load time, naming
the key; what works but is probably a mistake is a start-up warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcx.config import load_settings
from lcx.config_checks import start_warnings
from lcx.errors import ConfigError

TENANT = '[[tenants]]\nid = "t1"\norganization_id = "o1"\n'


def refusal(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError that loading ``text`` raises."""
    path = tmp_path / "lcx.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    return str(info.value)


@pytest.mark.parametrize("url", ["mysql://lcx@db/lcx", "lcx.db", "redis://localhost/0"])
def test_a_store_url_without_a_backend_is_refused(tmp_path: Path, url: str) -> None:
    """Only sqlite:// and postgresql:// have a backend; the message shows no more than
    the scheme (the URL may carry a password)."""
    message = refusal(tmp_path, f'[store]\nurl = "{url}"\n')
    assert message.startswith("store.url: expected sqlite:///path or postgresql://")
    assert "@db" not in message


@pytest.mark.parametrize("key", ["bot_events_url", "event_publisher_url"])
@pytest.mark.parametrize("value", ["not a url", "ftp://bot.example.org/events", "http://"])
def test_a_tenant_url_that_is_not_an_http_url_is_refused(tmp_path: Path, key: str,
                                                         value: str) -> None:
    """Events could never be delivered to it."""
    message = refusal(tmp_path, TENANT + f'{key} = "{value}"\n')
    assert message == f"tenants[0].{key}: expected an http:// or https:// URL, got {value!r}"


def test_a_genesys_tenant_without_credentials_is_refused(tmp_path: Path) -> None:
    """provider = "genesys" with empty credentials could open no guest chat."""
    text = TENANT + 'provider = "genesys"\n[tenants.genesys]\nclient_id = ""\n'
    assert refusal(tmp_path, text) == \
        "tenants[0].genesys.client_id: required when provider = 'genesys'"


def test_a_genesys_tenant_without_its_table_is_refused(tmp_path: Path) -> None:
    """The table holding the credentials must be there at all."""
    message = refusal(tmp_path, TENANT + 'provider = "zendesk"\n')
    assert message.startswith("tenants[0].zendesk: required when provider = 'zendesk'")


def test_an_edge_table_under_a_tenant_of_another_provider_is_refused(tmp_path: Path) -> None:
    """[tenants.genesys] under a helvia tenant would be silently ignored."""
    text = TENANT + 'provider = "helvia"\n[tenants.genesys]\nclient_id = "c"\n'
    assert refusal(tmp_path, text) == (
        "tenants[0].genesys: this tenant's provider is 'helvia'; [tenants.genesys] is only "
        "for provider = 'genesys'")


def test_a_livechat_table_needs_the_livechat_channel(tmp_path: Path) -> None:
    """The channel tables follow the tenant's channel the same way."""
    text = TENANT + '[tenants.livechat]\npat = "p"\n'
    assert refusal(tmp_path, text).startswith("tenants[0].livechat: this tenant's channel is "
                                              "'bot'")


def test_an_edge_api_url_must_be_an_http_url(tmp_path: Path) -> None:
    """A mistyped adapter base URL is caught before the first call fails."""
    text = (TENANT + 'provider = "cisco"\n[tenants.cisco]\napi_url = "ccp.example.org"\n'
            'feed_ref_url = "https://ccp.example.org/feed"\n')
    assert refusal(tmp_path, text).startswith("tenants[0].cisco.api_url: expected an http://")


def test_a_redis_url_of_another_scheme_is_refused(tmp_path: Path) -> None:
    """cluster.redis_url must be a Redis URL."""
    message = refusal(tmp_path, '[cluster]\nredis_url = "http://redis:6379"\n')
    assert message.startswith("cluster.redis_url: expected a redis://")


def test_each_tenant_with_unsigned_events_gets_a_warning(tmp_path: Path) -> None:
    """An empty webhook_secret sends events unsigned: one warning per such tenant."""
    path = tmp_path / "lcx.toml"
    path.write_text(
        TENANT + 'bot_events_url = "http://bot.example.org/e"\n'
        '[[tenants]]\nid = "t2"\norganization_id = "o1"\n'
        'bot_events_url = "http://bot.example.org/e"\nwebhook_secret = "s"\n'
        '[[tenants]]\nid = "t3"\norganization_id = "o1"\n', encoding="utf-8")
    warnings = start_warnings(load_settings(path, environ={}))
    assert warnings == ["tenants[0].webhook_secret is empty: events to tenant 't1' at "
                        "http://bot.example.org/e are sent without an X-Lcx-Signature"]
