//! Contacts on PostgreSQL: a fetch batch is one upsert over arrays; the rest is
//! `store/sql/contacts.rs`.

use std::collections::HashMap;

use sqlx::{PgConnection, Postgres};

use super::{PgStore, pg_text, pg_tx};
use crate::domain::Pair;
use crate::store::sql::contacts::{impl_contact_store, one_contact};
use crate::store::{ImportContact, StoreResult};

/// A batch as columns for `UNNEST`, one row per number. PostgreSQL refuses to update one
/// row twice in a statement, where SQLite applies a batch's rows one after the other; so a
/// number met again is merged into its first row by the upsert's own rules (the later
/// name unless it is none, activity the later of both, the later jid and business flag),
/// which leaves the row exactly as SQLite's sequence would.
#[derive(Default)]
struct Columns {
    phone: Vec<String>,
    jid: Vec<String>,
    name: Vec<Option<String>>,
    push_name: Vec<Option<String>>,
    name_lc: Vec<Option<String>>,
    push_name_lc: Vec<Option<String>>,
    is_business: Vec<bool>,
    last_message_at: Vec<Option<i64>>,
}

impl Columns {
    fn of(batch: &[ImportContact]) -> Self {
        let mut cols = Self::default();
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for c in batch {
            let name = pg_text(c.name.as_deref());
            let push_name = pg_text(c.push_name.as_deref());
            let jid = pg_text(Some(&c.jid)).unwrap_or_default();
            if let Some(&i) = seen.get(c.phone.as_str()) {
                cols.jid[i] = jid;
                if name.is_some() {
                    cols.name_lc[i] = name.as_deref().map(str::to_lowercase);
                    cols.name[i] = name;
                }
                if push_name.is_some() {
                    cols.push_name_lc[i] = push_name.as_deref().map(str::to_lowercase);
                    cols.push_name[i] = push_name;
                }
                cols.is_business[i] = c.is_business;
                cols.last_message_at[i] = cols.last_message_at[i].max(c.last_message_at);
                continue;
            }
            seen.insert(c.phone.as_str(), cols.phone.len());
            cols.phone.push(c.phone.as_str().to_owned());
            cols.jid.push(jid);
            cols.name_lc.push(name.as_deref().map(str::to_lowercase));
            cols.name.push(name);
            cols.push_name_lc
                .push(push_name.as_deref().map(str::to_lowercase));
            cols.push_name.push(push_name);
            cols.is_business.push(c.is_business);
            cols.last_message_at.push(c.last_message_at);
        }
        cols
    }
}

impl PgStore {
    /// Locked until the commit: two patches of one contact take turns, as SQLite's single
    /// writer makes them.
    const CONTACT_FOR_CHANGE: &str = concat!(one_contact!(), " FOR UPDATE");
    /// Tags and custom fields are JSONB: the JSON text is cast.
    const SET_CONTACT_DATA: &str = "UPDATE contacts SET tags = $1::jsonb, \
         custom_fields = $2::jsonb, updated_at = $3, opted_out = $5, opted_out_at = $6 \
         WHERE id = $4";

    fn prepare_contacts(batch: &[ImportContact]) -> Columns {
        Columns::of(batch)
    }

    async fn upsert_contacts(
        tx: &mut PgConnection,
        pair: Pair,
        cols: &Columns,
        now_ms: i64,
    ) -> StoreResult<()> {
        if !cols.phone.is_empty() {
            // Never lose what we knew: a name is not replaced by an empty one, activity
            // only moves forward (GREATEST skips NULL), tags and custom fields are not
            // touched. Rows go in in the batch's order, so ids follow it as on SQLite.
            sqlx::query(
                "INSERT INTO contacts (user_id, place_id, phone_number, jid, name, \
                 push_name, name_lc, push_name_lc, is_business, last_message_at, \
                 created_at, updated_at, last_synced_at) \
                 SELECT $1, $2, u.phone, u.jid, u.name, u.push_name, u.name_lc, \
                   u.push_name_lc, u.is_business, u.last_message_at, $3, $3, $3 \
                 FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                   $9::text[], $10::bool[], $11::bigint[]) WITH ORDINALITY \
                   AS u(phone, jid, name, push_name, name_lc, push_name_lc, is_business, \
                   last_message_at, n) \
                 ORDER BY u.n \
                 ON CONFLICT (user_id, place_id, phone_number) DO UPDATE SET \
                 jid = excluded.jid, \
                 name = COALESCE(excluded.name, contacts.name), \
                 push_name = COALESCE(excluded.push_name, contacts.push_name), \
                 name_lc = COALESCE(excluded.name_lc, contacts.name_lc), \
                 push_name_lc = COALESCE(excluded.push_name_lc, contacts.push_name_lc), \
                 is_business = excluded.is_business, \
                 last_message_at = GREATEST(contacts.last_message_at, \
                   excluded.last_message_at), \
                 is_active = TRUE, \
                 updated_at = excluded.updated_at, \
                 last_synced_at = excluded.last_synced_at",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(now_ms)
            .bind(&cols.phone)
            .bind(&cols.jid)
            .bind(&cols.name)
            .bind(&cols.push_name)
            .bind(&cols.name_lc)
            .bind(&cols.push_name_lc)
            .bind(&cols.is_business)
            .bind(&cols.last_message_at)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

impl_contact_store!(PgStore, Postgres, pg_tx);
