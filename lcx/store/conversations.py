"""Conversations, their message log and idempotency keys, as functions over a :class:`Tx`.

Only a conversation's actor writes its row and its messages (it is the single writer of
``seq``); the uniqueness rules here are the safety net for the moment two owners exist.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from lcx.errors import IntegrityConflict, StaleState
from lcx.model import Attachment, Author, Context, Conversation, Message, Participant, Subscriber
from lcx.store.base import Row, Tx

_COLUMNS = ("id", "request_id", "org_id", "tenant_id", "sub_handle", "user_group_id",
            "provider", "channel", "status", "subscriber", "context", "participants", "flags",
            "agent_id", "agent_name", "created_at", "queued_at", "accepted_at", "accepted_by",
            "ended_at", "ended_by", "end_reason", "last_seq", "last_event_no",
            "last_activity_at", "open_key")
_JSON_COLUMNS = {"subscriber": Subscriber, "context": Context,
                 "participants": list[Participant], "flags": dict[str, Any]}
_encode = msgspec.json.encode


def open_key(conversation: Conversation) -> str | None:
    """The value that makes "one open request per subscriber and tenant" a unique index."""
    if not conversation.is_open:
        return None
    return f"{conversation.tenant_id}/{conversation.sub_handle}"


def _values(conversation: Conversation) -> list[Any]:
    values: list[Any] = []
    for column in _COLUMNS:
        if column == "open_key":
            values.append(open_key(conversation))
        elif column in _JSON_COLUMNS:
            values.append(_encode(getattr(conversation, column)).decode())
        else:
            values.append(getattr(conversation, column))
    return values


def _conversation(row: Row) -> Conversation:
    fields = {k: v for k, v in row.items() if k != "open_key"}
    for column, type_ in _JSON_COLUMNS.items():
        fields[column] = msgspec.json.decode(row[column], type=type_)
    return Conversation(**fields)


def insert_conversation(tx: Tx, conversation: Conversation) -> None:
    """Store a new conversation.

    Raises:
        IntegrityConflict: the subscriber already has an open one (or the id exists).
    """
    marks = ", ".join("?" for _ in _COLUMNS)
    tx.execute(f"INSERT INTO conversations ({', '.join(_COLUMNS)}) VALUES ({marks})",
               _values(conversation))


def save_conversation(tx: Tx, conversation: Conversation, *,
                      expected: Conversation | None = None) -> None:
    """Overwrite the stored state of an existing conversation.

    With ``expected`` (the state the new one was decided from) the row is written only if
    its ``last_seq`` and ``last_event_no`` are still the expected ones: the counters of a
    conversation never go back, whoever else wrote in between. Then only the columns that
    differ from ``expected`` (and the counters) are written.

    Raises:
        StaleState: the stored row moved on since ``expected`` was read.
    """
    if expected is None:
        columns = [c for c in _COLUMNS if c != "id"]
        assignments = ", ".join(f"{c} = ?" for c in columns)
        tx.execute(f"UPDATE conversations SET {assignments} WHERE id = ?",
                   [*_values(conversation)[1:], conversation.id])
        return
    assignments, values = _changes(expected, conversation)
    changed = tx.execute(f"UPDATE conversations SET {assignments} WHERE id = ? "
                         "AND last_seq = ? AND last_event_no = ?",
                         [*values, conversation.id, expected.last_seq,
                          expected.last_event_no])
    if changed != 1:
        raise StaleState(f"conversation {conversation.id} changed since seq "
                         f"{expected.last_seq} / event {expected.last_event_no} was read")


def _changes(before: Conversation, after: Conversation) -> tuple[str, list[Any]]:
    """The ``SET`` list and values of the columns that differ from ``before`` to ``after``
    (most saves move only the counters and the activity time: no JSON encoded for them).
    Never empty: the counters are always written, so the guard's row counts as changed."""
    columns: list[str] = []
    values: list[Any] = []
    old, new = _astuple(before), _astuple(after)  # one C call each, not a getattr a column
    for column, index, is_json, always in _DIFFED:
        value = new[index]
        if always or (value is not old[index] and value != old[index]):
            columns.append(column)
            values.append(_encode(value).decode() if is_json else value)
    if (key := open_key(after)) != open_key(before):
        columns.append("open_key")
        values.append(key)
    return ", ".join(f"{c} = ?" for c in columns), values


_astuple = msgspec.structs.astuple
_FIELD_INDEX = {name: index for index, name in enumerate(Conversation.__struct_fields__)}
_DIFFED = tuple((column, _FIELD_INDEX[column], column in _JSON_COLUMNS,
                 column in ("last_seq", "last_event_no"))
                for column in _COLUMNS if column not in ("id", "open_key"))
"""What :func:`_changes` compares, in column order: (column, field index, JSON, always
written); ``open_key`` is derived, not a field."""


def load_conversation(tx: Tx, conversation_id: str) -> Conversation | None:
    """The conversation with this id, if any."""
    row = tx.fetchone("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
    return None if row is None else _conversation(row)


def find_by_request(tx: Tx, request_id: str) -> Conversation | None:
    """The conversation a request became (or will become)."""
    row = tx.fetchone("SELECT * FROM conversations WHERE request_id = ?", (request_id,))
    return None if row is None else _conversation(row)


def find_open(tx: Tx, tenant_id: str, sub_handle: str) -> Conversation | None:
    """The subscriber's open (pending or active) conversation in this tenant, if any."""
    row = tx.fetchone("SELECT * FROM conversations WHERE open_key = ?",
                      (f"{tenant_id}/{sub_handle}",))
    return None if row is None else _conversation(row)


class _NameOnly(msgspec.Struct):
    """The part of a stored subscriber that :func:`find_open_brief` decodes."""

    name: str | None = None


def find_open_brief(tx: Tx, tenant_id: str, sub_handle: str) -> tuple[str, str | None] | None:
    """The id and subscriber name of the subscriber's open conversation, if any: what
    ``POST /messages`` needs, without decoding the whole row as :func:`find_open` does."""
    row = tx.fetchone("SELECT id, subscriber FROM conversations WHERE open_key = ?",
                      (f"{tenant_id}/{sub_handle}",))
    if row is None:
        return None
    return row["id"], _decode_name(row["subscriber"]).name


_decode_name = msgspec.json.Decoder(_NameOnly).decode


def find_latest(tx: Tx, tenant_id: str, sub_handle: str) -> Conversation | None:
    """The subscriber's most recent conversation in this tenant, open or not."""
    row = tx.fetchone("SELECT * FROM conversations WHERE tenant_id = ? AND sub_handle = ? "
                      "ORDER BY created_at DESC, id DESC LIMIT 1", (tenant_id, sub_handle))
    return None if row is None else _conversation(row)


def pending_in_queue(tx: Tx, org_id: str, user_group_id: str) -> list[Conversation]:
    """Pending requests of one queue, oldest first."""
    rows = tx.fetchall("SELECT * FROM conversations WHERE org_id = ? AND user_group_id = ? "
                       "AND status = ? ORDER BY queued_at, id", (org_id, user_group_id, "pending"))
    return [_conversation(row) for row in rows]


def pending_places(tx: Tx, org_id: str, user_group_id: str) -> list[tuple[str, str]]:
    """``(queued_at, id)`` of one queue's pending requests, oldest first: what a queue
    compares with its book before loading only what it misses."""
    rows = tx.fetchall("SELECT queued_at, id FROM conversations WHERE org_id = ? AND "
                       "user_group_id = ? AND status = ? ORDER BY queued_at, id",
                       (org_id, user_group_id, "pending"))
    return [(row["queued_at"], row["id"]) for row in rows]


def pending_entries(tx: Tx, org_id: str, user_group_id: str
                    ) -> list[tuple[str, str, str]]:
    """``(queued_at, id, request_id)`` of one queue's pending requests, oldest first: all
    a queue keeps of what waits, read by one indexed scan without decoding a row."""
    rows: list[tuple[str, str, str]] = tx.values(
        "SELECT queued_at, id, request_id FROM conversations WHERE org_id = ? AND "
        "user_group_id = ? AND status = ? ORDER BY queued_at, id",
        (org_id, user_group_id, "pending"))
    return rows


def load_conversations(tx: Tx, conversation_ids: list[str]) -> list[Conversation]:
    """The stored conversations among ``conversation_ids`` (one read for a page of
    them), in no particular order; ids not stored are left out."""
    if not conversation_ids:
        return []
    marks = ", ".join("?" for _ in conversation_ids)
    rows = tx.fetchall(f"SELECT * FROM conversations WHERE id IN ({marks})",
                       tuple(conversation_ids))
    return [_conversation(row) for row in rows]


class OpenConversationKey(NamedTuple):
    """What a sweep over every open conversation needs of one, without decoding its row."""

    id: str
    org_id: str
    user_group_id: str
    provider: str
    status: str
    open_key: str
    """The page position (:func:`open_conversation_keys`' ``after``)."""
    queued_at: str
    last_activity_at: str


def open_conversation_keys(tx: Tx, *, after: str = "", limit: int = 1000
                           ) -> list[OpenConversationKey]:
    """One page of the open conversations' keys, ordered by ``open_key`` (the unique
    index), starting after ``after``: a scan of 100,000 of them runs in pages with the
    event loop free between them, and costs no JSON decoding."""
    rows = tx.values("SELECT id, org_id, user_group_id, provider, status, open_key, "
                     "queued_at, last_activity_at FROM conversations WHERE open_key > ? "
                     "ORDER BY open_key LIMIT ?", (after, limit))
    return list(map(OpenConversationKey._make, rows))


def open_ids_of_tenant(tx: Tx, tenant_id: str, provider: str) -> list[str]:
    """Ids of the tenant's open conversations with ``provider``: a range of the
    ``open_key`` index (``<tenant_id>/...``), not a scan of every open conversation."""
    rows = tx.fetchall("SELECT id FROM conversations WHERE open_key > ? AND open_key < ? "
                       "AND tenant_id = ? AND provider = ? ORDER BY open_key",
                       (f"{tenant_id}/", f"{tenant_id}0", tenant_id, provider))
    return [row["id"] for row in rows]


def open_ids_of_org(tx: Tx, org_id: str) -> list[str]:
    """Ids of the organization's open (pending or active) conversations, oldest first,
    from the ``(org_id, status, created_at)`` index."""
    rows = tx.fetchall("SELECT id FROM conversations WHERE org_id = ? AND status IN (?, ?) "
                       "ORDER BY created_at, id", (org_id, "pending", "active"))
    return [row["id"] for row in rows]


def active_for_agent(tx: Tx, org_id: str, agent_id: str) -> list[str]:
    """Ids of the active conversations an agent handles."""
    rows = tx.fetchall("SELECT id FROM conversations WHERE org_id = ? AND agent_id = ? "
                       "AND status = ? ORDER BY accepted_at", (org_id, agent_id, "active"))
    return [row["id"] for row in rows]


def count_pending(tx: Tx, org_id: str, *, tenant_id: str | None = None,
                  user_group_id: str | None = None) -> int:
    """How many requests of an organization are pending (optionally one tenant/group)."""
    sql = "SELECT count(*) AS n FROM conversations WHERE org_id = ? AND status = ?"
    params: list[Any] = [org_id, "pending"]
    if tenant_id is not None:
        sql += " AND tenant_id = ?"
        params.append(tenant_id)
    if user_group_id is not None:
        sql += " AND user_group_id = ?"
        params.append(user_group_id)
    row = tx.fetchone(sql, params)
    return int(row["n"]) if row else 0


def accepted_waits(tx: Tx, tenant_id: str, since: str) -> list[tuple[str, str]]:
    """(queued_at, accepted_at) of a tenant's requests accepted since ``since``."""
    rows = tx.fetchall("SELECT queued_at, accepted_at FROM conversations WHERE tenant_id = ? "
                       "AND accepted_at IS NOT NULL AND accepted_at >= ? "
                       "AND accepted_at >= queued_at", (tenant_id, since))
    return [(row["queued_at"], row["accepted_at"]) for row in rows]


_MESSAGE_COLUMNS = ("conversation_id", "seq", "id", "org_id", "author_type", "author_id",
                    "author_name", "type", "text", "payload", "attachments", "client_id", "at",
                    "private")


def append_message(tx: Tx, message: Message, *, org_id: str, client_id: str | None) -> None:
    """Add a message to its conversation's log.

    Raises:
        IntegrityConflict: the (conversation, seq) slot or the message id is taken.
    """
    marks = ", ".join("?" for _ in _MESSAGE_COLUMNS)
    payload = None if message.payload is None else _encode(message.payload).decode()
    tx.execute(f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) VALUES ({marks})", (
        message.conversation_id, message.seq, message.message_id, org_id, message.author.type,
        message.author.id, message.author.name, message.type, message.text, payload,
        _encode(message.attachments).decode(), client_id, message.at, int(message.private)))


def _message(row: Row) -> Message:
    return Message(
        conversation_id=row["conversation_id"], seq=row["seq"], message_id=row["id"],
        author=Author(type=row["author_type"], id=row["author_id"], name=row["author_name"]),
        type=row["type"], at=row["at"], text=row["text"],
        payload=None if row["payload"] is None else msgspec.json.decode(row["payload"]),
        attachments=msgspec.json.decode(row["attachments"], type=list[Attachment]),
        private=bool(row["private"]))


def messages_after(tx: Tx, conversation_id: str, seq: int, limit: int = 1000) -> list[Message]:
    """The messages of a conversation with a seq above ``seq``, in order."""
    rows = tx.fetchall("SELECT * FROM messages WHERE conversation_id = ? AND seq > ? "
                       "ORDER BY seq LIMIT ?", (conversation_id, seq, limit))
    return [_message(row) for row in rows]


def messages_between(tx: Tx, org_id: str, *, conversation_id: str | None, since: str | None,
                     until: str | None, limit: int = 100_000) -> list[Message]:
    """An organization's messages for a transcript, ordered by conversation and seq."""
    sql = "SELECT * FROM messages WHERE org_id = ?"
    params: list[Any] = [org_id]
    for clause, value in (("conversation_id = ?", conversation_id), ("at >= ?", since),
                          ("at < ?", until)):
        if value is not None:
            sql += f" AND {clause}"
            params.append(value)
    sql += " ORDER BY conversation_id, seq LIMIT ?"
    params.append(limit)
    return [_message(row) for row in tx.fetchall(sql, params)]


def remembered(tx: Tx, scope: str, key: str) -> bytes | None:
    """The answer stored for an idempotent operation, if it ran before."""
    row = tx.fetchone("SELECT result FROM idempotency_keys WHERE scope = ? AND key = ?",
                      (scope, key))
    return None if row is None else str(row["result"]).encode()


def claim(tx: Tx, scope: str, key: str, result: bytes, at: str) -> bytes | None:
    """Store the answer of an idempotent operation unless one is there; None when this
    call stored it, else the earlier answer (nothing written).

    One statement in the usual case (no earlier answer) instead of a look-up followed by
    an insert; run it first in the transaction that carries the operation's effect.
    """
    if tx.execute("INSERT INTO idempotency_keys (scope, key, result, created_at) "
                  "VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING",
                  (scope, key, result.decode(), at)):
        return None
    earlier = remembered(tx, scope, key)
    if earlier is None:  # taken and gone again (a concurrent erasure): let the caller retry
        raise IntegrityConflict("the idempotency key changed under this transaction")
    return earlier


def remember(tx: Tx, scope: str, key: str, result: bytes, at: str) -> None:
    """Store the answer of an idempotent operation (in the same transaction as its effect)."""
    tx.execute("INSERT INTO idempotency_keys (scope, key, result, created_at) "
               "VALUES (?, ?, ?, ?)", (scope, key, result.decode(), at))
