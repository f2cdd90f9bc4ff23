//! The outbox on PostgreSQL: messages in order per pair, claimed one at a time.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgStore, page_limit, page_offset, pg_tx};
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::error::StoreContext;
use crate::store::messaging::*;
use crate::store::prelude::*;
use crate::store::*;

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! message_columns {
    () => {
        "id, user_id, place_id, job_id, contact_id, recipient, recipient_name, kind, body, \
         image_url, template_id, status, wa_message_id, error, attempts, min_gap_ms, \
         created_at, updated_at, sent_at, failed_at"
    };
}

pub(super) fn pair_of(row: &PgRow) -> StoreResult<Pair> {
    Ok(Pair::new(
        UserId::new_unchecked(row.try_get("user_id")?),
        PlaceId::new_unchecked(row.try_get("place_id")?),
    ))
}

fn message_from_row(row: &PgRow) -> StoreResult<MessageRecord> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(MessageRecord {
        id: row.try_get("id")?,
        pair: pair_of(row)?,
        job_id: row.try_get("job_id")?,
        contact_id: row.try_get("contact_id")?,
        recipient: row.try_get("recipient")?,
        recipient_name: row.try_get("recipient_name")?,
        kind: MessageKind::parse(&kind)
            .with_context(|| format!("unknown message kind {kind:?} in database"))?,
        body: row.try_get("body")?,
        image_url: row.try_get("image_url")?,
        template_id: row.try_get("template_id")?,
        status: MessageStatus::parse(&status)
            .with_context(|| format!("unknown message status {status:?} in database"))?,
        wa_message_id: row.try_get("wa_message_id")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        min_gap_ms: row.try_get("min_gap_ms")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        sent_at: row.try_get("sent_at")?,
        failed_at: row.try_get("failed_at")?,
    })
}

/// `LIMIT`/`OFFSET` of page `page` (from 1).
pub(super) fn push_page(q: &mut QueryBuilder<Postgres>, page: i64, limit: i64) {
    q.push(" LIMIT ")
        .push_bind(page_limit(limit))
        .push(" OFFSET ")
        .push_bind(page_offset(page, limit));
}

fn push_message_filter(q: &mut QueryBuilder<Postgres>, pair: Pair, f: &MessageFilter) {
    q.push(" FROM messages WHERE user_id = ")
        .push_bind(pair.user_id.get())
        .push(" AND place_id = ")
        .push_bind(pair.place_id.get());
    if let Some(s) = f.status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(k) = f.kind {
        q.push(" AND kind = ").push_bind(k.as_str());
    }
    if let Some(t) = f.from_ms {
        q.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = f.to_ms {
        q.push(" AND created_at < ").push_bind(t);
    }
    if let Some(r) = f.recipient.as_deref() {
        q.push(" AND strpos(recipient, ")
            .push_bind(r.to_owned())
            .push(") > 0");
    }
    if let Some(j) = f.job_id {
        q.push(" AND job_id = ").push_bind(j);
    }
    if let Some(g) = f.group_id {
        // The job is the pair's too: a group id of another tenant matches nothing.
        q.push(" AND job_id IN (SELECT id FROM message_jobs WHERE group_id = ")
            .push_bind(g)
            .push(" AND user_id = ")
            .push_bind(pair.user_id.get())
            .push(" AND place_id = ")
            .push_bind(pair.place_id.get())
            .push(")");
    }
}

/// The messages of one `enqueue` as columns for `UNNEST`.
#[derive(Default)]
struct Columns {
    contact_id: Vec<Option<i64>>,
    recipient: Vec<String>,
    recipient_name: Vec<Option<String>>,
    kind: Vec<&'static str>,
    body: Vec<Option<String>>,
    image_url: Vec<Option<String>>,
    template_id: Vec<Option<String>>,
    wa_message_id: Vec<String>,
    min_gap_ms: Vec<i64>,
}

impl Columns {
    fn of(messages: &[NewMessage]) -> Self {
        let mut c = Self::default();
        for m in messages {
            c.contact_id.push(m.contact_id);
            c.recipient.push(m.recipient.clone());
            c.recipient_name.push(m.recipient_name.clone());
            c.kind.push(m.kind.as_str());
            c.body.push(m.body.clone());
            c.image_url.push(m.image_url.clone());
            c.template_id.push(m.template_id.clone());
            c.wa_message_id.push(m.wa_message_id.clone());
            c.min_gap_ms.push(m.min_gap_ms);
        }
        c
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn enqueue(
        &self,
        pair: Pair,
        job: Option<(JobKind, Option<i64>)>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)> {
        let cols = Columns::of(messages);
        pg_tx!(self, "queue messages", |tx| {
            let job_id = match job {
                None => None,
                Some((kind, group_id)) => Some(
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO message_jobs (user_id, place_id, kind, group_id, total, \
                         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(kind.as_str())
                    .bind(group_id)
                    .bind(messages.len() as i64)
                    .bind(now_ms)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
            };
            if messages.is_empty() {
                return Ok((job_id, Vec::new()));
            }
            // In the order given, so the ids (the queue's order) follow it.
            let rows = sqlx::query(concat!(
                "INSERT INTO messages (user_id, place_id, job_id, contact_id, recipient, \
                 recipient_name, kind, body, image_url, template_id, status, wa_message_id, \
                 min_gap_ms, created_at, updated_at) \
                 SELECT $1, $2, $3, u.contact_id, u.recipient, u.recipient_name, u.kind, u.body, \
                   u.image_url, u.template_id, 'queued', u.wa_message_id, u.min_gap_ms, $4, $4 \
                 FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], \
                   $10::text[], $11::text[], $12::text[], $13::bigint[]) WITH ORDINALITY \
                   AS u(contact_id, recipient, recipient_name, kind, body, image_url, \
                   template_id, wa_message_id, min_gap_ms, n) \
                 ORDER BY u.n RETURNING ",
                message_columns!()
            ))
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(job_id)
            .bind(now_ms)
            .bind(&cols.contact_id)
            .bind(&cols.recipient)
            .bind(&cols.recipient_name)
            .bind(&cols.kind)
            .bind(&cols.body)
            .bind(&cols.image_url)
            .bind(&cols.template_id)
            .bind(&cols.wa_message_id)
            .bind(&cols.min_gap_ms)
            .fetch_all(&mut *tx)
            .await?;
            let mut queued = rows
                .iter()
                .map(message_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            // RETURNING promises no order.
            queued.sort_unstable_by_key(|m| m.id);
            Ok((job_id, queued))
        })
    }

    async fn pairs_with_pending(&self) -> StoreResult<Vec<Pair>> {
        let rows = sqlx::query(
            "SELECT DISTINCT user_id, place_id FROM messages WHERE status IN ('queued', 'sending')",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pair_of).collect()
    }

    async fn next_pending(&self, pair: Pair) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE user_id = $1 AND place_id = $2 \
             AND status IN ('queued', 'sending') ORDER BY id LIMIT 1"
        ))
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn mark_sending(&self, id: i64, now_ms: i64) -> StoreResult<()> {
        pg_tx!(self, "mark a message as sending", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'sending', attempts = attempts + 1, \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn mark_sent(&self, id: i64, wa_message_id: &str, now_ms: i64) -> StoreResult<()> {
        pg_tx!(self, "mark a message as sent", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'sent', wa_message_id = $1, error = NULL, \
                 sent_at = $2, updated_at = $2 WHERE id = $3",
            )
            .bind(wa_message_id)
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn mark_failed(&self, id: i64, error: &str, now_ms: i64) -> StoreResult<()> {
        pg_tx!(self, "mark a message as failed", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'failed', error = $1, failed_at = $2, \
                 updated_at = $2 WHERE id = $3",
            )
            .bind(super::pg_text(Some(error)))
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn requeue(&self, id: i64, now_ms: i64) -> StoreResult<()> {
        pg_tx!(self, "put a message back in the queue", |conn| {
            sqlx::query("UPDATE messages SET status = 'queued', updated_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(id)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn sent_since(&self, pair: Pair, since_ms: i64) -> StoreResult<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(sent_at) AS oldest FROM messages \
             WHERE user_id = $1 AND place_id = $2 AND sent_at >= $3",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    async fn last_sent_at(&self, pair: Pair) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(sent_at) FROM messages WHERE user_id = $1 AND place_id = $2 \
             AND sent_at IS NOT NULL",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn message(&self, pair: Pair, id: i64) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND user_id = $2 AND place_id = $3"
        ))
        .bind(id)
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn list_messages(
        &self,
        pair: Pair,
        filter: &MessageFilter,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)> {
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*)");
        push_message_filter(&mut count, pair, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = QueryBuilder::<Postgres>::new(concat!("SELECT ", message_columns!()));
        push_message_filter(&mut q, pair, filter);
        q.push(" ORDER BY id DESC");
        push_page(&mut q, page, limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        let list = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((list, total))
    }

    async fn message_counts(
        &self,
        pair: Pair,
        filter: &MessageFilter,
    ) -> StoreResult<MessageCounts> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT \
             COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
             COUNT(*) FILTER (WHERE status = 'sending') AS sending, \
             COUNT(*) FILTER (WHERE status = 'sent') AS sent, \
             COUNT(*) FILTER (WHERE status = 'failed') AS failed, \
             COUNT(*) FILTER (WHERE kind = 'text') AS text, \
             COUNT(*) FILTER (WHERE kind = 'image') AS image",
        );
        push_message_filter(&mut q, pair, filter);
        let row = q.build().fetch_one(&self.pool).await?;
        Ok(MessageCounts {
            queued: row.try_get("queued")?,
            sending: row.try_get("sending")?,
            sent: row.try_get("sent")?,
            failed: row.try_get("failed")?,
            text: row.try_get("text")?,
            image: row.try_get("image")?,
        })
    }

    async fn retry_message(&self, pair: Pair, id: i64, now_ms: i64) -> StoreResult<RetryOutcome> {
        pg_tx!(self, "retry a message", |tx| {
            // Only a failed message goes back, and only once however many retries race: the
            // UPDATE's own condition decides, on the row as it is when locked.
            let row = sqlx::query(concat!(
                "UPDATE messages SET status = 'queued', error = NULL, failed_at = NULL, \
                 updated_at = $1 WHERE id = $2 AND user_id = $3 AND place_id = $4 \
                 AND status = 'failed' RETURNING ",
                message_columns!()
            ))
            .bind(now_ms)
            .bind(id)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                return Ok(RetryOutcome::Queued(Box::new(message_from_row(&row)?)));
            }
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM messages WHERE id = $1 AND user_id = $2 AND place_id = $3",
            )
            .bind(id)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(status) = status else {
                return Ok(RetryOutcome::NotFound);
            };
            let status = MessageStatus::parse(&status)
                .with_context(|| format!("unknown message status {status:?} in database"))?;
            Ok(RetryOutcome::NotFailed(status))
        })
    }

    async fn job(&self, pair: Pair, id: i64) -> StoreResult<Option<JobRecord>> {
        let Some(row) = sqlx::query(
            "SELECT id, user_id, place_id, kind, group_id, total, created_at FROM message_jobs \
             WHERE id = $1 AND user_id = $2 AND place_id = $3",
        )
        .bind(id)
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let kind: String = row.try_get("kind")?;
        let counts = self
            .message_counts(
                pair,
                &MessageFilter {
                    job_id: Some(id),
                    ..MessageFilter::default()
                },
            )
            .await?;
        Ok(Some(JobRecord {
            id,
            pair,
            kind: if kind == "group" {
                JobKind::Group
            } else {
                JobKind::Bulk
            },
            group_id: row.try_get("group_id")?,
            total: row.try_get("total")?,
            created_at: row.try_get("created_at")?,
            counts,
        }))
    }
}
