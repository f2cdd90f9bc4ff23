-- Every connection a simulated client opened to the simulated WhatsApp (as PostgreSQL's
-- 0004): one device, one open connection; a second one replaces the first.
CREATE TABLE sim_connections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    place_id   INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    opened_at  INTEGER NOT NULL,
    closed_at  INTEGER,
    reason     TEXT
);
CREATE INDEX sim_connections_by_pair ON sim_connections (user_id, place_id, id);
CREATE INDEX sim_connections_open ON sim_connections (session_id) WHERE closed_at IS NULL;
