//! Sessions on SQLite: one row per session id, the newest of a pair wins; on a tie of
//! `created_at`, the row inserted last (its `rowid`). The rest is `store/sql/sessions.rs`.

use sqlx::Sqlite;

use super::SqliteStore;
use super::busy::write_tx;
use crate::store::sql::sessions::{impl_session_store, session_columns};

/// SQLite has no `DISTINCT ON`: the newest of each pair is the first of a window.
impl SqliteStore {
    const NEWEST_OF_PAIR: &str = concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE user_id = $1 AND place_id = $2 \
         ORDER BY created_at DESC, rowid DESC LIMIT 1"
    );
    const NEWEST_OF_EVERY_PAIR: &str = concat!(
        "SELECT ",
        session_columns!(),
        " FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id, place_id \
         ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions) WHERE rn = 1"
    );
    const COUNTED_OF_USER: &str = "SELECT COUNT(*) FROM (SELECT status, ROW_NUMBER() OVER \
         (PARTITION BY place_id ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions \
         WHERE user_id = $1) WHERE rn = 1 AND status <> $2";
}

impl_session_store!(SqliteStore, Sqlite, write_tx);
