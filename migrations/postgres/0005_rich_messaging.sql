-- Richer messaging: media of every kind, receipts, an inbox, number checks and opt-outs
-- (the same columns as SQLite's 0010, which explains each).
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'image', 'document', 'video', 'audio', 'sticker', 'other'));
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'played', 'failed',
                      'received'));
ALTER TABLE messages
    ADD COLUMN direction       TEXT    NOT NULL DEFAULT 'out' CHECK (direction IN ('in', 'out')),
    ADD COLUMN media_url       TEXT,
    ADD COLUMN media_id        TEXT,
    ADD COLUMN media_mime      TEXT,
    ADD COLUMN media_size      BIGINT,
    ADD COLUMN media_file_name TEXT,
    ADD COLUMN voice_note      BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN media_ref       TEXT,
    ADD COLUMN delivered_at    BIGINT,
    ADD COLUMN read_at         BIGINT,
    ADD COLUMN played_at       BIGINT;
UPDATE messages SET media_url = image_url WHERE image_url IS NOT NULL;
CREATE INDEX messages_by_wa_id ON messages (user_id, place_id, wa_message_id);
CREATE UNIQUE INDEX messages_incoming_once ON messages (user_id, place_id, wa_message_id)
    WHERE direction = 'in';
CREATE INDEX messages_by_peer ON messages (user_id, place_id, recipient, id);

ALTER TABLE message_jobs
    ADD COLUMN opted_out_skipped       BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN not_on_whatsapp_skipped BIGINT NOT NULL DEFAULT 0;

ALTER TABLE contacts
    ADD COLUMN opted_out    BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN opted_out_at BIGINT;

CREATE TABLE media_uploads (
    id          TEXT   PRIMARY KEY,
    user_id     BIGINT,
    kind        TEXT   NOT NULL CHECK (kind IN ('image', 'document', 'video', 'audio')),
    mime_type   TEXT   NOT NULL,
    file_name   TEXT,
    size_bytes  BIGINT NOT NULL,
    bytes       BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX media_uploads_expiry ON media_uploads (expires_at);

CREATE TABLE number_checks (
    phone_number TEXT    PRIMARY KEY,
    on_whatsapp  BOOLEAN NOT NULL,
    is_business  BOOLEAN NOT NULL DEFAULT FALSE,
    jid          TEXT,
    checked_at   BIGINT  NOT NULL
);
