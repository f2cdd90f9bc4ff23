//! Sessions on SQLite: one row per session id, the newest of a pair wins.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::store::error::StoreContext;
use crate::store::prelude::*;
use crate::store::*;

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
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

const SESSION_COLUMNS: &str = "session_id, user_id, place_id, status, phone_number, name, \
    error_message, connected_at, last_activity, created_at, updated_at, fetch_progress, \
    fetch_processed, fetch_total, fetch_completed, fetch_error, fetch_summary, last_contacts_sync";

#[async_trait]
impl SessionStore for SqliteStore {
    async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        write_tx!(self, "save a session", |conn| {
            sqlx::query(
                "INSERT INTO sessions (session_id, user_id, place_id, status, phone_number, name, \
                 error_message, connected_at, last_activity, created_at, updated_at, \
                 fetch_progress, fetch_processed, fetch_total, fetch_completed, fetch_error, \
                 fetch_summary, last_contacts_sync) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
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
            .bind(rec.name.as_deref())
            .bind(rec.error_message.as_deref())
            .bind(rec.connected_at)
            .bind(rec.last_activity)
            .bind(rec.created_at)
            .bind(rec.updated_at)
            .bind(rec.fetch.progress)
            .bind(rec.fetch.processed)
            .bind(rec.fetch.total)
            .bind(rec.fetch.completed)
            .bind(rec.fetch.error.as_deref())
            .bind(summary_json(rec))
            .bind(rec.fetch.last_sync)
            .execute(conn)
            .await
            .context("save session")?;
            Ok(())
        })
    }

    async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(SESSION_COLUMNS)
            .push(" FROM sessions WHERE user_id = ")
            .push_bind(pair.user_id.get())
            .push(" AND place_id = ")
            .push_bind(pair.place_id.get())
            .push(" ORDER BY created_at DESC, rowid DESC LIMIT 1");
        let row = q.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(SESSION_COLUMNS).push(
            " FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id, place_id \
             ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions) WHERE rn = 1",
        );
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn counted_sessions(&self, user: UserId) -> StoreResult<i64> {
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT status, ROW_NUMBER() OVER (PARTITION BY place_id \
             ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions WHERE user_id = ?) \
             WHERE rn = 1 AND status <> ?",
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
