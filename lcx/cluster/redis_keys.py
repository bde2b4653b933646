"""Every Redis key and pub/sub channel the Redis bus uses, in one place.

All keys of one namespace share the hash tag ``{cluster}`` so that the Lua scripts, which
touch several of them at once, run unchanged on Redis Cluster (one slot)::

    <ns>:{cluster}:members           SET     ids of instances that heartbeated
    <ns>:{cluster}:member:<id>       STRING  msgpack MemberRecord, PX lease_ms
    <ns>:{cluster}:leader            STRING  "<id>:<term>", PX lease_ms
    <ns>:{cluster}:term              STRING  INCR counter: the fencing term

    <ns>:{cluster}:req:<id>          channel  RPC requests to <id>
    <ns>:{cluster}:rep:<id>          channel  RPC replies to <id> (its callers' answers)
    <ns>:{cluster}:msg:<id>          channel  topic messages to <id>
    <ns>:{cluster}:all               channel  topic messages and hints to every instance
"""

from __future__ import annotations

from dataclasses import dataclass

HASH_TAG = "{cluster}"
MEMBERS = "members"
MEMBER = "member"
LEADER = "leader"
TERM = "term"
REQUESTS = "req"
REPLIES = "rep"
MESSAGES = "msg"
BROADCAST = "all"


@dataclass(frozen=True)
class Keys:
    """The key and channel names of one namespace (``lcx`` unless told otherwise)."""

    namespace: str = "lcx"

    @property
    def prefix(self) -> str:
        """What every key and channel of the namespace starts with."""
        return f"{self.namespace}:{HASH_TAG}:"

    @property
    def members(self) -> str:
        """The set of instance ids that registered (dead ones are pruned on read)."""
        return self.prefix + MEMBERS

    @property
    def member_prefix(self) -> str:
        """The prefix of the per-member record keys (the id follows)."""
        return f"{self.prefix}{MEMBER}:"

    def member(self, instance_id: str) -> str:
        """One member's record (expires ``lease_ms`` after its last heartbeat)."""
        return self.member_prefix + instance_id

    @property
    def leader(self) -> str:
        """The leader lease: ``"<instance_id>:<term>"``."""
        return self.prefix + LEADER

    @property
    def term(self) -> str:
        """The term counter, bumped at every new leadership."""
        return self.prefix + TERM

    @property
    def broadcast(self) -> str:
        """The channel every instance listens to."""
        return self.prefix + BROADCAST

    def requests(self, instance_id: str) -> str:
        """The channel where ``instance_id`` receives RPC requests."""
        return f"{self.prefix}{REQUESTS}:{instance_id}"

    def replies(self, instance_id: str) -> str:
        """The channel where ``instance_id`` receives the replies to its requests."""
        return f"{self.prefix}{REPLIES}:{instance_id}"

    def messages(self, instance_id: str) -> str:
        """The channel where ``instance_id`` receives topic messages addressed to it."""
        return f"{self.prefix}{MESSAGES}:{instance_id}"

    def inbound(self, instance_id: str) -> list[str]:
        """Every channel ``instance_id`` subscribes to."""
        return [self.requests(instance_id), self.replies(instance_id),
                self.messages(instance_id), self.broadcast]
