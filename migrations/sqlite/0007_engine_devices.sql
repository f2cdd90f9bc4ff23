-- The WhatsApp engine's device store (whatsapp-rust's storage `Backend`), one row set per
-- session in the service's own database instead of one SQLite file per linked number.
-- Every `wa_*` table is keyed by its device first, and a device's rows go with it
-- (`ON DELETE CASCADE`; the pool turns foreign keys on), so forgetting a session is one delete.

-- One per session. `device` is the library's `Device` (format byte + JSON), NULL until the
-- engine first creates it; `pn` is set when the library saves a registered device, and
-- `linked_at` (unix ms) once the phone accepted the link.
-- AUTOINCREMENT: an id is never handed out twice, so a stale handle of a forgotten session
-- can never write into a newer session's rows (its writes fail on the foreign key instead).
CREATE TABLE wa_devices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id    TEXT    NOT NULL UNIQUE,
    device        BLOB,
    pn            TEXT,
    lid           TEXT,
    linked_at     INTEGER,
    imported_from TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE wa_identities (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    key       BLOB    NOT NULL,
    PRIMARY KEY (device_id, address)
);

-- Not `sessions`: that name is the service's own table.
CREATE TABLE wa_signal_sessions (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    record    BLOB    NOT NULL,
    PRIMARY KEY (device_id, address)
);

CREATE TABLE wa_prekeys (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    id        INTEGER NOT NULL,
    record    BLOB    NOT NULL,
    uploaded  INTEGER NOT NULL,
    PRIMARY KEY (device_id, id)
);

CREATE TABLE wa_signed_prekeys (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    id        INTEGER NOT NULL,
    record    BLOB    NOT NULL,
    PRIMARY KEY (device_id, id)
);

CREATE TABLE wa_sender_keys (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    record    BLOB    NOT NULL,
    PRIMARY KEY (device_id, address)
);

CREATE TABLE wa_app_state_keys (
    device_id   INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    key_id      BLOB    NOT NULL,
    key_data    BLOB    NOT NULL,
    fingerprint BLOB    NOT NULL,
    timestamp   INTEGER NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

CREATE TABLE wa_app_state_versions (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    state     BLOB    NOT NULL,
    PRIMARY KEY (device_id, name)
);

CREATE TABLE wa_app_state_mutation_macs (
    device_id INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    index_mac BLOB    NOT NULL,
    version   INTEGER NOT NULL,
    value_mac BLOB    NOT NULL,
    PRIMARY KEY (device_id, name, index_mac)
);

CREATE TABLE wa_lid_pn_mapping (
    device_id       INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    lid             TEXT    NOT NULL,
    phone_number    TEXT    NOT NULL,
    learning_source TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (device_id, lid)
);
CREATE INDEX wa_lid_pn_mapping_by_phone ON wa_lid_pn_mapping (device_id, phone_number, updated_at);

CREATE TABLE wa_sender_key_devices (
    device_id  INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    group_jid  TEXT    NOT NULL,
    device_jid TEXT    NOT NULL,
    has_key    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, group_jid, device_jid)
);
CREATE INDEX wa_sender_key_devices_by_device ON wa_sender_key_devices (device_id, device_jid);

CREATE TABLE wa_base_keys (
    device_id  INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    base_key   BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, address, message_id)
);

CREATE TABLE wa_device_registry (
    device_id    INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    user_id      TEXT    NOT NULL,
    devices_json TEXT    NOT NULL,
    timestamp    INTEGER NOT NULL,
    phash        TEXT,
    raw_id       INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, user_id)
);

CREATE TABLE wa_tc_tokens (
    device_id        INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    jid              TEXT    NOT NULL,
    token            BLOB    NOT NULL,
    token_timestamp  INTEGER NOT NULL,
    sender_timestamp INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (device_id, jid)
);

CREATE TABLE wa_sent_messages (
    device_id  INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    chat_jid   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, chat_jid, message_id)
);
CREATE INDEX wa_sent_messages_by_age ON wa_sent_messages (device_id, created_at);

CREATE TABLE wa_msg_secrets (
    device_id  INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    chat       TEXT    NOT NULL,
    sender     TEXT    NOT NULL,
    msg_id     TEXT    NOT NULL,
    secret     BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    message_ts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, chat, sender, msg_id)
);
CREATE INDEX wa_msg_secrets_by_expiry ON wa_msg_secrets (device_id, expires_at);

CREATE TABLE wa_group_metadata (
    device_id  INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    group_jid  TEXT    NOT NULL,
    info       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, group_jid)
);

CREATE TABLE wa_pending_inbound (
    device_id   INTEGER NOT NULL REFERENCES wa_devices(id) ON DELETE CASCADE,
    chat        TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    message     BLOB    NOT NULL,
    inserted_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, chat, sender, id)
);
CREATE INDEX wa_pending_inbound_by_age ON wa_pending_inbound (device_id, inserted_at);
