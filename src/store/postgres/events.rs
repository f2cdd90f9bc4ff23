//! The event log and the webhook delivery queue on PostgreSQL; the rest is
//! `store/sql/events.rs`.
//!
//! Identity values are handed out when a row is inserted, not when it commits: two writers
//! can commit ids 11 then 10, and a listener that already read 11 would never see 10. So
//! `record_event` holds a lock per tenant from before its insert to its commit; a tenant's
//! events (and their deliveries, which follow them in one transaction) then commit in the
//! order of their ids, as they do under SQLite's single writer.

use sqlx::{PgConnection, Postgres};

use super::{PgStore, pg_tx};
use crate::domain::UserId;
use crate::store::StoreResult;
use crate::store::sql::events::{impl_event_store, webhook_columns};

/// The first key of the per-tenant event locks (two-key advisory locks, a key space of
/// their own): "WAME".
const EVENT_LOCKS: i32 = 0x5741_4d45;

/// The second key: the user id folded to 32 bits. Two tenants that share one only take
/// turns with each other.
fn tenant_lock(user: UserId) -> i32 {
    let id = user.get();
    (id ^ (id >> 32)) as i32
}

impl PgStore {
    /// A webhook's events are JSONB: `?` is "has this string element" (sqlx binds with `$n`,
    /// so it is no placeholder here), and a bound text is cast to it.
    const QUEUE_DELIVERY: &str = "INSERT INTO webhook_deliveries (user_id, event_id, status, \
         next_attempt_at, created_at, updated_at) \
         SELECT w.user_id, $1, 'pending', $2, $2, $2 FROM webhooks w \
         WHERE w.user_id = $3 AND w.events ? $4";
    const UPSERT_WEBHOOK: &str = concat!(
        "INSERT INTO webhooks (user_id, url, secret, events, created_at, updated_at) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $6) \
         ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
         events = excluded.events, updated_at = excluded.updated_at RETURNING ",
        webhook_columns!()
    );

    async fn lock_tenant(tx: &mut PgConnection, user: UserId) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(EVENT_LOCKS)
            .bind(tenant_lock(user))
            .execute(tx)
            .await?;
        Ok(())
    }
}

impl_event_store!(PgStore, Postgres, pg_tx);
