-- Organization livechat settings (API.md "livechat-settings"): one JSON document per
-- organization, replaced as a whole. updated_at is an ISO-8601 UTC timestamp.
CREATE TABLE org_settings (
    org_id     TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
