"""How actors are addressed: the keys of queue and agent-session actors.

A conversation actor's key is its conversation id; a provider link's is its
conversation's id too.
"""

from __future__ import annotations


def agent_key(org_id: str, agent_id: str) -> str:
    """The key of an agent's session actor."""
    return f"{org_id}/{agent_id}"


def queue_key(org_id: str, user_group_id: str) -> str:
    """The key of a queue actor (one per organization and user group)."""
    return f"{org_id}/{user_group_id}"


def split_key(key: str) -> tuple[str, str]:
    """The (org, rest) of a queue or agent key."""
    org, _, rest = key.partition("/")
    return org, rest
