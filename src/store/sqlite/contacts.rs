//! Contacts on SQLite: a fetch batch is multi-row upserts in chunks; the rest is
//! `store/sql/contacts.rs`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::Pair;
use crate::store::sql::contacts::{impl_contact_store, one_contact};
use crate::store::{ImportContact, StoreResult};

/// SQLite allows 32,766 bound parameters per statement; 13 per contact row.
const UPSERT_ROWS_PER_STATEMENT: usize = 2_000;

impl SqliteStore {
    /// No row lock in SQLite: its single writer already makes two patches take turns.
    const CONTACT_FOR_CHANGE: &str = one_contact!();
    /// Tags and custom fields are JSON in `TEXT`.
    const SET_CONTACT_DATA: &str = "UPDATE contacts SET tags = $1, custom_fields = $2, updated_at = $3, opted_out = $5, \
         opted_out_at = $6 WHERE id = $4";

    /// Nothing to prepare: the rows are bound as they come.
    fn prepare_contacts(batch: &[ImportContact]) -> &[ImportContact] {
        batch
    }

    async fn upsert_contacts(
        tx: &mut SqliteConnection,
        pair: Pair,
        batch: &[ImportContact],
        now_ms: i64,
    ) -> StoreResult<()> {
        for chunk in batch.chunks(UPSERT_ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO contacts (user_id, place_id, phone_number, jid, name, push_name, \
             name_lc, push_name_lc, is_business, last_message_at, created_at, updated_at, \
             last_synced_at) ",
            );
            q.push_values(chunk, |mut b, c| {
                b.push_bind(pair.user_id.get())
                    .push_bind(pair.place_id.get())
                    .push_bind(c.phone.as_str())
                    .push_bind(c.jid.as_str())
                    .push_bind(c.name.as_deref())
                    .push_bind(c.push_name.as_deref())
                    .push_bind(c.name.as_deref().map(str::to_lowercase))
                    .push_bind(c.push_name.as_deref().map(str::to_lowercase))
                    .push_bind(c.is_business)
                    .push_bind(c.last_message_at)
                    // Bound, not written into the SQL: a statement whose text changes with the
                    // time is parsed and planned anew for every chunk (a 2,000-row VALUES list
                    // costs more to prepare than to run) and fills the statement cache.
                    .push_bind(now_ms)
                    .push_bind(now_ms)
                    .push_bind(now_ms);
            });
            // Never lose what we knew: a name is not replaced by an empty one, activity only
            // moves forward, tags and custom fields are not touched.
            q.push(
                " ON CONFLICT (user_id, place_id, phone_number) DO UPDATE SET \
             jid = excluded.jid, \
             name = COALESCE(excluded.name, contacts.name), \
             push_name = COALESCE(excluded.push_name, contacts.push_name), \
             name_lc = COALESCE(excluded.name_lc, contacts.name_lc), \
             push_name_lc = COALESCE(excluded.push_name_lc, contacts.push_name_lc), \
             is_business = excluded.is_business, \
             last_message_at = CASE \
               WHEN excluded.last_message_at IS NULL THEN contacts.last_message_at \
               WHEN contacts.last_message_at IS NULL THEN excluded.last_message_at \
               ELSE MAX(contacts.last_message_at, excluded.last_message_at) END, \
             is_active = 1, \
             updated_at = excluded.updated_at, \
             last_synced_at = excluded.last_synced_at",
            );
            q.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}

impl_contact_store!(SqliteStore, Sqlite, write_tx);
