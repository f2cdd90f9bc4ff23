-- Richer messaging: media of every kind, receipts, an inbox, number checks and opt-outs.
--
-- `messages` is rebuilt because SQLite cannot widen a CHECK in place: every existing row is
-- copied as it is (an outgoing message, `direction = 'out'`), with the same id, so a queued
-- message still goes out after the upgrade and the log keeps its ids.
CREATE TABLE messages_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL,
    place_id        INTEGER NOT NULL,
    job_id          INTEGER REFERENCES message_jobs (id),
    contact_id      INTEGER,
    -- 'out': we sent it to `recipient`; 'in': `recipient` wrote it to the linked number.
    direction       TEXT    NOT NULL DEFAULT 'out' CHECK (direction IN ('in', 'out')),
    -- The other party, E.164, whichever the direction.
    recipient       TEXT    NOT NULL,
    -- Outgoing: the name the message was addressed to; incoming: the sender's push name.
    recipient_name  TEXT,
    kind            TEXT    NOT NULL
        CHECK (kind IN ('text', 'image', 'document', 'video', 'audio', 'sticker', 'other')),
    body            TEXT,               -- the text, or the media's caption, variables filled
    image_url       TEXT,               -- an image sent by URL (the earlier service's field)
    template_id     TEXT,
    -- Outgoing: queued → sending → sent → delivered → read (→ played for a voice note), or
    -- failed; a receipt never moves a message backwards. Incoming: received → read.
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered',
                                                       'read', 'played', 'failed', 'received')),
    -- Chosen when queued and kept for every attempt: a send repeated after a crash carries
    -- the same id, which the recipient's WhatsApp treats as the same message. Incoming: the
    -- sender's id for it.
    wa_message_id   TEXT    NOT NULL,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- A bulk send's own delay between its messages, when slower than the session's pace.
    min_gap_ms      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Outgoing: when WhatsApp took it; incoming: when the sender's phone stamped it.
    sent_at         INTEGER,
    failed_at       INTEGER,
    -- Media of any kind: a URL to download at send time, or an upload's id.
    media_url       TEXT,
    media_id        TEXT,
    media_mime      TEXT,
    media_size      INTEGER,
    media_file_name TEXT,
    voice_note      INTEGER NOT NULL DEFAULT 0,
    -- Incoming media: what WhatsApp needs to hand the bytes over later (JSON: direct path,
    -- keys, hashes), so it is downloaded only when asked for.
    media_ref       TEXT,
    -- Receipts. Outgoing: when the recipient's phone got, read, played it. Incoming: read_at
    -- is when we marked it read (unread while NULL).
    delivered_at    INTEGER,
    read_at         INTEGER,
    played_at       INTEGER
);
INSERT INTO messages_v2 (id, user_id, place_id, job_id, contact_id, recipient, recipient_name,
                         kind, body, image_url, template_id, status, wa_message_id, error,
                         attempts, min_gap_ms, created_at, updated_at, sent_at, failed_at,
                         media_url)
SELECT id, user_id, place_id, job_id, contact_id, recipient, recipient_name, kind, body,
       image_url, template_id, status, wa_message_id, error, attempts, min_gap_ms, created_at,
       updated_at, sent_at, failed_at, image_url
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;
CREATE INDEX messages_queue ON messages (user_id, place_id, status, id);
CREATE INDEX messages_by_pair ON messages (user_id, place_id, id);
CREATE INDEX messages_by_job ON messages (job_id, status) WHERE job_id IS NOT NULL;
CREATE INDEX messages_sent ON messages (user_id, place_id, sent_at) WHERE sent_at IS NOT NULL;
-- A receipt names the message by WhatsApp's id.
CREATE INDEX messages_by_wa_id ON messages (user_id, place_id, wa_message_id);
-- An incoming message is kept once, however often WhatsApp hands it over.
CREATE UNIQUE INDEX messages_incoming_once ON messages (user_id, place_id, wa_message_id)
    WHERE direction = 'in';
-- A conversation: the messages with one other party, newest first.
CREATE INDEX messages_by_peer ON messages (user_id, place_id, recipient, id);

-- What a group or bulk send left out, and why.
ALTER TABLE message_jobs ADD COLUMN opted_out_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message_jobs ADD COLUMN not_on_whatsapp_skipped INTEGER NOT NULL DEFAULT 0;

-- A contact who wrote an opt-out word: nothing more is sent to them until it is cleared.
ALTER TABLE contacts ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN opted_out_at INTEGER;

-- Files uploaded to send later by `media_id`, kept 24 hours. The bytes live here (not in
-- the data dir) so every node of a cluster can send them.
CREATE TABLE media_uploads (
    id          TEXT    PRIMARY KEY,
    -- The tenant whose key uploaded it; NULL for the admin key (usable for any user).
    user_id     INTEGER,
    kind        TEXT    NOT NULL CHECK (kind IN ('image', 'document', 'video', 'audio')),
    mime_type   TEXT    NOT NULL,
    file_name   TEXT,
    size_bytes  INTEGER NOT NULL,
    bytes       BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX media_uploads_expiry ON media_uploads (expires_at);

-- Whether a number is on WhatsApp, as WhatsApp (or the sim) last answered, kept a day.
CREATE TABLE number_checks (
    phone_number TEXT    PRIMARY KEY,   -- E.164
    on_whatsapp  INTEGER NOT NULL,
    is_business  INTEGER NOT NULL DEFAULT 0,
    jid          TEXT,
    checked_at   INTEGER NOT NULL
);
