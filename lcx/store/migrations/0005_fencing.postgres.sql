-- PostgreSQL version of 0005_fencing.sql: the same schema, with every TEXT column in the "C"
-- collation so that text compares and sorts byte-wise, as SQLite's BINARY does (ids
-- and ISO timestamps are compared and ordered as text), whatever the database's locale.

-- Fencing tokens: the highest leadership term that acted on each singleton duty. A write
-- made on behalf of a leader first advances its row; a term lower than the stored one is
-- a stale leader (paused, partitioned) and its write is refused.
CREATE TABLE fencing_terms (
    name       TEXT COLLATE "C" PRIMARY KEY,
    term       BIGINT NOT NULL,
    holder     TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
