-- What the agent console needs in the store (API.md sections 5 and 6).

-- Canned responses: saved replies of an organization, optionally of one user group.
-- user_group_id is '' for organization-wide ones, so that the unique index also holds
-- for them ("shortcut unique per org and group").
CREATE TABLE canned_responses (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    user_group_id TEXT NOT NULL,
    shortcut      TEXT NOT NULL,
    title         TEXT NOT NULL,
    text          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (org_id, user_group_id, shortcut)
);

-- Internal notes: a message with private = 1 is shown to the conversation's agents and
-- supervisors only; it never goes to the subscriber's side.
ALTER TABLE messages ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
