-- PostgreSQL version of 0003_business_hours.sql: the same schema, with every TEXT column in the "C"
-- collation so that text compares and sorts byte-wise, as SQLite's BINARY does (ids
-- and ISO timestamps are compared and ordered as text), whatever the database's locale.

-- Business hours of a user group (API.md section 6): one JSON document per organization
-- and user group.
CREATE TABLE business_hours (
    org_id        TEXT COLLATE "C" NOT NULL,
    user_group_id TEXT COLLATE "C" NOT NULL,
    body          TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, user_group_id)
);
