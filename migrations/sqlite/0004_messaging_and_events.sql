-- The outbox: every send is a row before anything goes out, so a queued message survives a
-- crash, and each outcome (sent with WhatsApp's id, or failed with the reason) is kept.
-- Timestamps are unix milliseconds.

CREATE TABLE message_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL,
    place_id    INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('group', 'bulk')),
    -- The group sent to; kept as a plain number, the group may be deleted later.
    group_id    INTEGER,
    total       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX message_jobs_by_pair ON message_jobs (user_id, place_id, id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL,
    place_id        INTEGER NOT NULL,
    job_id          INTEGER REFERENCES message_jobs (id),
    contact_id      INTEGER,
    recipient       TEXT    NOT NULL,   -- E.164
    recipient_name  TEXT,
    kind            TEXT    NOT NULL CHECK (kind IN ('text', 'image')),
    body            TEXT,               -- the text, or the image's caption, variables filled
    image_url       TEXT,
    template_id     TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    -- Chosen when queued and kept for every attempt: a send repeated after a crash carries
    -- the same id, which the recipient's WhatsApp treats as the same message.
    wa_message_id   TEXT    NOT NULL,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- A bulk send's own delay between its messages, when slower than the session's pace.
    min_gap_ms      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    failed_at       INTEGER
);
-- The worker's "next message of this pair" and the listings.
CREATE INDEX messages_queue ON messages (user_id, place_id, status, id);
CREATE INDEX messages_by_pair ON messages (user_id, place_id, id);
CREATE INDEX messages_by_job ON messages (job_id, status) WHERE job_id IS NOT NULL;
CREATE INDEX messages_sent ON messages (user_id, place_id, sent_at) WHERE sent_at IS NOT NULL;

-- One webhook per tenant (user_id). The secret signs every body (HMAC-SHA256); it must be
-- readable to sign, so it is stored as given.
CREATE TABLE webhooks (
    user_id     INTEGER PRIMARY KEY NOT NULL,
    url         TEXT    NOT NULL,
    secret      TEXT    NOT NULL,
    events      TEXT    NOT NULL,   -- JSON list of subscribed event types
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Every event, in order; the server-sent-events stream and the webhook deliveries read it.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL,
    place_id    INTEGER NOT NULL,
    session_id  TEXT,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,   -- the JSON body exactly as delivered and signed
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, id);

-- The durable delivery queue: delivered in event order per tenant, retried with backoff.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL,
    event_id         INTEGER NOT NULL REFERENCES events (id),
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (user_id, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_user ON webhook_deliveries (user_id, id);
