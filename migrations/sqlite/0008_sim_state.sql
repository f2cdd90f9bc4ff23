-- The simulated engine's state moves from files under <data-dir>/sim/ into the database
-- (issue 16), so a server with an empty data dir restores every simulated link, like a real one.

-- A linked simulated phone: its credentials (JSON: the number, its name, when it linked).
CREATE TABLE sim_devices (
    session_id TEXT PRIMARY KEY NOT NULL,
    device     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- What a pair's simulated phone holds (JSON, up to the configured upload limit).
CREATE TABLE sim_phonebooks (
    user_id    INTEGER NOT NULL,
    place_id   INTEGER NOT NULL,
    book       BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, place_id)
);

-- Everything a pair's simulated phone sent (JSON per message), oldest first by id.
CREATE TABLE sim_sent (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    place_id   INTEGER NOT NULL,
    sent       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX sim_sent_by_pair ON sim_sent (user_id, place_id, id);
