//! The event log and the webhook delivery queue on PostgreSQL.
//!
//! Identity values are handed out when a row is inserted, not when it commits: two writers
//! can commit ids 11 then 10, and a listener that already read 11 would never see 10. So
//! `record_event` holds a lock per tenant from before its insert to its commit; a tenant's
//! events (and their deliveries, which follow them in one transaction) then commit in the
//! order of their ids, as they do under SQLite's single writer.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::store::sql::{Dialect, pair_of};
use super::{PgStore, page_limit, pg_tx};
use crate::domain::{Pair, PlaceId, SessionId, UserId};
use crate::store::error::StoreContext;
use crate::store::messaging::*;
use crate::store::prelude::*;
use crate::store::*;

/// The first key of the per-tenant event locks (two-key advisory locks, a key space of
/// their own): "WAME".
const EVENT_LOCKS: i32 = 0x5741_4d45;

/// The second key: the user id folded to 32 bits. Two tenants that share one only take
/// turns with each other.
fn tenant_lock(user: UserId) -> i32 {
    let id = user.get();
    (id ^ (id >> 32)) as i32
}

fn event_from_row(row: &PgRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        id: row.try_get("event_id")?,
        pair: pair_of(row)?,
        session_id: row
            .try_get::<Option<String>, _>("session_id")?
            .map(SessionId::from_db),
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("event_created_at")?,
    })
}

fn delivery_from_row(row: &PgRow) -> StoreResult<DeliveryRecord> {
    let status: String = row.try_get("status")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        user_id: UserId::new_unchecked(row.try_get("user_id")?),
        event: event_from_row(row)?,
        status: DeliveryStatus::parse(&status)
            .with_context(|| format!("unknown delivery status {status:?} in database"))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! delivery_select {
    () => {
        "SELECT d.id, d.user_id, d.status, d.attempts, d.next_attempt_at, d.last_status_code, \
         d.last_error, d.created_at, d.delivered_at, e.id AS event_id, e.place_id, \
         e.session_id, e.kind, e.payload, e.created_at AS event_created_at \
         FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
    };
}

fn webhook_from_row(row: &PgRow) -> StoreResult<WebhookRecord> {
    let events: String = row.try_get("events")?;
    Ok(WebhookRecord {
        user_id: UserId::new_unchecked(row.try_get("user_id")?),
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl EventStore for PgStore {
    async fn record_event(
        &self,
        pair: Pair,
        session_id: Option<&SessionId>,
        kind: &str,
        payload: &(dyn Fn(i64) -> String + Send + Sync),
        now_ms: i64,
    ) -> StoreResult<(EventRecord, bool)> {
        pg_tx!(self, "record an event", |tx| {
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(EVENT_LOCKS)
                .bind(tenant_lock(pair.user_id))
                .execute(&mut *tx)
                .await?;
            // The id is known only once inserted, and the payload carries it: insert, then fill.
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO events (user_id, place_id, session_id, kind, payload, created_at) \
                 VALUES ($1, $2, $3, $4, '', $5) RETURNING id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(session_id.map(SessionId::as_str))
            .bind(kind)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            let body = payload(id);
            sqlx::query("UPDATE events SET payload = $1 WHERE id = $2")
                .bind(&body)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let queued = sqlx::query(
                "INSERT INTO webhook_deliveries (user_id, event_id, status, next_attempt_at, \
                 created_at, updated_at) \
                 SELECT w.user_id, $1, 'pending', $2, $2, $2 FROM webhooks w \
                 WHERE w.user_id = $3 AND w.events ? $4",
            )
            .bind(id)
            .bind(now_ms)
            .bind(pair.user_id.get())
            .bind(kind)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            Ok((
                EventRecord {
                    id,
                    pair,
                    session_id: session_id.cloned(),
                    kind: kind.to_owned(),
                    payload: body,
                    created_at: now_ms,
                },
                queued,
            ))
        })
    }

    async fn events_after(
        &self,
        user: UserId,
        place: Option<PlaceId>,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id AS event_id, user_id, place_id, session_id, kind, payload, \
             created_at AS event_created_at FROM events WHERE user_id = ",
        );
        q.push_bind(user.get());
        if let Some(p) = place {
            q.push(" AND place_id = ").push_bind(p.get());
        }
        q.push(" AND id > ")
            .push_bind(after_id)
            .push(" ORDER BY id LIMIT ")
            .push_bind(page_limit(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn set_webhook(&self, hook: &WebhookRecord) -> StoreResult<WebhookRecord> {
        let events = serde_json::to_string(&hook.events)?;
        pg_tx!(self, "set a webhook", |conn| {
            let row = sqlx::query(
                "INSERT INTO webhooks (user_id, url, secret, events, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4::jsonb, $5, $6) \
                 ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, \
                 secret = excluded.secret, events = excluded.events, \
                 updated_at = excluded.updated_at \
                 RETURNING user_id, url, secret, events::text AS events, created_at, updated_at",
            )
            .bind(hook.user_id.get())
            .bind(&hook.url)
            .bind(&hook.secret)
            .bind(&events)
            .bind(hook.created_at)
            .bind(hook.updated_at)
            .fetch_one(conn)
            .await?;
            webhook_from_row(&row)
        })
    }

    async fn webhook(&self, user: UserId) -> StoreResult<Option<WebhookRecord>> {
        let row = sqlx::query(
            "SELECT user_id, url, secret, events::text AS events, created_at, updated_at \
             FROM webhooks WHERE user_id = $1",
        )
        .bind(user.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    async fn delete_webhook(&self, user: UserId, now_ms: i64) -> StoreResult<bool> {
        pg_tx!(self, "delete a webhook", |tx| {
            let gone = sqlx::query("DELETE FROM webhooks WHERE user_id = $1")
                .bind(user.get())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = $1, \
                 updated_at = $2 WHERE user_id = $3 AND status = 'pending'",
            )
            .bind("the webhook was removed before this event could be delivered")
            .bind(now_ms)
            .bind(user.get())
            .execute(&mut *tx)
            .await?;
            Ok(gone)
        })
    }

    async fn pending_heads(&self) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(concat!(
            delivery_select!(),
            " WHERE d.id IN (SELECT MIN(id) FROM webhook_deliveries \
             WHERE status = 'pending' GROUP BY user_id) ORDER BY d.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn record_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> StoreResult<()> {
        pg_tx!(self, "record a webhook attempt", |conn| {
            match result {
                AttemptResult::Delivered { status_code } => {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET status = 'delivered', \
                         attempts = attempts + 1, last_status_code = $1, last_error = NULL, \
                         delivered_at = $2, updated_at = $2 WHERE id = $3",
                    )
                    .bind(status_code)
                    .bind(now_ms)
                    .bind(delivery_id)
                    .execute(&mut *conn)
                    .await?;
                }
                AttemptResult::Failed {
                    status_code,
                    error,
                    retry_at,
                } => {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                         last_status_code = $2, last_error = $3, next_attempt_at = $4, \
                         updated_at = $5 WHERE id = $6",
                    )
                    .bind(if retry_at.is_some() {
                        "pending"
                    } else {
                        "failed"
                    })
                    .bind(status_code)
                    .bind(super::pg_text(Some(error)))
                    .bind(retry_at.unwrap_or(now_ms))
                    .bind(now_ms)
                    .bind(delivery_id)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(())
        })
    }

    async fn deliveries(
        &self,
        user: UserId,
        status: Option<DeliveryStatus>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<DeliveryRecord>, i64)> {
        let mut count = QueryBuilder::<Postgres>::new(
            "SELECT COUNT(*) FROM webhook_deliveries d WHERE d.user_id = ",
        );
        count.push_bind(user.get());
        let mut q = QueryBuilder::<Postgres>::new(delivery_select!());
        q.push(" WHERE d.user_id = ").push_bind(user.get());
        if let Some(s) = status {
            count.push(" AND d.status = ").push_bind(s.as_str());
            q.push(" AND d.status = ").push_bind(s.as_str());
        }
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        q.push(" ORDER BY d.id DESC");
        <Postgres as Dialect>::push_page(&mut q, page, limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        let list = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((list, total))
    }
}
