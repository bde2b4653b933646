-- PostgreSQL version of 0004_attachments.sql: the same schema, with every TEXT column in the "C"
-- collation so that text compares and sorts byte-wise, as SQLite's BINARY does (ids
-- and ISO timestamps are compared and ordered as text), whatever the database's locale.

-- Uploaded files. storage_key names the object in the configured backend (a relative
-- path under attachments.dir, or an S3 key); conversation_id is set when the upload was
-- tied to a conversation.
CREATE TABLE attachments (
    id              TEXT COLLATE "C" PRIMARY KEY,
    org_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C",
    name            TEXT COLLATE "C" NOT NULL,
    content_type    TEXT COLLATE "C" NOT NULL,
    size            INTEGER NOT NULL,
    backend         TEXT COLLATE "C" NOT NULL,
    storage_key     TEXT COLLATE "C" NOT NULL,
    uploaded_by     TEXT COLLATE "C" NOT NULL,
    created_at      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX attachments_org ON attachments (org_id, created_at);
CREATE INDEX attachments_conversation ON attachments (conversation_id);
