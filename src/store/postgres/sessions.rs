//! Sessions on PostgreSQL: one row per session id, the newest of a pair wins; on a tie of
//! `created_at`, the row inserted last (`seq`, SQLite's rowid).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, pg_tx};
use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::store::error::StoreContext;
use crate::store::prelude::*;
use crate::store::*;

fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    let status: String = row.try_get("status")?;
    let summary: Option<String> = row.try_get("fetch_summary")?;
    Ok(SessionRecord {
        session_id: SessionId::from_db(row.try_get("session_id")?),
        pair: Pair::new(
            UserId::new_unchecked(row.try_get("user_id")?),
            PlaceId::new_unchecked(row.try_get("place_id")?),
        ),
        status: SessionStatus::parse(&status)
            .with_context(|| format!("unknown session status {status:?} in database"))?,
        phone_number: row
            .try_get::<Option<String>, _>("phone_number")?
            .map(PhoneNumber::from_db),
        name: row.try_get("name")?,
        error_message: row.try_get("error_message")?,
        connected_at: row.try_get("connected_at")?,
        last_activity: row.try_get("last_activity")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        fetch: FetchState {
            progress: row.try_get("fetch_progress")?,
            processed: row.try_get("fetch_processed")?,
            total: row.try_get("fetch_total")?,
            completed: row.try_get("fetch_completed")?,
            error: row.try_get("fetch_error")?,
            summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
            last_sync: row.try_get("last_contacts_sync")?,
        },
    })
}

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! session_columns {
    () => {
        "session_id, user_id, place_id, status, phone_number, name, error_message, \
         connected_at, last_activity, created_at, updated_at, fetch_progress, fetch_processed, \
         fetch_total, fetch_completed, fetch_error, fetch_summary, last_contacts_sync"
    };
}

#[async_trait]
impl SessionStore for PgStore {
    async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        pg_tx!(self, "save a session", |conn| {
            sqlx::query(
                "INSERT INTO sessions (session_id, user_id, place_id, status, phone_number, name, \
                 error_message, connected_at, last_activity, created_at, updated_at, \
                 fetch_progress, fetch_processed, fetch_total, fetch_completed, fetch_error, \
                 fetch_summary, last_contacts_sync) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) \
                 ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                 phone_number = excluded.phone_number, name = excluded.name, \
                 error_message = excluded.error_message, connected_at = excluded.connected_at, \
                 last_activity = excluded.last_activity, updated_at = excluded.updated_at, \
                 fetch_progress = excluded.fetch_progress, \
                 fetch_processed = excluded.fetch_processed, \
                 fetch_total = excluded.fetch_total, fetch_completed = excluded.fetch_completed, \
                 fetch_error = excluded.fetch_error, fetch_summary = excluded.fetch_summary, \
                 last_contacts_sync = excluded.last_contacts_sync",
            )
            .bind(rec.session_id.as_str())
            .bind(rec.pair.user_id.get())
            .bind(rec.pair.place_id.get())
            .bind(rec.status.as_str())
            .bind(rec.phone_number.as_ref().map(PhoneNumber::as_str))
            .bind(super::pg_text(rec.name.as_deref()))
            .bind(super::pg_text(rec.error_message.as_deref()))
            .bind(rec.connected_at)
            .bind(rec.last_activity)
            .bind(rec.created_at)
            .bind(rec.updated_at)
            .bind(rec.fetch.progress)
            .bind(rec.fetch.processed)
            .bind(rec.fetch.total)
            .bind(rec.fetch.completed)
            .bind(super::pg_text(rec.fetch.error.as_deref()))
            .bind(summary_json(rec))
            .bind(rec.fetch.last_sync)
            .execute(conn)
            .await
            .context("save session")?;
            Ok(())
        })
    }

    async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND place_id = $2 \
             ORDER BY created_at DESC, seq DESC LIMIT 1"
        ))
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT DISTINCT ON (user_id, place_id) ",
            session_columns!(),
            " FROM sessions ORDER BY user_id, place_id, created_at DESC, seq DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn counted_sessions(&self, user: UserId) -> StoreResult<i64> {
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT ON (place_id) status FROM sessions \
             WHERE user_id = $1 ORDER BY place_id, created_at DESC, seq DESC) AS newest \
             WHERE status <> $2",
        )
        .bind(user.get())
        .bind(SessionStatus::LoggedOut.as_str())
        .fetch_one(&self.pool)
        .await
        .context("count the user's sessions")?;
        Ok(n)
    }
}

fn summary_json(rec: &SessionRecord) -> Option<String> {
    rec.fetch
        .summary
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok())
}
