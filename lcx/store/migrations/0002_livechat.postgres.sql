-- PostgreSQL version of 0002_livechat.sql: the same schema, with every TEXT column in the "C"
-- collation so that text compares and sorts byte-wise, as SQLite's BINARY does (ids
-- and ISO timestamps are compared and ordered as text), whatever the database's locale.

-- The livechat records: conversations (a request and the conversation it becomes are one
-- row), their gap-free message log, idempotency keys, and the transactional outbox of
-- events to bots and flow triggers.

-- One row per request. id is the conversation id, reserved when the request is created
-- and shown to clients once the request is accepted. status: pending | active | ended |
-- cancelled | missed. open_key is "<tenant_id>/<sub_handle>" while the request or
-- conversation is open and NULL afterwards: the unique index enforces "at most one open
-- request or conversation per subscriber and tenant".
CREATE TABLE conversations (
    id               TEXT COLLATE "C" PRIMARY KEY,
    request_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    org_id           TEXT COLLATE "C" NOT NULL,
    tenant_id        TEXT COLLATE "C" NOT NULL,
    sub_handle       TEXT COLLATE "C" NOT NULL,
    user_group_id    TEXT COLLATE "C" NOT NULL,
    provider         TEXT COLLATE "C" NOT NULL,
    channel          TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    subscriber       TEXT COLLATE "C" NOT NULL,
    context          TEXT COLLATE "C" NOT NULL,
    participants     TEXT COLLATE "C" NOT NULL,
    flags            TEXT COLLATE "C" NOT NULL,
    agent_id         TEXT COLLATE "C",
    agent_name       TEXT COLLATE "C",
    created_at       TEXT COLLATE "C" NOT NULL,
    queued_at        TEXT COLLATE "C" NOT NULL,
    accepted_at      TEXT COLLATE "C",
    accepted_by      TEXT COLLATE "C",
    ended_at         TEXT COLLATE "C",
    ended_by         TEXT COLLATE "C",
    end_reason       TEXT COLLATE "C",
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_event_no    INTEGER NOT NULL DEFAULT 0,
    last_activity_at TEXT COLLATE "C" NOT NULL,
    open_key         TEXT COLLATE "C" UNIQUE
);
CREATE INDEX conversations_org_status ON conversations (org_id, status, created_at);
CREATE INDEX conversations_subscriber ON conversations (tenant_id, sub_handle, created_at);
CREATE INDEX conversations_agent ON conversations (org_id, agent_id, status);
CREATE INDEX conversations_accepted_by ON conversations (org_id, accepted_by, created_at);

-- The message log of a conversation; seq is gap-free and increasing per conversation.
CREATE TABLE messages (
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq             INTEGER NOT NULL,
    id              TEXT COLLATE "C" NOT NULL UNIQUE,
    org_id          TEXT COLLATE "C" NOT NULL,
    author_type     TEXT COLLATE "C" NOT NULL,
    author_id       TEXT COLLATE "C",
    author_name     TEXT COLLATE "C",
    type            TEXT COLLATE "C" NOT NULL,
    text            TEXT COLLATE "C",
    payload         TEXT COLLATE "C",
    attachments     TEXT COLLATE "C" NOT NULL,
    client_id       TEXT COLLATE "C",
    at              TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX messages_org_at ON messages (org_id, at);

-- First results of idempotent operations: (scope, key) -> the JSON answer given then.
CREATE TABLE idempotency_keys (
    scope      TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    result     TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Events waiting to be (or already) delivered. event_no orders the events of one
-- conversation; a lane (conversation_id, target) delivers strictly in that order.
-- status: pending | delivered | dead.
CREATE TABLE outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    org_id          TEXT COLLATE "C" NOT NULL,
    tenant_id       TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    event_no        INTEGER NOT NULL,
    target          TEXT COLLATE "C" NOT NULL,
    url             TEXT COLLATE "C" NOT NULL,
    type            TEXT COLLATE "C" NOT NULL,
    body            TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    last_error      TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    delivered_at    TEXT COLLATE "C",
    UNIQUE (conversation_id, target, event_no)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_lane ON outbox (conversation_id, target, status, event_no);
