-- What the real engine learns of an account's contacts as WhatsApp sends it (history sync,
-- app-state contacts, push names, live messages). The library keeps none of it, and history
-- comes only once, so it is written here the moment it arrives; a contact fetch reads it.
CREATE TABLE engine_contact_cache (
    session_id      TEXT    NOT NULL,
    jid             TEXT    NOT NULL,   -- the chat or contact as WhatsApp names it (pn or lid)
    pn_jid          TEXT,               -- its phone-number jid, when WhatsApp said
    lid_jid         TEXT,
    name            TEXT,               -- the name saved on the phone
    push_name       TEXT,               -- the name the contact set
    is_business     INTEGER,
    last_message_at INTEGER,            -- unix seconds of the chat's last message
    updated_at      INTEGER NOT NULL,   -- unix ms
    PRIMARY KEY (session_id, jid)
);

-- LID <-> phone-number pairs WhatsApp told the account, to resolve LID-only chats.
CREATE TABLE engine_lid_map (
    session_id TEXT NOT NULL,
    lid_jid    TEXT NOT NULL,
    pn_jid     TEXT NOT NULL,
    PRIMARY KEY (session_id, lid_jid)
);
