//! The outbox on SQLite: messages in order per pair, claimed one at a time.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::error::StoreContext;
use crate::store::messaging::*;
use crate::store::prelude::*;
use crate::store::*;

/// SQLite allows 32,766 bound parameters per statement; 12 per message row.
const MESSAGES_PER_STATEMENT: usize = 2_000;

const MESSAGE_COLUMNS: &str = "id, user_id, place_id, job_id, contact_id, recipient, \
    recipient_name, kind, body, image_url, template_id, status, wa_message_id, error, attempts, \
    min_gap_ms, created_at, updated_at, sent_at, failed_at";

pub(super) fn pair_of(row: &SqliteRow) -> StoreResult<Pair> {
    Ok(Pair::new(
        UserId::new_unchecked(row.try_get("user_id")?),
        PlaceId::new_unchecked(row.try_get("place_id")?),
    ))
}

fn message_from_row(row: &SqliteRow) -> StoreResult<MessageRecord> {
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
pub(super) fn push_page(q: &mut QueryBuilder<Sqlite>, page: i64, limit: i64) {
    q.push(" LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind((page - 1).saturating_mul(limit));
}

fn push_message_filter(q: &mut QueryBuilder<Sqlite>, pair: Pair, f: &MessageFilter) {
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
        q.push(" AND instr(recipient, ")
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

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue(
        &self,
        pair: Pair,
        job: Option<(JobKind, Option<i64>)>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)> {
        write_tx!(self, "queue messages", |tx| {
            let job_id = match job {
                None => None,
                Some((kind, group_id)) => Some(
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO message_jobs (user_id, place_id, kind, group_id, total, \
                     created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
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
            let mut queued = Vec::with_capacity(messages.len());
            for chunk in messages.chunks(MESSAGES_PER_STATEMENT) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO messages (user_id, place_id, job_id, contact_id, recipient, \
                 recipient_name, kind, body, image_url, template_id, status, wa_message_id, \
                 min_gap_ms, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, m| {
                    b.push_bind(pair.user_id.get())
                        .push_bind(pair.place_id.get())
                        .push_bind(job_id)
                        .push_bind(m.contact_id)
                        .push_bind(m.recipient.clone())
                        .push_bind(m.recipient_name.clone())
                        .push_bind(m.kind.as_str())
                        .push_bind(m.body.clone())
                        .push_bind(m.image_url.clone())
                        .push_bind(m.template_id.clone())
                        .push("'queued'")
                        .push_bind(m.wa_message_id.clone())
                        .push_bind(m.min_gap_ms)
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                q.push(format!(" RETURNING {MESSAGE_COLUMNS}"));
                let rows = q.build().fetch_all(&mut *tx).await?;
                let mut got = rows
                    .iter()
                    .map(message_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                // RETURNING gives rows in insertion order in practice, but not by promise.
                got.sort_unstable_by_key(|m| m.id);
                queued.extend(got);
            }
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = ? AND place_id = ? \
             AND status IN ('queued', 'sending') ORDER BY id LIMIT 1"
        )))
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn mark_sending(&self, id: i64, now_ms: i64) -> StoreResult<()> {
        write_tx!(self, "mark a message as sending", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = ? \
                 WHERE id = ?",
            )
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn mark_sent(&self, id: i64, wa_message_id: &str, now_ms: i64) -> StoreResult<()> {
        write_tx!(self, "mark a message as sent", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'sent', wa_message_id = ?, error = NULL, \
                 sent_at = ?, updated_at = ? WHERE id = ?",
            )
            .bind(wa_message_id)
            .bind(now_ms)
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn mark_failed(&self, id: i64, error: &str, now_ms: i64) -> StoreResult<()> {
        write_tx!(self, "mark a message as failed", |conn| {
            sqlx::query(
                "UPDATE messages SET status = 'failed', error = ?, failed_at = ?, updated_at = ? \
                 WHERE id = ?",
            )
            .bind(error)
            .bind(now_ms)
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    async fn requeue(&self, id: i64, now_ms: i64) -> StoreResult<()> {
        write_tx!(self, "put a message back in the queue", |conn| {
            sqlx::query("UPDATE messages SET status = 'queued', updated_at = ? WHERE id = ?")
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
             WHERE user_id = ? AND place_id = ? AND sent_at >= ?",
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
            "SELECT MAX(sent_at) FROM messages WHERE user_id = ? AND place_id = ? \
             AND sent_at IS NOT NULL",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn message(&self, pair: Pair, id: i64) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND user_id = ? AND place_id = ?"
        )))
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
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        push_message_filter(&mut count, pair, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {MESSAGE_COLUMNS}"));
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
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT \
             COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'sending'), 0) AS sending, \
             COALESCE(SUM(status = 'sent'), 0) AS sent, \
             COALESCE(SUM(status = 'failed'), 0) AS failed, \
             COALESCE(SUM(kind = 'text'), 0) AS text, \
             COALESCE(SUM(kind = 'image'), 0) AS image",
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
        let queued = write_tx!(self, "retry a message", |tx| {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM messages WHERE id = ? AND user_id = ? AND place_id = ?",
            )
            .bind(id)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(status) = status else {
                return Ok(Some(RetryOutcome::NotFound));
            };
            let status = MessageStatus::parse(&status)
                .with_context(|| format!("unknown message status {status:?} in database"))?;
            if status != MessageStatus::Failed {
                return Ok(Some(RetryOutcome::NotFailed(status)));
            }
            sqlx::query(
                "UPDATE messages SET status = 'queued', error = NULL, failed_at = NULL, \
                 updated_at = ? WHERE id = ?",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Ok(None)
        })?;
        if let Some(refused) = queued {
            return Ok(refused);
        }
        match self.message(pair, id).await? {
            Some(m) => Ok(RetryOutcome::Queued(Box::new(m))),
            None => Ok(RetryOutcome::NotFound),
        }
    }

    async fn job(&self, pair: Pair, id: i64) -> StoreResult<Option<JobRecord>> {
        let Some(row) = sqlx::query(
            "SELECT id, user_id, place_id, kind, group_id, total, created_at FROM message_jobs \
             WHERE id = ? AND user_id = ? AND place_id = ?",
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
