-- Fencing tokens: the highest leadership term that acted on each singleton duty. A write
-- made on behalf of a leader first advances its row; a term lower than the stored one is
-- a stale leader (paused, partitioned) and its write is refused.
CREATE TABLE fencing_terms (
    name       TEXT PRIMARY KEY,
    term       BIGINT NOT NULL,
    holder     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
