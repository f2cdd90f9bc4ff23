//! The event log and the webhook queue, written once but for the per-tenant order of the
//! log (`<store>::lock_tenant`) and the two statements that read or write a webhook's events
//! as JSON (`QUEUE_DELIVERY`, `UPSERT_WEBHOOK`).

use crate::domain::{SessionId, UserId};
use crate::store::StoreResult;
use crate::store::error::StoreContext;
use crate::store::messaging::*;
use crate::store::sql::{StoreRow, pair_of};

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! delivery_select {
    () => {
        "SELECT d.id, d.user_id, d.status, d.attempts, d.next_attempt_at, d.last_status_code, \
         d.last_error, d.created_at, d.delivered_at, e.id AS event_id, e.place_id, \
         e.session_id, e.kind, e.payload, e.created_at AS event_created_at \
         FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
    };
}
pub(crate) use delivery_select;

/// The columns of a webhook as [`webhook_from_row`] reads them.
macro_rules! webhook_columns {
    () => {
        "user_id, url, secret, CAST(events AS TEXT) AS events, created_at, updated_at"
    };
}
pub(crate) use webhook_columns;

pub(crate) fn event_from_row(row: &impl StoreRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        id: row.col("event_id")?,
        pair: pair_of(row)?,
        session_id: row
            .col::<Option<String>>("session_id")?
            .map(SessionId::from_db),
        kind: row.col("kind")?,
        payload: row.col("payload")?,
        created_at: row.col("event_created_at")?,
    })
}

pub(crate) fn delivery_from_row(row: &impl StoreRow) -> StoreResult<DeliveryRecord> {
    let status: String = row.col("status")?;
    Ok(DeliveryRecord {
        id: row.col("id")?,
        user_id: UserId::new_unchecked(row.col("user_id")?),
        event: event_from_row(row)?,
        status: DeliveryStatus::parse(&status)
            .with_context(|| format!("unknown delivery status {status:?} in database"))?,
        attempts: row.col("attempts")?,
        next_attempt_at: row.col("next_attempt_at")?,
        last_status_code: row.col("last_status_code")?,
        last_error: row.col("last_error")?,
        created_at: row.col("created_at")?,
        delivered_at: row.col("delivered_at")?,
    })
}

pub(crate) fn webhook_from_row(row: &impl StoreRow) -> StoreResult<WebhookRecord> {
    let events: String = row.col("events")?;
    Ok(WebhookRecord {
        user_id: UserId::new_unchecked(row.col("user_id")?),
        url: row.col("url")?,
        secret: row.col("secret")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

/// `impl EventStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`. The store brings `lock_tenant(tx, user)`, taken before an
/// event is inserted and held to its commit, and the statements `QUEUE_DELIVERY` (`$1`
/// event id, `$2` now, `$3` user, `$4` kind: a pending delivery when the user's webhook
/// subscribes to the kind) and `UPSERT_WEBHOOK` (`$1`..`$6` as the columns, returning
/// `webhook_columns!()`).
macro_rules! impl_event_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use sqlx::QueryBuilder;

            use $crate::domain::{Pair, PlaceId, SessionId, UserId};
            use $crate::store::messaging::*;
            use $crate::store::sql::Dialect;
            use $crate::store::sql::events::{
                delivery_from_row, delivery_select, event_from_row, webhook_columns,
                webhook_from_row,
            };
            use $crate::store::StoreResult;

            #[async_trait::async_trait]
            impl $crate::store::traits::EventStore for $store {
                async fn record_event(
                    &self,
                    pair: Pair,
                    session_id: Option<&SessionId>,
                    kind: &str,
                    payload: &(dyn Fn(i64) -> String + Send + Sync),
                    now_ms: i64,
                ) -> StoreResult<(EventRecord, bool)> {
                    $write!(self, "record an event", |tx| {
                        Self::lock_tenant(&mut *tx, pair.user_id).await?;
                        // The id is known only once inserted, and the payload carries it:
                        // insert, then fill.
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO events (user_id, place_id, session_id, kind, payload, \
                             created_at) VALUES ($1, $2, $3, $4, '', $5) RETURNING id",
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
                        let queued = sqlx::query(Self::QUEUE_DELIVERY)
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
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT id AS event_id, user_id, place_id, session_id, kind, payload, \
                         created_at AS event_created_at FROM events WHERE user_id = ",
                    );
                    q.push_bind(user.get());
                    if let Some(p) = place {
                        q.push(" AND place_id = ").push_bind(p.get());
                    }
                    q.push(" AND id > ").push_bind(after_id).push(" ORDER BY id");
                    <$db as Dialect>::push_limit(&mut q, limit);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter().map(event_from_row).collect()
                }

                async fn last_event_id(&self) -> StoreResult<i64> {
                    let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(id.unwrap_or(0))
                }

                async fn events_since(
                    &self,
                    after_id: i64,
                    limit: i64,
                ) -> StoreResult<Vec<EventRecord>> {
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT id AS event_id, user_id, place_id, session_id, kind, payload, \
                         created_at AS event_created_at FROM events WHERE id > ",
                    );
                    q.push_bind(after_id).push(" ORDER BY id");
                    <$db as Dialect>::push_limit(&mut q, limit);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter().map(event_from_row).collect()
                }

                async fn set_webhook(&self, hook: &WebhookRecord) -> StoreResult<WebhookRecord> {
                    let events = serde_json::to_string(&hook.events)?;
                    $write!(self, "set a webhook", |conn| {
                        let row = sqlx::query(Self::UPSERT_WEBHOOK)
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
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        webhook_columns!(),
                        " FROM webhooks WHERE user_id = $1"
                    ))
                    .bind(user.get())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(webhook_from_row).transpose()
                }

                async fn delete_webhook(&self, user: UserId, now_ms: i64) -> StoreResult<bool> {
                    $write!(self, "delete a webhook", |tx| {
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

                async fn pending_delivery_count(&self) -> StoreResult<i64> {
                    // The partial index `webhook_deliveries_pending` holds exactly these rows.
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(n)
                }

                async fn claim_delivery(
                    &self,
                    delivery_id: i64,
                    now_ms: i64,
                    until_ms: i64,
                ) -> StoreResult<bool> {
                    $write!(self, "claim a webhook delivery", |conn| {
                        let done = sqlx::query(
                            "UPDATE webhook_deliveries SET next_attempt_at = $1 \
                             WHERE id = $2 AND status = 'pending' AND next_attempt_at <= $3",
                        )
                        .bind(until_ms)
                        .bind(delivery_id)
                        .bind(now_ms)
                        .execute(&mut *conn)
                        .await?;
                        Ok(done.rows_affected() == 1)
                    })
                }

                async fn release_delivery(
                    &self,
                    delivery_id: i64,
                    claimed_until_ms: i64,
                    due_ms: i64,
                ) -> StoreResult<()> {
                    $write!(self, "release a webhook delivery", |conn| {
                        sqlx::query(
                            "UPDATE webhook_deliveries SET next_attempt_at = $1 \
                             WHERE id = $2 AND status = 'pending' AND next_attempt_at = $3",
                        )
                        .bind(due_ms)
                        .bind(delivery_id)
                        .bind(claimed_until_ms)
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn record_attempt(
                    &self,
                    delivery_id: i64,
                    result: &AttemptResult,
                    now_ms: i64,
                ) -> StoreResult<()> {
                    $write!(self, "record a webhook attempt", |conn| {
                        match result {
                            AttemptResult::Delivered { status_code } => {
                                sqlx::query(
                                    "UPDATE webhook_deliveries SET status = 'delivered', \
                                     attempts = attempts + 1, last_status_code = $1, \
                                     last_error = NULL, delivered_at = $2, updated_at = $2 \
                                     WHERE id = $3",
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
                                    "UPDATE webhook_deliveries SET status = $1, \
                                     attempts = attempts + 1, last_status_code = $2, \
                                     last_error = $3, next_attempt_at = $4, updated_at = $5 \
                                     WHERE id = $6",
                                )
                                .bind(if retry_at.is_some() {
                                    "pending"
                                } else {
                                    "failed"
                                })
                                .bind(status_code)
                                .bind(<$db as Dialect>::text(Some(error)))
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
                    let mut count = QueryBuilder::<$db>::new(
                        "SELECT COUNT(*) FROM webhook_deliveries d WHERE d.user_id = ",
                    );
                    count.push_bind(user.get());
                    let mut q = QueryBuilder::<$db>::new(delivery_select!());
                    q.push(" WHERE d.user_id = ").push_bind(user.get());
                    if let Some(s) = status {
                        count.push(" AND d.status = ").push_bind(s.as_str());
                        q.push(" AND d.status = ").push_bind(s.as_str());
                    }
                    let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
                    q.push(" ORDER BY d.id DESC");
                    <$db as Dialect>::push_page(&mut q, page, limit);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    let list = rows
                        .iter()
                        .map(delivery_from_row)
                        .collect::<StoreResult<_>>()?;
                    Ok((list, total))
                }
            }
        };
    };
}
pub(crate) use impl_event_store;
