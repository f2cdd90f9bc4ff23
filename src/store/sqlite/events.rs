//! The event log and the webhook delivery queue on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::{Pair, PlaceId, SessionId, UserId};
use crate::store::error::StoreContext;
use crate::store::messaging::*;
use crate::store::prelude::*;
use crate::store::*;

use crate::store::sql::{Dialect, pair_of};

fn event_from_row(row: &SqliteRow) -> StoreResult<EventRecord> {
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

fn delivery_from_row(row: &SqliteRow) -> StoreResult<DeliveryRecord> {
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

const DELIVERY_SELECT: &str = "SELECT d.id, d.user_id, d.status, d.attempts, \
    d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at, \
    e.id AS event_id, e.place_id, e.session_id, e.kind, e.payload, \
    e.created_at AS event_created_at \
    FROM webhook_deliveries d JOIN events e ON e.id = d.event_id";

fn webhook_from_row(row: &SqliteRow) -> StoreResult<WebhookRecord> {
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
impl EventStore for SqliteStore {
    async fn record_event(
        &self,
        pair: Pair,
        session_id: Option<&SessionId>,
        kind: &str,
        payload: &(dyn Fn(i64) -> String + Send + Sync),
        now_ms: i64,
    ) -> StoreResult<(EventRecord, bool)> {
        write_tx!(self, "record an event", |tx| {
            // The id is known only once inserted, and the payload carries it: insert, then fill.
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO events (user_id, place_id, session_id, kind, payload, created_at) \
                 VALUES (?, ?, ?, ?, '', ?) RETURNING id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(session_id.map(SessionId::as_str))
            .bind(kind)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            let body = payload(id);
            sqlx::query("UPDATE events SET payload = ? WHERE id = ?")
                .bind(&body)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let queued = sqlx::query(
                "INSERT INTO webhook_deliveries (user_id, event_id, status, next_attempt_at, \
                 created_at, updated_at) \
                 SELECT w.user_id, ?, 'pending', ?, ?, ? FROM webhooks w \
                 WHERE w.user_id = ? \
                 AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = ?)",
            )
            .bind(id)
            .bind(now_ms)
            .bind(now_ms)
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
        let mut q = QueryBuilder::<Sqlite>::new(
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
            .push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn set_webhook(&self, hook: &WebhookRecord) -> StoreResult<WebhookRecord> {
        write_tx!(self, "set a webhook", |conn| {
            let row = sqlx::query(
                "INSERT INTO webhooks (user_id, url, secret, events, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
                 events = excluded.events, updated_at = excluded.updated_at \
                 RETURNING user_id, url, secret, events, created_at, updated_at",
            )
            .bind(hook.user_id.get())
            .bind(&hook.url)
            .bind(&hook.secret)
            .bind(serde_json::to_string(&hook.events)?)
            .bind(hook.created_at)
            .bind(hook.updated_at)
            .fetch_one(conn)
            .await?;
            webhook_from_row(&row)
        })
    }

    async fn webhook(&self, user: UserId) -> StoreResult<Option<WebhookRecord>> {
        let row = sqlx::query(
            "SELECT user_id, url, secret, events, created_at, updated_at FROM webhooks \
             WHERE user_id = ?",
        )
        .bind(user.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    async fn delete_webhook(&self, user: UserId, now_ms: i64) -> StoreResult<bool> {
        write_tx!(self, "delete a webhook", |tx| {
            let gone = sqlx::query("DELETE FROM webhooks WHERE user_id = ?")
                .bind(user.get())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = ?, updated_at = ? \
                 WHERE user_id = ? AND status = 'pending'",
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DELIVERY_SELECT} WHERE d.id IN (SELECT MIN(id) FROM webhook_deliveries \
             WHERE status = 'pending' GROUP BY user_id) ORDER BY d.id"
        )))
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
        write_tx!(self, "record a webhook attempt", |conn| {
            match result {
                AttemptResult::Delivered { status_code } => {
                    sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                     last_status_code = ?, last_error = NULL, delivered_at = ?, updated_at = ? \
                     WHERE id = ?",
                )
                .bind(status_code)
                .bind(now_ms)
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
                        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, \
                     last_status_code = ?, last_error = ?, next_attempt_at = ?, updated_at = ? \
                     WHERE id = ?",
                    )
                    .bind(if retry_at.is_some() {
                        "pending"
                    } else {
                        "failed"
                    })
                    .bind(status_code)
                    .bind(error)
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
        let mut count = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) FROM webhook_deliveries d WHERE d.user_id = ",
        );
        count.push_bind(user.get());
        let mut q = QueryBuilder::<Sqlite>::new(DELIVERY_SELECT);
        q.push(" WHERE d.user_id = ").push_bind(user.get());
        if let Some(s) = status {
            count.push(" AND d.status = ").push_bind(s.as_str());
            q.push(" AND d.status = ").push_bind(s.as_str());
        }
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        q.push(" ORDER BY d.id DESC");
        <Sqlite as Dialect>::push_page(&mut q, page, limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        let list = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((list, total))
    }
}
