-- Uploaded files. storage_key names the object in the configured backend (a relative
-- path under attachments.dir, or an S3 key); conversation_id is set when the upload was
-- tied to a conversation.
CREATE TABLE attachments (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    conversation_id TEXT,
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            INTEGER NOT NULL,
    backend         TEXT NOT NULL,
    storage_key     TEXT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX attachments_org ON attachments (org_id, created_at);
CREATE INDEX attachments_conversation ON attachments (conversation_id);
