"""One bad item never takes an instance down: a stored webhook event that cannot be
decoded or applied is retried, then dead-lettered (and listed by ``lcx dlq``), while the
events after it are applied; the instance's services never restart for it."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import trio
from support.livechat_app import DEFAULT_TENANTS, instance_settings
from support.waiting import eventually_async

from adapters.edges import WebhookItem
from lcx.instance import Lcx
from lcx.model import iso, utc_now
from lcx.runtime import Backoff
from lcx.store import Tx
from lcx.store.conversations import open_conversation_keys
from lcx.store.edges import list_failed_inbox, pending_inbox, store_inbox


def _rows() -> list[tuple[str, str, str, bytes]]:
    good = WebhookItem(event_id="good-1", tenant_id="t1", external_id="chat-good",
                       kind="started", customer={"name": "Ada"})
    return [("poison-1", "t1", "chat-bad", b'{"kind": "started", "tenantId": [1, 2]'),
            ("good-1", "t1", "chat-good", msgspec.json.encode(good))]


async def test_a_poison_webhook_is_dead_lettered_and_the_rest_applied(tmp_path: Path) -> None:
    """An undecodable stored webhook event fails its attempts, is given up, and neither
    stops the events behind it nor restarts any service."""
    settings = instance_settings(tmp_path, DEFAULT_TENANTS, max_body_bytes=1_048_576)
    lcx = Lcx(settings)
    lcx.edge_inbox.guard.max_attempts = 3
    lcx.edge_inbox.guard.backoff = Backoff(initial_seconds=0.01, maximum_seconds=0.02)
    lcx.edge_inbox.poll_seconds = 0.02
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(lcx.run)
            store = lcx.livechat.store
            await store.transaction(
                lambda tx: store_inbox(tx, "livechat", _rows(), iso(utc_now())))
            lcx.edge_inbox.wake()

            def settled(tx: Tx) -> bool:
                dead = [row.event_id for row in list_failed_inbox(tx)]
                return dead == ["poison-1"] and not pending_inbox(tx)

            await eventually_async(lambda: store.read(settled), timeout=20)
            opened = await store.read(open_conversation_keys)
            assert [c.open_key.split("/", 1)[1] for c in opened] == ["bot:chat-good"]
            assert lcx.edge_inbox.guard.dead == 1
            restarts = [child for child in lcx.root.which_children() if child.restarts]
            assert restarts == []
            lcx.request_stop()
    result = await trio.run_process(
        [sys.executable, "-m", "lcx", "dlq", "list", "--config",
         str(_config(tmp_path, settings.store.url))],
        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.decode()
    assert "dead webhook events:" in shown
    assert "poison-1" in shown


def _config(tmp_path: Path, store_url: str) -> Path:
    """A configuration for ``lcx dlq`` on the instance's own store (SQLite, or the
    PostgreSQL schema with ``LCX_TEST_STORE=postgres``)."""
    path = tmp_path / "dlq.toml"
    path.write_text(f'[store]\nurl = "{store_url}"\n')
    return path
