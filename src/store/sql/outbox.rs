//! The outbox, written once: the claim and resend rules, the filters and every statement
//! but the bulk insert of `enqueue` (`<store>::insert_messages`, chunked `VALUES` on SQLite,
//! one `UNNEST` on PostgreSQL).

use sqlx::QueryBuilder;

use super::{Dialect, StoreRow, pair_of};
use crate::domain::Pair;
use crate::store::StoreResult;
use crate::store::error::StoreContext;
use crate::store::messaging::*;

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! message_columns {
    () => {
        "id, user_id, place_id, job_id, contact_id, recipient, recipient_name, kind, body, \
         image_url, template_id, status, wa_message_id, error, attempts, min_gap_ms, \
         created_at, updated_at, sent_at, failed_at, direction, media_url, media_id, media_mime, \
         media_size, media_file_name, voice_note, media_ref, delivered_at, read_at, played_at"
    };
}
pub(crate) use message_columns;

pub(crate) fn message_from_row(row: &impl StoreRow) -> StoreResult<MessageRecord> {
    let kind: String = row.col("kind")?;
    let status: String = row.col("status")?;
    let direction: String = row.col("direction")?;
    Ok(MessageRecord {
        id: row.col("id")?,
        pair: pair_of(row)?,
        job_id: row.col("job_id")?,
        contact_id: row.col("contact_id")?,
        recipient: row.col("recipient")?,
        recipient_name: row.col("recipient_name")?,
        kind: MessageKind::parse(&kind)
            .with_context(|| format!("unknown message kind {kind:?} in database"))?,
        body: row.col("body")?,
        image_url: row.col("image_url")?,
        template_id: row.col("template_id")?,
        status: parse_status(&status)?,
        wa_message_id: row.col("wa_message_id")?,
        error: row.col("error")?,
        attempts: row.col("attempts")?,
        min_gap_ms: row.col("min_gap_ms")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        sent_at: row.col("sent_at")?,
        failed_at: row.col("failed_at")?,
        direction: Direction::parse(&direction)
            .with_context(|| format!("unknown message direction {direction:?} in database"))?,
        media: MediaFields {
            url: row.col("media_url")?,
            media_id: row.col("media_id")?,
            mime: row.col("media_mime")?,
            size: row.col("media_size")?,
            file_name: row.col("media_file_name")?,
            voice_note: row.col("voice_note")?,
        },
        media_ref: row.col("media_ref")?,
        delivered_at: row.col("delivered_at")?,
        read_at: row.col("read_at")?,
        played_at: row.col("played_at")?,
    })
}

/// The rank (`MessageStatus::rank`) of a message a receipt may still move forward; 99 for
/// the rest. `queued` and `failed` are left alone: nothing of theirs reached WhatsApp as far
/// as we told anyone (a `failed` message was reported failed and counted so; a retry sends it
/// again under the same id, and the receipts of that send move it).
macro_rules! receipt_rank_sql {
    () => {
        "(CASE status WHEN 'sending' THEN 1 WHEN 'sent' THEN 3 WHEN 'delivered' THEN 4 \
         WHEN 'read' THEN 5 ELSE 99 END)"
    };
}
pub(crate) use receipt_rank_sql;

/// The statuses a receipt moves a message to.
pub(crate) fn is_receipt_status(s: MessageStatus) -> bool {
    matches!(
        s,
        MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played
    )
}

pub(crate) fn parse_status(status: &str) -> StoreResult<MessageStatus> {
    MessageStatus::parse(status)
        .with_context(|| format!("unknown message status {status:?} in database"))
}

pub(crate) fn push_message_filter<D: Dialect>(
    q: &mut QueryBuilder<D>,
    pair: Pair,
    f: &MessageFilter,
) {
    q.push(" FROM messages WHERE user_id = ");
    D::bind(q, pair.user_id.get());
    q.push(" AND place_id = ");
    D::bind(q, pair.place_id.get());
    if let Some(s) = f.status {
        q.push(" AND status = ");
        D::bind(q, s.as_str());
    }
    if let Some(k) = f.kind {
        q.push(" AND kind = ");
        D::bind(q, k.as_str());
    }
    if let Some(t) = f.from_ms {
        q.push(" AND created_at >= ");
        D::bind(q, t);
    }
    if let Some(t) = f.to_ms {
        q.push(" AND created_at < ");
        D::bind(q, t);
    }
    if let Some(r) = f.recipient.as_deref() {
        q.push(format!(" AND {}(recipient, ", D::POSITION));
        D::bind(q, r.to_owned());
        q.push(") > 0");
    }
    if let Some(d) = f.direction {
        q.push(" AND direction = ");
        D::bind(q, d.as_str());
    }
    if let Some(j) = f.job_id {
        q.push(" AND job_id = ");
        D::bind(q, j);
    }
    if let Some(g) = f.group_id {
        // The job is the pair's too: a group id of another tenant matches nothing.
        q.push(" AND job_id IN (SELECT id FROM message_jobs WHERE group_id = ");
        D::bind(q, g);
        q.push(" AND user_id = ");
        D::bind(q, pair.user_id.get());
        q.push(" AND place_id = ");
        D::bind(q, pair.place_id.get());
        q.push(")");
    }
}

/// `impl OutboxStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`. The store brings `insert_messages(tx, pair, job_id, messages,
/// now_ms)`: the queued rows, in order.
macro_rules! impl_outbox_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use sqlx::QueryBuilder;

            use $crate::domain::Pair;
            use $crate::store::messaging::*;
            use $crate::store::sql::outbox::{
                is_receipt_status, message_columns, message_from_row, parse_status,
                push_message_filter, receipt_rank_sql,
            };
            use $crate::store::sql::{Dialect, StoreRow, pair_of};
            use $crate::store::StoreResult;

            #[async_trait::async_trait]
            impl $crate::store::traits::OutboxStore for $store {
                async fn enqueue(
                    &self,
                    pair: Pair,
                    job: Option<NewJob>,
                    messages: &[NewMessage],
                    now_ms: i64,
                ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)> {
                    $write!(self, "queue messages", |tx| {
                        let job_id = match job {
                            None => None,
                            Some(job) => Some(
                                sqlx::query_scalar::<_, i64>(
                                    "INSERT INTO message_jobs (user_id, place_id, kind, \
                                     group_id, total, created_at, opted_out_skipped, \
                                     not_on_whatsapp_skipped) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                                )
                                .bind(pair.user_id.get())
                                .bind(pair.place_id.get())
                                .bind(job.kind.as_str())
                                .bind(job.group_id)
                                .bind(messages.len() as i64)
                                .bind(now_ms)
                                .bind(job.skipped.opted_out)
                                .bind(job.skipped.not_on_whatsapp)
                                .fetch_one(&mut *tx)
                                .await?,
                            ),
                        };
                        let queued =
                            Self::insert_messages(tx, pair, job_id, messages, now_ms).await?;
                        Ok((job_id, queued))
                    })
                }

                async fn pairs_with_pending(&self) -> StoreResult<Vec<Pair>> {
                    let rows = sqlx::query(
                        "SELECT DISTINCT user_id, place_id FROM messages \
                         WHERE status IN ('queued', 'sending')",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(pair_of).collect()
                }

                async fn pending_count(&self) -> StoreResult<i64> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM messages WHERE status IN ('queued', 'sending')",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(n)
                }

                async fn next_pending(&self, pair: Pair) -> StoreResult<Option<MessageRecord>> {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages WHERE user_id = $1 AND place_id = $2 \
                         AND status IN ('queued', 'sending') AND direction = 'out' \
                         ORDER BY id LIMIT 1"
                    ))
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(message_from_row).transpose()
                }

                async fn mark_sending(&self, id: i64, now_ms: i64) -> StoreResult<()> {
                    $write!(self, "mark a message as sending", |conn| {
                        sqlx::query(
                            "UPDATE messages SET status = 'sending', attempts = attempts + 1, \
                             updated_at = $1 WHERE id = $2 AND status IN ('queued', 'sending')",
                        )
                        .bind(now_ms)
                        .bind(id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn mark_sent(
                    &self,
                    id: i64,
                    wa_message_id: &str,
                    now_ms: i64,
                ) -> StoreResult<()> {
                    $write!(self, "mark a message as sent", |conn| {
                        sqlx::query(
                            "UPDATE messages SET status = CASE WHEN status IN \
                             ('delivered', 'read', 'played') THEN status ELSE 'sent' END, \
                             wa_message_id = $1, error = NULL, sent_at = $2, updated_at = $2 \
                             WHERE id = $3",
                        )
                        .bind(wa_message_id)
                        .bind(now_ms)
                        .bind(id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn set_message_media(
                    &self,
                    id: i64,
                    mime: &str,
                    size: i64,
                    file_name: Option<&str>,
                ) -> StoreResult<()> {
                    $write!(self, "record a message's file", |conn| {
                        sqlx::query(
                            "UPDATE messages SET media_mime = $1, media_size = $2, \
                             media_file_name = COALESCE($3, media_file_name) WHERE id = $4",
                        )
                        .bind(mime)
                        .bind(size)
                        .bind(file_name)
                        .bind(id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn mark_failed(&self, id: i64, error: &str, now_ms: i64) -> StoreResult<()> {
                    $write!(self, "mark a message as failed", |conn| {
                        sqlx::query(
                            "UPDATE messages SET status = 'failed', error = $1, failed_at = $2, \
                             updated_at = $2 WHERE id = $3 AND status IN ('queued', 'sending')",
                        )
                        .bind(<$db as Dialect>::text(Some(error)))
                        .bind(now_ms)
                        .bind(id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn requeue(&self, id: i64, now_ms: i64) -> StoreResult<()> {
                    $write!(self, "put a message back in the queue", |conn| {
                        sqlx::query(
                            "UPDATE messages SET status = 'queued', updated_at = $1 \
                             WHERE id = $2 AND status IN ('queued', 'sending')",
                        )
                        .bind(now_ms)
                        .bind(id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                }

                async fn sent_since(
                    &self,
                    pair: Pair,
                    since_ms: i64,
                ) -> StoreResult<(i64, Option<i64>)> {
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS n, MIN(sent_at) AS oldest FROM messages \
                         WHERE user_id = $1 AND place_id = $2 AND sent_at >= $3 \
                         AND direction = 'out'",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(since_ms)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok((row.col("n")?, row.col("oldest")?))
                }

                async fn last_sent_at(&self, pair: Pair) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar(
                        "SELECT MAX(sent_at) FROM messages WHERE user_id = $1 AND place_id = $2 \
                         AND sent_at IS NOT NULL AND direction = 'out'",
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
                    let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*)");
                    push_message_filter(&mut count, pair, filter);
                    let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
                    let mut q =
                        QueryBuilder::<$db>::new(concat!("SELECT ", message_columns!()));
                    push_message_filter(&mut q, pair, filter);
                    q.push(" ORDER BY id DESC");
                    <$db as Dialect>::push_page(&mut q, page, limit);
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
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT \
                         COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
                         COUNT(*) FILTER (WHERE status = 'sending') AS sending, \
                         COUNT(*) FILTER (WHERE direction = 'out' AND status IN \
                         ('sent', 'delivered', 'read', 'played')) AS sent, \
                         COUNT(*) FILTER (WHERE direction = 'out' AND status IN \
                         ('delivered', 'read', 'played')) AS delivered, \
                         COUNT(*) FILTER (WHERE direction = 'out' AND status IN \
                         ('read', 'played')) AS read, \
                         COUNT(*) FILTER (WHERE direction = 'out' AND status = 'played') \
                         AS played, \
                         COUNT(*) FILTER (WHERE status = 'failed') AS failed, \
                         COUNT(*) FILTER (WHERE kind = 'text') AS text, \
                         COUNT(*) FILTER (WHERE kind = 'image') AS image, \
                         COUNT(*) FILTER (WHERE kind = 'document') AS document, \
                         COUNT(*) FILTER (WHERE kind = 'video') AS video, \
                         COUNT(*) FILTER (WHERE kind = 'audio') AS audio",
                    );
                    push_message_filter(&mut q, pair, filter);
                    // The outbox's counts: what people wrote is not part of them.
                    q.push(" AND direction = 'out'");
                    let row = q.build().fetch_one(&self.pool).await?;
                    Ok(MessageCounts {
                        queued: row.col("queued")?,
                        sending: row.col("sending")?,
                        sent: row.col("sent")?,
                        delivered: row.col("delivered")?,
                        read: row.col("read")?,
                        played: row.col("played")?,
                        failed: row.col("failed")?,
                        text: row.col("text")?,
                        image: row.col("image")?,
                        document: row.col("document")?,
                        video: row.col("video")?,
                        audio: row.col("audio")?,
                    })
                }

                async fn retry_message(
                    &self,
                    pair: Pair,
                    id: i64,
                    now_ms: i64,
                ) -> StoreResult<RetryOutcome> {
                    $write!(self, "retry a message", |tx| {
                        // Only a failed message goes back, and only once however many retries
                        // race: the UPDATE's own condition decides, on the row as it is when
                        // written.
                        let row = sqlx::query(concat!(
                            "UPDATE messages SET status = 'queued', error = NULL, \
                             failed_at = NULL, updated_at = $1 \
                             WHERE id = $2 AND user_id = $3 AND place_id = $4 \
                             AND status = 'failed' AND direction = 'out' RETURNING ",
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
                            "SELECT status FROM messages \
                             WHERE id = $1 AND user_id = $2 AND place_id = $3",
                        )
                        .bind(id)
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_optional(&mut *tx)
                        .await?;
                        Ok(match status {
                            None => RetryOutcome::NotFound,
                            Some(status) => RetryOutcome::NotFailed(parse_status(&status)?),
                        })
                    })
                }

                async fn apply_receipt(
                    &self,
                    pair: Pair,
                    wa_message_ids: &[String],
                    to: MessageStatus,
                    now_ms: i64,
                ) -> StoreResult<Vec<MessageRecord>> {
                    if !is_receipt_status(to) || wa_message_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    $write!(self, "apply a receipt", |tx| {
                        let mut changed = Vec::new();
                        for wa_id in wa_message_ids {
                            // The rank test is the UPDATE's own condition: of two receipts
                            // racing, the later rank wins whatever order they are written in.
                            let rows = sqlx::query(concat!(
                                "UPDATE messages SET status = $1, \
                                 delivered_at = COALESCE(delivered_at, $2), \
                                 read_at = CASE WHEN $3 >= 5 THEN COALESCE(read_at, $2) \
                                 ELSE read_at END, \
                                 played_at = CASE WHEN $3 >= 6 THEN COALESCE(played_at, $2) \
                                 ELSE played_at END, \
                                 updated_at = $2 \
                                 WHERE user_id = $4 AND place_id = $5 AND wa_message_id = $6 \
                                 AND direction = 'out' AND ",
                                receipt_rank_sql!(),
                                " < $3 RETURNING ",
                                message_columns!()
                            ))
                            .bind(to.as_str())
                            .bind(now_ms)
                            .bind(i64::from(to.rank()))
                            .bind(pair.user_id.get())
                            .bind(pair.place_id.get())
                            .bind(wa_id.as_str())
                            .fetch_all(&mut *tx)
                            .await?;
                            for row in &rows {
                                changed.push(message_from_row(row)?);
                            }
                        }
                        Ok(changed)
                    })
                }

                async fn job(&self, pair: Pair, id: i64) -> StoreResult<Option<JobRecord>> {
                    let Some(row) = sqlx::query(
                        "SELECT id, user_id, place_id, kind, group_id, total, created_at, \
                         opted_out_skipped, not_on_whatsapp_skipped FROM message_jobs WHERE id = $1 AND user_id = $2 AND place_id = $3",
                    )
                    .bind(id)
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_optional(&self.pool)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let kind: String = row.col("kind")?;
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
                        group_id: row.col("group_id")?,
                        total: row.col("total")?,
                        created_at: row.col("created_at")?,
                        counts,
                        skipped: JobSkips {
                            opted_out: row.col("opted_out_skipped")?,
                            not_on_whatsapp: row.col("not_on_whatsapp_skipped")?,
                        },
                    }))
                }
            }
        };
    };
}
pub(crate) use impl_outbox_store;
