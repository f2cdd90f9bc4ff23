//! Contacts on SQLite: multi-row upserts inside transactions, filters and keyset pages.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::Pair;
use crate::store::error::StoreContext;
use crate::store::prelude::*;
use crate::store::*;

/// One active contact of a pair, with everything the API shows of it.
fn one_contact(
    pair: Pair,
    contact_id: i64,
) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
        "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, c.last_message_at, \
         c.tags, c.custom_fields FROM contacts c \
         WHERE c.id = ? AND c.user_id = ? AND c.place_id = ? AND c.is_active = 1",
    )
    .bind(contact_id)
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
}
/// SQLite allows 32,766 bound parameters per statement; 13 per contact row.
const UPSERT_ROWS_PER_STATEMENT: usize = 2_000;

/// The FROM and WHERE of every contact listing: one pair's active contacts, narrowed by a
/// group's rule or members and by the filter. Every value is bound, and text is matched with
/// instr(), so user input is never SQL nor a pattern.
fn push_contact_filter(
    q: &mut QueryBuilder<Sqlite>,
    pair: Pair,
    group: Option<&GroupRecord>,
    filter: &ContactFilter,
    recent_since_s: i64,
) {
    q.push(" FROM contacts c WHERE c.user_id = ")
        .push_bind(pair.user_id.get())
        .push(" AND c.place_id = ")
        .push_bind(pair.place_id.get())
        .push(" AND c.is_active = 1");
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
        let by_name = |q: &mut QueryBuilder<Sqlite>| {
            q.push("(instr(COALESCE(c.name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0 OR instr(COALESCE(c.push_name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0)");
        };
        let by_phone = |q: &mut QueryBuilder<Sqlite>| {
            if digits.is_empty() {
                q.push("0");
            } else {
                q.push("instr(c.phone_number, ")
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
        q.push(" AND EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE t.value = ")
            .push_bind(tag.clone())
            .push(")");
    }
}

fn contact_from_row(row: &SqliteRow) -> StoreResult<ContactRecord> {
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

#[async_trait]
impl ContactStore for SqliteStore {
    async fn import_contacts(
        &self,
        pair: Pair,
        batch: &[ImportContact],
        progress: BatchProgress<'_>,
        now_ms: i64,
    ) -> StoreResult<()> {
        write_tx!(self, "save a batch of contacts", |tx| {
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
                q.build()
                    .execute(&mut *tx)
                    .await
                    .context("upsert contacts")?;
            }
            sqlx::query(
                "UPDATE sessions SET fetch_processed = ?, fetch_total = ?, fetch_progress = ?, \
                 updated_at = ? WHERE session_id = ?",
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
            "SELECT (SELECT COUNT(*) FROM contacts WHERE user_id = ?1 AND place_id = ?2 \
               AND is_active = 1) AS contacts, \
             (SELECT COUNT(*) FROM contact_groups WHERE user_id = ?1 AND place_id = ?2) AS groups",
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
               COALESCE(SUM(name IS NOT NULL), 0) AS named, \
               COALESCE(SUM(push_name IS NOT NULL), 0) AS pushed, \
               COALESCE(SUM(name IS NULL AND push_name IS NULL), 0) AS nameless, \
               COALESCE(SUM(is_business), 0) AS business, \
               COALESCE(SUM(last_message_at >= ?3), 0) AS recent, \
               COALESCE(SUM(last_message_at IS NOT NULL), 0) AS known \
             FROM contacts WHERE user_id = ?1 AND place_id = ?2 AND is_active = 1",
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
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        push_contact_filter(&mut count, pair, group, &query.filter, recent_since_s);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

        let mut page = QueryBuilder::<Sqlite>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags",
        );
        push_contact_filter(&mut page, pair, group, &query.filter, recent_since_s);
        page.push(" ORDER BY c.last_message_at IS NULL, c.last_message_at DESC, c.id LIMIT ")
            .push_bind(query.limit)
            .push(" OFFSET ")
            .push_bind((query.page - 1).saturating_mul(query.limit));
        let rows = page.build().fetch_all(&self.pool).await?;
        let contacts = rows
            .iter()
            .map(contact_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((contacts, total))
    }

    async fn contacts_after(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        filter: &ContactFilter,
        recent_since_s: i64,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<ContactRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags, c.custom_fields",
        );
        push_contact_filter(&mut q, pair, group, filter, recent_since_s);
        q.push(" AND c.id > ")
            .push_bind(after_id)
            .push(" ORDER BY c.id LIMIT ")
            .push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(contact_from_row).collect()
    }

    async fn contact(&self, pair: Pair, contact_id: i64) -> StoreResult<Option<ContactRecord>> {
        let row = one_contact(pair, contact_id)
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
        write_tx!(self, "update a contact", |tx| {
            let Some(row) = one_contact(pair, contact_id)
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
                "UPDATE contacts SET tags = ?, custom_fields = ?, updated_at = ? WHERE id = ?",
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
