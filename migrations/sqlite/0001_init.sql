-- Timestamps: *_at columns are unix milliseconds, except contacts.last_message_at which is
-- unix seconds as WhatsApp reports it.

CREATE TABLE sessions (
    session_id          TEXT PRIMARY KEY NOT NULL,
    user_id             INTEGER NOT NULL,
    place_id            INTEGER NOT NULL,
    status              TEXT NOT NULL,
    phone_number        TEXT,
    name                TEXT,
    error_message       TEXT,
    connected_at        INTEGER,
    last_activity       INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    fetch_progress      INTEGER NOT NULL DEFAULT 0,
    fetch_processed     INTEGER NOT NULL DEFAULT 0,
    fetch_total         INTEGER NOT NULL DEFAULT 0,
    fetch_completed     INTEGER NOT NULL DEFAULT 0,
    fetch_error         TEXT,
    fetch_summary       TEXT,
    last_contacts_sync  INTEGER
);
CREATE INDEX sessions_by_pair ON sessions (user_id, place_id, created_at DESC);

CREATE TABLE contacts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL,
    place_id         INTEGER NOT NULL,
    phone_number     TEXT NOT NULL,
    jid              TEXT,
    name             TEXT,
    push_name        TEXT,
    -- Lowercased by the application (SQLite's lower() folds ASCII only), for search.
    name_lc          TEXT,
    push_name_lc     TEXT,
    is_business      INTEGER NOT NULL DEFAULT 0,
    last_message_at  INTEGER,
    tags             TEXT NOT NULL DEFAULT '[]',
    custom_fields    TEXT NOT NULL DEFAULT '{}',
    is_active        INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_synced_at   INTEGER,
    -- The upsert key: a second fetch can update but never duplicate a number.
    UNIQUE (user_id, place_id, phone_number)
);
CREATE INDEX contacts_by_activity ON contacts (user_id, place_id, last_message_at);

CREATE TABLE contact_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL,
    place_id     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('auto', 'manual')),
    -- Membership rule of an automatic group; NULL for manual groups.
    auto_rule    TEXT CHECK (auto_rule IS NULL OR auto_rule IN ('all', 'recent_90d')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- The database, not a check-then-insert, keeps the default groups unique per pair.
    UNIQUE (user_id, place_id, name)
);
CREATE UNIQUE INDEX contact_groups_one_rule_per_pair
    ON contact_groups (user_id, place_id, auto_rule) WHERE auto_rule IS NOT NULL;

CREATE TABLE contact_group_members (
    group_id    INTEGER NOT NULL REFERENCES contact_groups (id) ON DELETE CASCADE,
    contact_id  INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (group_id, contact_id)
);
CREATE INDEX contact_group_members_by_contact ON contact_group_members (contact_id);
