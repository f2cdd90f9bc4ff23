//! Session rows, written once but for "the newest row of a pair" (see `NEWEST_*` in each
//! backend's `sessions.rs`).

use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::store::error::StoreContext;
use crate::store::sql::StoreRow;
use crate::store::{FetchState, SessionRecord, StoreResult};

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! session_columns {
    () => {
        "session_id, user_id, place_id, status, phone_number, name, error_message, \
         connected_at, last_activity, created_at, updated_at, fetch_progress, fetch_processed, \
         fetch_total, fetch_completed, fetch_error, fetch_summary, last_contacts_sync"
    };
}
pub(crate) use session_columns;

pub(crate) fn session_from_row(row: &impl StoreRow) -> StoreResult<SessionRecord> {
    let status: String = row.col("status")?;
    let summary: Option<String> = row.col("fetch_summary")?;
    Ok(SessionRecord {
        session_id: SessionId::from_db(row.col("session_id")?),
        pair: Pair::new(
            UserId::new_unchecked(row.col("user_id")?),
            PlaceId::new_unchecked(row.col("place_id")?),
        ),
        status: SessionStatus::parse(&status)
            .with_context(|| format!("unknown session status {status:?} in database"))?,
        phone_number: row
            .col::<Option<String>>("phone_number")?
            .map(PhoneNumber::from_db),
        name: row.col("name")?,
        error_message: row.col("error_message")?,
        connected_at: row.col("connected_at")?,
        last_activity: row.col("last_activity")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        fetch: FetchState {
            progress: row.col("fetch_progress")?,
            processed: row.col("fetch_processed")?,
            total: row.col("fetch_total")?,
            completed: row.col("fetch_completed")?,
            error: row.col("fetch_error")?,
            summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
            last_sync: row.col("last_contacts_sync")?,
        },
    })
}

pub(crate) fn summary_json(rec: &SessionRecord) -> Option<String> {
    rec.fetch
        .summary
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok())
}

/// `impl SessionStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`. The store brings the statements that pick the newest row of a
/// pair: `NEWEST_OF_PAIR` (`$1` user, `$2` place), `NEWEST_OF_EVERY_PAIR`, and
/// `COUNTED_OF_USER` (`$1` user, `$2` the status not counted).
macro_rules! impl_session_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use $crate::domain::{Pair, PhoneNumber, SessionStatus, UserId};
            use $crate::store::error::StoreContext;
            use $crate::store::sql::Dialect;
            use $crate::store::sql::sessions::{session_from_row, summary_json};
            use $crate::store::{SessionRecord, StoreResult};

            #[async_trait::async_trait]
            impl $crate::store::traits::SessionStore for $store {
                async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()> {
                    $write!(self, "save a session", |conn| {
                        sqlx::query(
                            "INSERT INTO sessions (session_id, user_id, place_id, status, \
                             phone_number, name, error_message, connected_at, last_activity, \
                             created_at, updated_at, fetch_progress, fetch_processed, \
                             fetch_total, fetch_completed, fetch_error, fetch_summary, \
                             last_contacts_sync) \
                             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) \
                             ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                             phone_number = excluded.phone_number, name = excluded.name, \
                             error_message = excluded.error_message, \
                             connected_at = excluded.connected_at, \
                             last_activity = excluded.last_activity, \
                             updated_at = excluded.updated_at, \
                             fetch_progress = excluded.fetch_progress, \
                             fetch_processed = excluded.fetch_processed, \
                             fetch_total = excluded.fetch_total, \
                             fetch_completed = excluded.fetch_completed, \
                             fetch_error = excluded.fetch_error, \
                             fetch_summary = excluded.fetch_summary, \
                             last_contacts_sync = excluded.last_contacts_sync",
                        )
                        .bind(rec.session_id.as_str())
                        .bind(rec.pair.user_id.get())
                        .bind(rec.pair.place_id.get())
                        .bind(rec.status.as_str())
                        .bind(rec.phone_number.as_ref().map(PhoneNumber::as_str))
                        .bind(<$db as Dialect>::text(rec.name.as_deref()))
                        .bind(<$db as Dialect>::text(rec.error_message.as_deref()))
                        .bind(rec.connected_at)
                        .bind(rec.last_activity)
                        .bind(rec.created_at)
                        .bind(rec.updated_at)
                        .bind(rec.fetch.progress)
                        .bind(rec.fetch.processed)
                        .bind(rec.fetch.total)
                        .bind(rec.fetch.completed)
                        .bind(<$db as Dialect>::text(rec.fetch.error.as_deref()))
                        .bind(summary_json(rec))
                        .bind(rec.fetch.last_sync)
                        .execute(conn)
                        .await
                        .context("save session")?;
                        Ok(())
                    })
                }

                async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>> {
                    let row = sqlx::query(Self::NEWEST_OF_PAIR)
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(session_from_row).transpose()
                }

                async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
                    let rows = sqlx::query(Self::NEWEST_OF_EVERY_PAIR)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(session_from_row).collect()
                }

                async fn counted_sessions(&self, user: UserId) -> StoreResult<i64> {
                    let n = sqlx::query_scalar(Self::COUNTED_OF_USER)
                        .bind(user.get())
                        .bind(SessionStatus::LoggedOut.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .context("count the user's sessions")?;
                    Ok(n)
                }
            }
        };
    };
}
pub(crate) use impl_session_store;
