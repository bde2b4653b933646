-- PostgreSQL version of 0001_org_settings.sql: the same schema, with every TEXT column in the "C"
-- collation so that text compares and sorts byte-wise, as SQLite's BINARY does (ids
-- and ISO timestamps are compared and ordered as text), whatever the database's locale.

-- Organization livechat settings (API.md "livechat-settings"): one JSON document per
-- organization, replaced as a whole. updated_at is an ISO-8601 UTC timestamp.
CREATE TABLE org_settings (
    org_id     TEXT COLLATE "C" PRIMARY KEY,
    body       TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
