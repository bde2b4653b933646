-- PostgreSQL version of 0007_console.sql: the same schema, with every TEXT column in the
-- "C" collation (byte order, as SQLite's BINARY).

-- Canned responses: saved replies of an organization, optionally of one user group.
-- user_group_id is '' for organization-wide ones, so that the unique index also holds
-- for them ("shortcut unique per org and group").
CREATE TABLE canned_responses (
    id            TEXT COLLATE "C" PRIMARY KEY,
    org_id        TEXT COLLATE "C" NOT NULL,
    user_group_id TEXT COLLATE "C" NOT NULL,
    shortcut      TEXT COLLATE "C" NOT NULL,
    title         TEXT COLLATE "C" NOT NULL,
    text          TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    UNIQUE (org_id, user_group_id, shortcut)
);

-- Internal notes: a message with private = 1 is shown to the conversation's agents and
-- supervisors only; it never goes to the subscriber's side.
ALTER TABLE messages ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
