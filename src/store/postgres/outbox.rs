//! The outbox on PostgreSQL: everything but the bulk insert is in `store/sql/outbox.rs`.

use sqlx::{PgConnection, Postgres};

use super::{PgStore, pg_tx};
use crate::domain::Pair;
use crate::store::StoreResult;
use crate::store::messaging::*;
use crate::store::sql::outbox::{impl_outbox_store, message_columns, message_from_row};

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
    media_url: Vec<Option<String>>,
    media_id: Vec<Option<String>>,
    media_mime: Vec<Option<String>>,
    media_size: Vec<Option<i64>>,
    media_file_name: Vec<Option<String>>,
    voice_note: Vec<bool>,
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
            c.media_url.push(m.media.url.clone());
            c.media_id.push(m.media.media_id.clone());
            c.media_mime.push(m.media.mime.clone());
            c.media_size.push(m.media.size);
            c.media_file_name.push(m.media.file_name.clone());
            c.voice_note.push(m.media.voice_note);
        }
        c
    }
}

impl PgStore {
    /// One statement over arrays (`UNNEST`), whatever the number of messages; the rows as
    /// queued.
    async fn insert_messages(
        tx: &mut PgConnection,
        pair: Pair,
        job_id: Option<i64>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let cols = Columns::of(messages);
        // In the order given, so the ids (the queue's order) follow it.
        let rows = sqlx::query(concat!(
            "INSERT INTO messages (user_id, place_id, job_id, contact_id, recipient, \
             recipient_name, kind, body, image_url, template_id, status, wa_message_id, \
             min_gap_ms, created_at, updated_at, media_url, media_id, media_mime, media_size, \
             media_file_name, voice_note) \
             SELECT $1, $2, $3, u.contact_id, u.recipient, u.recipient_name, u.kind, u.body, \
               u.image_url, u.template_id, 'queued', u.wa_message_id, u.min_gap_ms, $4, $4, \
               u.media_url, u.media_id, u.media_mime, u.media_size, u.media_file_name, \
               u.voice_note \
             FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], \
               $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[], \
               $16::text[], $17::bigint[], $18::text[], $19::bool[]) WITH ORDINALITY \
               AS u(contact_id, recipient, recipient_name, kind, body, image_url, \
               template_id, wa_message_id, min_gap_ms, media_url, media_id, media_mime, \
               media_size, media_file_name, voice_note, n) \
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
        .bind(&cols.media_url)
        .bind(&cols.media_id)
        .bind(&cols.media_mime)
        .bind(&cols.media_size)
        .bind(&cols.media_file_name)
        .bind(&cols.voice_note)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING promises no order.
        queued.sort_unstable_by_key(|m| m.id);
        Ok(queued)
    }
}

impl_outbox_store!(PgStore, Postgres, pg_tx);
