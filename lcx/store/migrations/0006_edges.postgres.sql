-- PostgreSQL version of 0006_edges.sql: the same schema with TEXT in the "C" collation.

-- The external side of conversations, and the durable inbox of edge webhooks.

-- One row per conversation and edge side ("channel" or "provider"): the edge's own id of
-- the conversation and what the adapter needs to talk to it (JSON).
CREATE TABLE edge_sessions (
    conversation_id TEXT COLLATE "C" NOT NULL,
    side            TEXT COLLATE "C" NOT NULL,
    edge            TEXT COLLATE "C" NOT NULL,
    external_id     TEXT COLLATE "C" NOT NULL,
    data            TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, side),
    UNIQUE (edge, external_id)
);

-- Webhook events, stored before the edge gets its 2xx and processed once: the
-- (alias, event_id) key drops the edge's retries and duplicates; position keeps the order
-- of the events within one delivery.
-- status: pending | processed | failed.
CREATE TABLE edge_inbox (
    alias        TEXT COLLATE "C" NOT NULL,
    event_id     TEXT COLLATE "C" NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    external_id  TEXT COLLATE "C" NOT NULL,
    item         TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT COLLATE "C",
    received_at  TEXT COLLATE "C" NOT NULL,
    position     INTEGER NOT NULL DEFAULT 0,
    processed_at TEXT COLLATE "C",
    PRIMARY KEY (alias, event_id)
);
CREATE INDEX edge_inbox_pending ON edge_inbox (status, received_at, position);
