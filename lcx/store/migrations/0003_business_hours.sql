-- Business hours of a user group (API.md section 6): one JSON document per organization
-- and user group.
CREATE TABLE business_hours (
    org_id        TEXT NOT NULL,
    user_group_id TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (org_id, user_group_id)
);
