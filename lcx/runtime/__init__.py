"""The actor runtime: actors with bounded mailboxes, refs, and OTP-style supervisors.

This package knows nothing of livechat: no domain, web, Redis or provider imports.
"""

from lcx.runtime.actor import Actor, ActorContext, ActorProcess
from lcx.runtime.item_guard import Attempt, ItemGuard, Outcome
from lcx.runtime.keyed import KeyedSupervisor
from lcx.runtime.mailbox import Envelope, Mailbox, Reply
from lcx.runtime.policy import Backoff, Intensity, Restart, Strategy
from lcx.runtime.ref import DEFAULT_ASK_TIMEOUT, ActorRef
from lcx.runtime.registry import Registry, RuntimeSnapshot
from lcx.runtime.supervisor import (
    Child,
    ChildInfo,
    ChildSpec,
    Supervisor,
    actor_child,
    supervisor_child,
)

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "Actor",
    "ActorContext",
    "ActorProcess",
    "ActorRef",
    "Attempt",
    "Backoff",
    "Child",
    "ChildInfo",
    "ChildSpec",
    "Envelope",
    "Intensity",
    "ItemGuard",
    "KeyedSupervisor",
    "Mailbox",
    "Outcome",
    "Registry",
    "Reply",
    "Restart",
    "RuntimeSnapshot",
    "Strategy",
    "Supervisor",
    "actor_child",
    "supervisor_child",
]
