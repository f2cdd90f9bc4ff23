//! Sessions on PostgreSQL: one row per session id, the newest of a pair wins; on a tie of
//! `created_at`, the row inserted last (`seq`, SQLite's rowid, which PostgreSQL has not).
//! The rest is `store/sql/sessions.rs`.

use sqlx::Postgres;

use super::{PgStore, pg_tx};
use crate::store::sql::sessions::{impl_session_store, session_columns};

/// `DISTINCT ON` reads the newest row of each pair straight off `sessions_by_pair`.
impl PgStore {
    const NEWEST_OF_PAIR: &str = concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE user_id = $1 AND place_id = $2 \
         ORDER BY created_at DESC, seq DESC LIMIT 1"
    );
    const NEWEST_OF_EVERY_PAIR: &str = concat!(
        "SELECT DISTINCT ON (user_id, place_id) ",
        session_columns!(),
        " FROM sessions ORDER BY user_id, place_id, created_at DESC, seq DESC"
    );
    const COUNTED_OF_USER: &str = "SELECT COUNT(*) FROM (SELECT DISTINCT ON (place_id) status \
         FROM sessions WHERE user_id = $1 ORDER BY place_id, created_at DESC, seq DESC) \
         AS newest WHERE status <> $2";
}

impl_session_store!(PgStore, Postgres, pg_tx);
