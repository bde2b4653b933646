-- The livechat records: conversations (a request and the conversation it becomes are one
-- row), their gap-free message log, idempotency keys, and the transactional outbox of
-- events to bots and flow triggers.

-- One row per request. id is the conversation id, reserved when the request is created
-- and shown to clients once the request is accepted. status: pending | active | ended |
-- cancelled | missed. open_key is "<tenant_id>/<sub_handle>" while the request or
-- conversation is open and NULL afterwards: the unique index enforces "at most one open
-- request or conversation per subscriber and tenant".
CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL UNIQUE,
    org_id           TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    sub_handle       TEXT NOT NULL,
    user_group_id    TEXT NOT NULL,
    provider         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    status           TEXT NOT NULL,
    subscriber       TEXT NOT NULL,
    context          TEXT NOT NULL,
    participants     TEXT NOT NULL,
    flags            TEXT NOT NULL,
    agent_id         TEXT,
    agent_name       TEXT,
    created_at       TEXT NOT NULL,
    queued_at        TEXT NOT NULL,
    accepted_at      TEXT,
    accepted_by      TEXT,
    ended_at         TEXT,
    ended_by         TEXT,
    end_reason       TEXT,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_event_no    INTEGER NOT NULL DEFAULT 0,
    last_activity_at TEXT NOT NULL,
    open_key         TEXT UNIQUE
);
CREATE INDEX conversations_org_status ON conversations (org_id, status, created_at);
CREATE INDEX conversations_subscriber ON conversations (tenant_id, sub_handle, created_at);
CREATE INDEX conversations_agent ON conversations (org_id, agent_id, status);
CREATE INDEX conversations_accepted_by ON conversations (org_id, accepted_by, created_at);

-- The message log of a conversation; seq is gap-free and increasing per conversation.
CREATE TABLE messages (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL,
    author_type     TEXT NOT NULL,
    author_id       TEXT,
    author_name     TEXT,
    type            TEXT NOT NULL,
    text            TEXT,
    payload         TEXT,
    attachments     TEXT NOT NULL,
    client_id       TEXT,
    at              TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX messages_org_at ON messages (org_id, at);

-- First results of idempotent operations: (scope, key) -> the JSON answer given then.
CREATE TABLE idempotency_keys (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    result     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Events waiting to be (or already) delivered. event_no orders the events of one
-- conversation; a lane (conversation_id, target) delivers strictly in that order.
-- status: pending | delivered | dead.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event_no        INTEGER NOT NULL,
    target          TEXT NOT NULL,
    url             TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (conversation_id, target, event_no)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_lane ON outbox (conversation_id, target, status, event_no);
