-- The external side of conversations, and the durable inbox of edge webhooks.

-- One row per conversation and edge side ("channel" or "provider"): the edge's own id of
-- the conversation and what the adapter needs to talk to it (JSON).
CREATE TABLE edge_sessions (
    conversation_id TEXT NOT NULL,
    side            TEXT NOT NULL,
    edge            TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    data            TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, side),
    UNIQUE (edge, external_id)
);

-- Webhook events, stored before the edge gets its 2xx and processed once: the
-- (alias, event_id) key drops the edge's retries and duplicates; position keeps the order
-- of the events within one delivery.
-- status: pending | processed | failed.
CREATE TABLE edge_inbox (
    alias        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    item         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    received_at  TEXT NOT NULL,
    position     INTEGER NOT NULL DEFAULT 0,
    processed_at TEXT,
    PRIMARY KEY (alias, event_id)
);
CREATE INDEX edge_inbox_pending ON edge_inbox (status, received_at, position);
