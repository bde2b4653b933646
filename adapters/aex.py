"""The AEX-compatible hand-over as a *channel* (``channel = "aex"``): a chat window written
against the AEX socket-connection service opens a conversation with ``POST /aex/initiate``
(:mod:`lcx.api.aex`) and forwards the user's messages with ``POST /aex/message``; what
the humans say comes back to the window's own ``ReturnEndpoints.url``.

The session of the conversation's channel side is what ``initiate`` carried::

    {"url": str,              # ReturnEndpoints.url
     "token": str,            # ReturnEndpoints.token, sent as Authorization as given
     "returnContext": dict}   # ReturnContext, copied into every call

:meth:`AexChannel.send` POSTs one JSON body per command, through the one outbound policy
(breaker and limiter keyed ``aex:<host of the url>``), and the outbox keeps them in order
and retries them like bot events: ``{**ReturnContext, "type": "message", "messageId",
"message", "author"}`` for a message (attachments as ``name: url`` lines after the text),
``{**ReturnContext, "type": "typing", "typing"}`` and ``{**ReturnContext, "type": "end",
"reason"}``. Any instance serves any conversation (no instance affinity header).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from adapters.edges import (
    AnyEdgeCommand,
    EdgeCallFailed,
    EndSession,
    SendMessage,
    SendTyping,
    Session,
    WebhookBatch,
)
from adapters.policy import EdgeHttp
from lcx.config import TenantConfig
from lcx.errors import NotFound

__all__ = ["AexChannel", "return_body", "session_for"]


def session_for(url: str, token: str, context: Mapping[str, Any]) -> Session:
    """The channel session of one AEX conversation (what :meth:`AexChannel.send` reads)."""
    return {"url": url, "token": token, "returnContext": dict(context)}


def return_body(session: Session, command: AnyEdgeCommand) -> dict[str, Any]:
    """The JSON body POSTed to the return endpoint for ``command`` (pure)."""
    context = session.get("returnContext")
    body: dict[str, Any] = dict(context) if isinstance(context, dict) else {}
    match command:
        case SendMessage():
            lines = [command.text] if command.text else []
            lines += [f"{a.name}: {a.url}" if a.name else a.url for a in command.attachments]
            body.update(type="message", messageId=command.message_id,
                        message="\n".join(lines), author=command.author_name)
        case SendTyping():
            body.update(type="typing", typing=command.typing)
        case EndSession():
            body.update(type="end", reason=command.reason)
    return body


class AexChannel:
    """The ``aex`` channel (see the module docstring). It receives no webhooks: its
    inbound calls are ``/aex/initiate`` and ``/aex/message``."""

    name = "aex"
    alias = "aex"

    def __init__(self, tenants: Mapping[str, TenantConfig], http: EdgeHttp) -> None:
        self.http = http
        self._by_deployment = {t.aex.deployment_id: t for t in tenants.values()
                               if t.aex is not None and t.aex.deployment_id}

    def tenant_of(self, deployment_id: str) -> TenantConfig | None:
        """The tenant whose ``[tenants.aex] deployment_id`` is ``deployment_id``."""
        return self._by_deployment.get(deployment_id)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Refuse: AEX calls come to ``/aex/*``, never as webhooks.

        Raises:
            NotFound: always.
        """
        raise NotFound("aex receives no webhooks: use /aex/initiate and /aex/message")

    def parse(self, body: bytes) -> WebhookBatch:
        """Nothing (AEX sends no webhooks)."""
        return WebhookBatch()

    async def send(self, tenant: TenantConfig, session: Session,
                   command: AnyEdgeCommand) -> None:
        """POST the command's body to the return endpoint with its token.

        Raises:
            EdgeCallFailed: no return endpoint in the session (not retryable), or the
                call failed (classified by :mod:`adapters.policy`).
        """
        url = session.get("url")
        if not isinstance(url, str) or not url:
            raise EdgeCallFailed("aex: the session has no return endpoint", retry=False)
        headers = {"Content-Type": "application/json"}
        token = session.get("token")
        if isinstance(token, str) and token:
            headers["Authorization"] = token
        account = f"aex:{urlsplit(url).netloc}"
        await self.http.request(account, "POST", url, what=f"aex {type(command).__name__}",
                                json=return_body(session, command), headers=headers)
