//! The event log and the webhook delivery queue on SQLite; the rest is
//! `store/sql/events.rs`.

use sqlx::{Sqlite, SqliteConnection};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::UserId;
use crate::store::StoreResult;
use crate::store::sql::events::{impl_event_store, webhook_columns};

impl SqliteStore {
    /// A webhook's events are a JSON array in `TEXT`, read with `json_each`.
    const QUEUE_DELIVERY: &str = "INSERT INTO webhook_deliveries (user_id, event_id, status, \
         next_attempt_at, created_at, updated_at) \
         SELECT w.user_id, $1, 'pending', $2, $2, $2 FROM webhooks w \
         WHERE w.user_id = $3 AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = $4)";
    const UPSERT_WEBHOOK: &str = concat!(
        "INSERT INTO webhooks (user_id, url, secret, events, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
         events = excluded.events, updated_at = excluded.updated_at RETURNING ",
        webhook_columns!()
    );

    /// Nothing to take: SQLite's single writer already commits a tenant's events in the
    /// order of their ids.
    async fn lock_tenant(_tx: &mut SqliteConnection, _user: UserId) -> StoreResult<()> {
        Ok(())
    }
}

impl_event_store!(SqliteStore, Sqlite, write_tx);
