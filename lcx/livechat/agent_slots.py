"""An agent's chat slots: the one place where ``maxConcurrentChats`` is enforced.

A slot is reserved for a conversation before the agent is made a participant, by whoever
routes it (a queue's broadcast accept or assignment, a transfer to the agent, an
agent-initiated conversation), so the limit holds even when several queues route to the
same agent at once. Assignment (``auto`` routing) needs the agent online; an accept the
agent asked for only needs it connected (online or away).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChatSlots:
    """The conversations an agent is busy with; see the module docstring."""

    active: set[str] = field(default_factory=set)

    def reserve(self, conversation_id: str, *, status: str, limit: int,
                assigned: bool) -> bool:
        """Take a slot for ``conversation_id``; False when the agent may not take it.

        Reserving a conversation the agent already has succeeds (a retried reserve).
        """
        if conversation_id in self.active:
            return True
        allowed = status == "online" if assigned else status != "offline"
        if not allowed or len(self.active) >= limit:
            return False
        self.active.add(conversation_id)
        return True

    def release(self, conversation_id: str) -> bool:
        """Give the slot back; True when the agent had it."""
        if conversation_id not in self.active:
            return False
        self.active.discard(conversation_id)
        return True
