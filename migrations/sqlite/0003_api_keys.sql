-- Tenant API keys. The key itself is never stored: only its SHA-256. `public_id` is the
-- non-secret part of the key (`wam_<public_id>_<secret>`), so a presented key is looked up
-- by it and its hash compared in constant time.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id    TEXT    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL,
    name         TEXT,
    key_hash     BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,   -- unix ms
    last_used_at INTEGER,            -- unix ms, refreshed at most once a minute
    revoked_at   INTEGER             -- unix ms; a revoked key is refused and no longer listed
);

CREATE INDEX api_keys_by_user ON api_keys (user_id) WHERE revoked_at IS NULL;
