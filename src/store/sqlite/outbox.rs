//! The outbox on SQLite: everything but the bulk insert is in `store/sql/outbox.rs`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::Pair;
use crate::store::StoreResult;
use crate::store::messaging::*;
use crate::store::sql::outbox::{impl_outbox_store, message_columns, message_from_row};

/// SQLite allows 32,766 bound parameters per statement; 12 per message row.
const MESSAGES_PER_STATEMENT: usize = 1_000;

impl SqliteStore {
    /// Multi-row `VALUES`, in chunks under SQLite's limit of parameters; the rows as queued.
    async fn insert_messages(
        tx: &mut SqliteConnection,
        pair: Pair,
        job_id: Option<i64>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        let mut queued = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(MESSAGES_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (user_id, place_id, job_id, contact_id, recipient, \
                 recipient_name, kind, body, image_url, template_id, status, wa_message_id, \
                 min_gap_ms, created_at, updated_at, media_url, media_id, media_mime, media_size, \
                 media_file_name, voice_note) ",
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
                    .push_bind(now_ms)
                    .push_bind(m.media.url.clone())
                    .push_bind(m.media.media_id.clone())
                    .push_bind(m.media.mime.clone())
                    .push_bind(m.media.size)
                    .push_bind(m.media.file_name.clone())
                    .push_bind(m.media.voice_note);
            });
            q.push(concat!(" RETURNING ", message_columns!()));
            let rows = q.build().fetch_all(&mut *tx).await?;
            let mut got = rows
                .iter()
                .map(message_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            // RETURNING gives rows in insertion order in practice, but not by promise.
            got.sort_unstable_by_key(|m| m.id);
            queued.extend(got);
        }
        Ok(queued)
    }
}

impl_outbox_store!(SqliteStore, Sqlite, write_tx);
