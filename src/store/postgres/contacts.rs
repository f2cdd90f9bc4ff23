//! Contacts on PostgreSQL: a fetch batch is one upsert over arrays, filters and keyset pages
//! as on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgStore, page_limit, pg_text, pg_tx};
use crate::store::sql::page_offset;
use crate::domain::Pair;
use crate::store::error::StoreContext;
use crate::store::prelude::*;
use crate::store::*;

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! contact_select {
    () => {
        "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, c.last_message_at, \
         c.tags::text AS tags, c.custom_fields::text AS custom_fields FROM contacts c \
         WHERE c.id = $1 AND c.user_id = $2 AND c.place_id = $3 AND c.is_active"
    };
}
/// One active contact of a pair, with everything the API shows of it; `for_update` locks
/// its row until the transaction ends.
fn one_contact(
    pair: Pair,
    contact_id: i64,
    for_update: bool,
) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let sql = if for_update {
        concat!(contact_select!(), " FOR UPDATE")
    } else {
        contact_select!()
    };
    sqlx::query(sql)
        .bind(contact_id)
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
}

/// The FROM and WHERE of every contact listing: one pair's active contacts, narrowed by a
/// group's rule or members and by the filter. Every value is bound, and text is matched
/// with strpos(), so user input is never SQL nor a pattern.
fn push_contact_filter(
    q: &mut QueryBuilder<Postgres>,
    pair: Pair,
    group: Option<&GroupRecord>,
    filter: &ContactFilter,
    recent_since_s: i64,
) {
    q.push(" FROM contacts c WHERE c.user_id = ")
        .push_bind(pair.user_id.get())
        .push(" AND c.place_id = ")
        .push_bind(pair.place_id.get())
        .push(" AND c.is_active");
    match group.map(|g| (g.id, g.auto_rule)) {
        None | Some((_, Some(AutoRule::All))) => {}
        Some((_, Some(AutoRule::Recent90Days))) => {
            q.push(" AND c.last_message_at >= ")
                .push_bind(recent_since_s);
        }
        Some((id, None)) => {
            q.push(" AND c.id IN (SELECT contact_id FROM contact_group_members WHERE group_id = ")
                .push_bind(id)
                .push(")");
        }
    }
    if let Some(text) = filter.search.as_deref() {
        let lowered = text.to_lowercase();
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let by_name = |q: &mut QueryBuilder<Postgres>| {
            q.push("(strpos(COALESCE(c.name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0 OR strpos(COALESCE(c.push_name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0)");
        };
        let by_phone = |q: &mut QueryBuilder<Postgres>| {
            if digits.is_empty() {
                q.push("FALSE");
            } else {
                q.push("strpos(c.phone_number, ")
                    .push_bind(digits.clone())
                    .push(") > 0");
            }
        };
        q.push(" AND (");
        match filter.search_type {
            SearchType::Name => by_name(q),
            SearchType::Phone => by_phone(q),
            SearchType::All => {
                by_name(q);
                q.push(" OR ");
                by_phone(q);
            }
        }
        q.push(")");
    }
    if let Some(b) = filter.is_business {
        q.push(" AND c.is_business = ").push_bind(b);
    }
    if let Some(since) = filter.active_since {
        q.push(" AND c.last_message_at >= ").push_bind(since);
    }
    if let Some(since) = filter.inactive_since {
        q.push(" AND (c.last_message_at IS NULL OR c.last_message_at < ")
            .push_bind(since)
            .push(")");
    }
    for tag in &filter.tags {
        // `?` is JSONB's "has this string element" (sqlx binds with $n, so it is no
        // placeholder here).
        q.push(" AND c.tags ? ").push_bind(tag.clone());
    }
}

fn contact_from_row(row: &PgRow) -> StoreResult<ContactRecord> {
    let tags: String = row.try_get("tags")?;
    Ok(ContactRecord {
        id: row.try_get("id")?,
        phone_number: row.try_get("phone_number")?,
        name: row.try_get("name")?,
        push_name: row.try_get("push_name")?,
        is_business: row.try_get("is_business")?,
        last_message_at: row.try_get("last_message_at")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        custom_fields: row
            .try_get::<String, _>("custom_fields")
            .ok()
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
    })
}

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

#[async_trait]
impl ContactStore for PgStore {
    async fn import_contacts(
        &self,
        pair: Pair,
        batch: &[ImportContact],
        progress: BatchProgress<'_>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let cols = Columns::of(batch);
        pg_tx!(self, "save a batch of contacts", |tx| {
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
                .await
                .context("upsert contacts")?;
            }
            sqlx::query(
                "UPDATE sessions SET fetch_processed = $1, fetch_total = $2, \
                 fetch_progress = $3, updated_at = $4 WHERE session_id = $5",
            )
            .bind(progress.processed)
            .bind(progress.total)
            .bind(progress.percent)
            .bind(now_ms)
            .bind(progress.session_id.as_str())
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    async fn pair_counts(&self, pair: Pair) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM contacts WHERE user_id = $1 AND place_id = $2 \
               AND is_active) AS contacts, \
             (SELECT COUNT(*) FROM contact_groups WHERE user_id = $1 AND place_id = $2) \
               AS groups",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("contacts")?, row.try_get("groups")?))
    }

    async fn contact_stats(&self, pair: Pair, recent_since_s: i64) -> StoreResult<ContactStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
               COUNT(*) FILTER (WHERE name IS NOT NULL) AS named, \
               COUNT(*) FILTER (WHERE push_name IS NOT NULL) AS pushed, \
               COUNT(*) FILTER (WHERE name IS NULL AND push_name IS NULL) AS nameless, \
               COUNT(*) FILTER (WHERE is_business) AS business, \
               COUNT(*) FILTER (WHERE last_message_at >= $3) AS recent, \
               COUNT(*) FILTER (WHERE last_message_at IS NOT NULL) AS known \
             FROM contacts WHERE user_id = $1 AND place_id = $2 AND is_active",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .bind(recent_since_s)
        .fetch_one(&self.pool)
        .await?;
        Ok(ContactStats {
            total_contacts: row.try_get("total")?,
            with_saved_name: row.try_get("named")?,
            with_push_name: row.try_get("pushed")?,
            without_any_name: row.try_get("nameless")?,
            business: row.try_get("business")?,
            active_last_90_days: row.try_get("recent")?,
            with_known_activity: row.try_get("known")?,
        })
    }

    async fn search_contacts(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        query: &ContactQuery,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<ContactRecord>, i64)> {
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*)");
        push_contact_filter(&mut count, pair, group, &query.filter, recent_since_s);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

        let mut page = QueryBuilder::<Postgres>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags::text AS tags",
        );
        push_contact_filter(&mut page, pair, group, &query.filter, recent_since_s);
        page.push(" ORDER BY c.last_message_at IS NULL, c.last_message_at DESC, c.id LIMIT ")
            .push_bind(page_limit(query.limit))
            .push(" OFFSET ")
            .push_bind(page_offset(query.page, query.limit));
        let rows = page.build().fetch_all(&self.pool).await?;
        let contacts = rows
            .iter()
            .map(contact_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((contacts, total))
    }

    /// Keyset pages by id. Unlike SQLite, a fetch running beside an export can commit a
    /// new contact with an id below the page already read (ids are handed out before
    /// commit): such a row is missed by that export, and in the next one.
    async fn contacts_after(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        filter: &ContactFilter,
        recent_since_s: i64,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<ContactRecord>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags::text AS tags, c.custom_fields::text AS custom_fields",
        );
        push_contact_filter(&mut q, pair, group, filter, recent_since_s);
        q.push(" AND c.id > ")
            .push_bind(after_id)
            .push(" ORDER BY c.id LIMIT ")
            .push_bind(page_limit(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(contact_from_row).collect()
    }

    async fn contact(&self, pair: Pair, contact_id: i64) -> StoreResult<Option<ContactRecord>> {
        let row = one_contact(pair, contact_id, false)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn update_contact(
        &self,
        pair: Pair,
        contact_id: i64,
        patch: &ContactPatch,
        now_ms: i64,
    ) -> StoreResult<Option<ContactRecord>> {
        pg_tx!(self, "update a contact", |tx| {
            // Locked until the commit: two patches of one contact merge, neither is lost.
            let Some(row) = one_contact(pair, contact_id, true)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let mut contact = contact_from_row(&row)?;
            if let Some(tags) = &patch.tags {
                contact.tags = tags.clone();
            }
            if let Some(fields) = &patch.custom_fields {
                for (k, v) in fields {
                    if v.is_null() {
                        contact.custom_fields.remove(k);
                    } else {
                        contact.custom_fields.insert(k.clone(), v.clone());
                    }
                }
            }
            sqlx::query(
                "UPDATE contacts SET tags = $1::jsonb, custom_fields = $2::jsonb, \
                 updated_at = $3 WHERE id = $4",
            )
            .bind(serde_json::to_string(&contact.tags).context("encode tags")?)
            .bind(serde_json::to_string(&contact.custom_fields).context("encode custom fields")?)
            .bind(now_ms)
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
            Ok(Some(contact))
        })
    }
}
