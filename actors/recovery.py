"""Start-up recovery: after a restart, wake what must run without waiting for traffic."""

from __future__ import annotations

import logging

import trio

from actors.hub import Livechat, queue_key
from actors.messages import Recover
from actors.queue import Resync
from lcx.store.conversations import open_conversations

log = logging.getLogger("lcx.recovery")


class Recovery:
    """A supervised service that, once at start, activates every open conversation (which
    re-arms its request or inactivity timer) and every queue with pending requests (which
    reloads them and routes them again)."""

    def __init__(self, hub: Livechat) -> None:
        self.hub = hub
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Stop (the recovery itself is done by the time ``run`` reports started)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Wake open conversations and busy queues, report started, wait to be stopped."""
        self._stop = trio.Event()
        rows = await self.hub.store.read(open_conversations)
        for conversation in rows:
            await self.hub.conversations.send(conversation.id, Recover())
        queues = {(c.org_id, c.user_group_id) for c in rows if c.status == "pending"}
        for org_id, group in sorted(queues):
            await self.hub.queues.send(queue_key(org_id, group), Resync())
        if rows:
            log.info("recovered open conversations",
                     extra={"conversations": len(rows), "queues": len(queues)})
        task_status.started()
        await self._stop.wait()
