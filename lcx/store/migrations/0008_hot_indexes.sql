-- Indexes shaped for what runs often (issue 11, "cost independent of size"). Index-only
-- changes, in SQL both dialects read alike (no TEXT column is created, so no PostgreSQL
-- override is needed). Each statement that should use a partial index below spells its
-- status as the same literal, so that PostgreSQL's generic plans can use it too.

-- A queue's waiting requests in place order (pending_entries, pending_places,
-- pending_in_queue: org, group, pending, ORDER BY queued_at, id), read from the index
-- alone: the resync every 10 s no longer looks up each waiting row in the table and sorts
-- them. Partial: only pending rows are in it, so a message, an accepted or an ended
-- conversation never writes to it.
CREATE INDEX conversations_waiting ON conversations
    (org_id, user_group_id, status, queued_at, id, request_id) WHERE status = 'pending';

-- The delivery indexes hold the pending events only. Before, every delivered event
-- stayed in both (outbox_due by (status, next_attempt_at), outbox_lane by lane): they grew
-- with the whole history and a delivery moved two entries to another part of each. Now a
-- delivery only removes them, and the two stay as small as the backlog. Lanes keep their
-- order through the UNIQUE (conversation_id, target, event_no) index, which also serves
-- the retention deletes by conversation.
DROP INDEX outbox_due;
DROP INDEX outbox_lane;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_lane ON outbox (conversation_id, target, status, event_no)
    WHERE status = 'pending';
-- The dead-letter list (oldest first) and its count, which outbox_due served before.
CREATE INDEX outbox_dead ON outbox (status, created_at, id) WHERE status = 'dead';
