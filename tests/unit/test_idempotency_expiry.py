"""Idempotency keys expire by age, on each backend: the retention sweep deletes the answers
stored more than ``store.idempotency_days`` ago, in batches, oldest first, and keeps the
newer ones; a resend within the window still gets the first answer, one after it is new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lcx.config import load_settings
from lcx.errors import ConfigError
from lcx.model import iso
from lcx.org_settings import LivechatSettings
from lcx.store import Store, Tx
from lcx.store.conversations import claim, remembered
from lcx.store.retention import expire_idempotency_keys
from services.retention import RetentionSweep, expire_keys

pytest_plugins = ["support.stores"]

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> str:
    return iso(NOW - timedelta(days=days))


async def store_keys(store: Store, ages: dict[str, float]) -> None:
    """Claim each key with its answer stored ``ages[key]`` days ago, oldest first (as time
    would have stored them)."""
    def write(tx: Tx) -> None:
        for key, age in sorted(ages.items(), key=lambda item: -item[1]):
            assert claim(tx, "bot:t1", key, f'{{"id":"{key}"}}'.encode(), days_ago(age)) \
                is None
    await store.transaction(write)


async def keys(store: Store) -> set[str]:
    rows = await store.read(lambda tx: tx.values("SELECT key FROM idempotency_keys"))
    return {row[0] for row in rows}


class NoSettings:
    """Organization settings for a sweep over a store without organizations."""

    async def get(self, org_id: str) -> LivechatSettings:
        raise AssertionError(f"no organization to purge, asked for {org_id}")


async def test_keys_older_than_the_cutoff_go_in_batches_the_newer_stay(
        any_store: Store) -> None:
    await store_keys(any_store, {f"old-{n}": 10 + n / 10 for n in range(7)}
                     | {"fresh": 1, "recent": 6.9})
    batches = []
    while True:
        deleted = await any_store.transaction(lambda tx: expire_idempotency_keys(
            tx, days_ago(7), dialect=any_store.dialect, limit=3))
        batches.append(deleted)
        if deleted < 3:
            break
    assert batches == [3, 3, 1]
    assert await keys(any_store) == {"fresh", "recent"}


async def test_a_resend_gets_the_first_answer_until_its_key_expired(
        any_store: Store) -> None:
    await store_keys(any_store, {"m-1": 8, "m-2": 2})
    assert await expire_keys(any_store, days_ago(7)) == 1

    async def resend(key: str) -> bytes | None:
        return await any_store.transaction(
            lambda tx: claim(tx, "bot:t1", key, b'{"id":"again"}', iso(NOW)))

    assert await resend("m-2") == b'{"id":"m-2"}'  # within the window: the first answer
    assert await resend("m-1") is None  # expired: stored as new
    assert await any_store.read(lambda tx: remembered(tx, "bot:t1", "m-1")) == \
        b'{"id":"again"}'


async def test_the_retention_sweep_expires_keys_with_the_configured_window(
        any_store: Store) -> None:
    await store_keys(any_store, {"a": 30, "b": 3.5, "c": 2.5})
    sweep = RetentionSweep(lambda: any_store, NoSettings(), idempotency_days=3,
                           clock=lambda: NOW)
    await sweep.sweep_once()
    assert await keys(any_store) == {"c"}
    assert sweep.expired_keys == 2
    unlimited = RetentionSweep(lambda: any_store, NoSettings(), clock=lambda: NOW)
    await unlimited.sweep_once()  # without a window nothing expires
    assert await keys(any_store) == {"c"}


def test_the_window_is_seven_days_unless_configured_and_must_be_positive(
        tmp_path: Path) -> None:
    assert load_settings(None).store.idempotency_days == 7
    config = tmp_path / "lcx.toml"
    config.write_text("[store]\nidempotency_days = 2\n")
    assert load_settings(config).store.idempotency_days == 2
    for bad in ("0", "-1", '"week"', "1.5"):
        config.write_text(f"[store]\nidempotency_days = {bad}\n")
        with pytest.raises(ConfigError, match=r"store\.idempotency_days"):
            load_settings(config)


async def test_a_backlog_larger_than_a_batch_goes_in_several_transactions(
        any_store: Store) -> None:
    await store_keys(any_store, {f"k-{n}": 9 + n / 10_000 for n in range(2_100)}
                     | {"fresh": 0.5})
    committed = any_store.statistics().transactions_committed
    assert await expire_keys(any_store, days_ago(7), pause_seconds=0) == 2_100
    assert any_store.statistics().transactions_committed - committed == 3
    assert await keys(any_store) == {"fresh"}
