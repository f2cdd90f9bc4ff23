//! Contacts, written once but for the fetch's upsert (`<store>::prepare_contacts` outside the
//! transaction, `upsert_contacts` inside: chunked `VALUES` on SQLite, one `UNNEST` on
//! PostgreSQL) and the two statements of a patch (`CONTACT_FOR_CHANGE`, which PostgreSQL
//! locks, and `SET_CONTACT_DATA`, which casts to JSONB there).

use sqlx::QueryBuilder;

use crate::domain::Pair;
use crate::store::sql::{Dialect, StoreRow};
use crate::store::{AutoRule, ContactFilter, ContactRecord, GroupRecord, SearchType, StoreResult};

/// The columns of a contact as [`contact_from_row`] reads them, custom fields included; a
/// macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! contact_columns {
    () => {
        "c.id, c.phone_number, c.name, c.push_name, c.is_business, c.last_message_at, \
         CAST(c.tags AS TEXT) AS tags, CAST(c.custom_fields AS TEXT) AS custom_fields, \
         c.opted_out, c.opted_out_at"
    };
}
pub(crate) use contact_columns;

/// One active contact of a pair: `$1` contact, `$2` user, `$3` place.
macro_rules! one_contact {
    () => {
        concat!(
            "SELECT ",
            $crate::store::sql::contacts::contact_columns!(),
            " FROM contacts c WHERE c.id = $1 AND c.user_id = $2 AND c.place_id = $3 \
             AND c.is_active"
        )
    };
}
pub(crate) use one_contact;

/// The columns of a page of contacts: custom fields are left out (they are read one contact
/// or one export at a time).
pub(crate) const PAGE_COLUMNS: &str = "SELECT c.id, c.phone_number, c.name, c.push_name, \
     c.is_business, c.last_message_at, CAST(c.tags AS TEXT) AS tags, c.opted_out, \
     c.opted_out_at";

pub(crate) fn contact_from_row(row: &impl StoreRow) -> StoreResult<ContactRecord> {
    let tags: String = row.col("tags")?;
    Ok(ContactRecord {
        id: row.col("id")?,
        phone_number: row.col("phone_number")?,
        name: row.col("name")?,
        push_name: row.col("push_name")?,
        is_business: row.col("is_business")?,
        last_message_at: row.col("last_message_at")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        custom_fields: row
            .col::<String>("custom_fields")
            .ok()
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
        opted_out: row.col("opted_out")?,
        opted_out_at: row.col("opted_out_at")?,
    })
}

/// The FROM and WHERE of every contact listing: one pair's active contacts, narrowed by a
/// group's rule or members and by the filter. Every value is bound, and text is matched by
/// position ([`Dialect::POSITION`]), so user input is never SQL nor a pattern.
pub(crate) fn push_contact_filter<D: Dialect>(
    q: &mut QueryBuilder<D>,
    pair: Pair,
    group: Option<&GroupRecord>,
    filter: &ContactFilter,
    recent_since_s: i64,
) {
    q.push(" FROM contacts c WHERE c.user_id = ");
    D::bind(q, pair.user_id.get());
    q.push(" AND c.place_id = ");
    D::bind(q, pair.place_id.get());
    q.push(" AND c.is_active");
    match group.map(|g| (g.id, g.auto_rule)) {
        None | Some((_, Some(AutoRule::All))) => {}
        Some((_, Some(AutoRule::Recent90Days))) => {
            q.push(" AND c.last_message_at >= ");
            D::bind(q, recent_since_s);
        }
        Some((id, None)) => {
            q.push(" AND c.id IN (SELECT contact_id FROM contact_group_members WHERE group_id = ");
            D::bind(q, id);
            q.push(")");
        }
    }
    if let Some(text) = filter.search.as_deref() {
        let lowered = text.to_lowercase();
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let position = D::POSITION;
        let by_name = |q: &mut QueryBuilder<D>| {
            q.push(format!("({position}(COALESCE(c.name_lc, ''), "));
            D::bind(q, lowered.clone());
            q.push(format!(
                ") > 0 OR {position}(COALESCE(c.push_name_lc, ''), "
            ));
            D::bind(q, lowered.clone());
            q.push(") > 0)");
        };
        let by_phone = |q: &mut QueryBuilder<D>| {
            if digits.is_empty() {
                q.push("FALSE");
            } else {
                q.push(format!("{position}(c.phone_number, "));
                D::bind(q, digits.clone());
                q.push(") > 0");
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
        q.push(" AND c.is_business = ");
        D::bind(q, b);
    }
    if let Some(o) = filter.opted_out {
        q.push(" AND c.opted_out = ");
        D::bind(q, o);
    }
    if let Some(since) = filter.active_since {
        q.push(" AND c.last_message_at >= ");
        D::bind(q, since);
    }
    if let Some(since) = filter.inactive_since {
        q.push(" AND (c.last_message_at IS NULL OR c.last_message_at < ");
        D::bind(q, since);
        q.push(")");
    }
    for tag in &filter.tags {
        D::push_and_json_holds(q, "c.tags", tag.clone());
    }
}

/// `impl ContactStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`. The store brings `prepare_contacts(batch)` (run once, outside
/// the transaction) and `upsert_contacts(tx, pair, &prepared, now_ms)` (the merge rules: a
/// name is never replaced by none, activity only moves forward, tags and custom fields are
/// not touched), and the statements `CONTACT_FOR_CHANGE` (`one_contact!()`, held until the
/// commit) and `SET_CONTACT_DATA` (`$1` tags, `$2` custom fields as JSON text, `$3` now,
/// `$4` contact).
macro_rules! impl_contact_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use sqlx::QueryBuilder;

            use $crate::domain::Pair;
            use $crate::store::error::StoreContext;
            use $crate::store::sql::contacts::{
                PAGE_COLUMNS, contact_columns, contact_from_row, one_contact, push_contact_filter,
            };
            use $crate::store::sql::{Dialect, StoreRow};
            use $crate::store::{
                BatchProgress, ContactFilter, ContactPatch, ContactQuery, ContactRecord,
                ContactStats, GroupRecord, ImportContact, StoreResult,
            };

            #[async_trait::async_trait]
            impl $crate::store::traits::ContactStore for $store {
                async fn import_contacts(
                    &self,
                    pair: Pair,
                    batch: &[ImportContact],
                    progress: BatchProgress<'_>,
                    now_ms: i64,
                ) -> StoreResult<()> {
                    let prepared = Self::prepare_contacts(batch);
                    $write!(self, "save a batch of contacts", |tx| {
                        Self::upsert_contacts(tx, pair, &prepared, now_ms)
                            .await
                            .context("upsert contacts")?;
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
                        "SELECT (SELECT COUNT(*) FROM contacts WHERE user_id = $1 \
                           AND place_id = $2 AND is_active) AS contacts, \
                         (SELECT COUNT(*) FROM contact_groups WHERE user_id = $1 \
                           AND place_id = $2) AS groups",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_one(&self.pool)
                    .await?;
                    Ok((row.col("contacts")?, row.col("groups")?))
                }

                async fn contact_stats(
                    &self,
                    pair: Pair,
                    recent_since_s: i64,
                ) -> StoreResult<ContactStats> {
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS total, \
                           COUNT(*) FILTER (WHERE name IS NOT NULL) AS named, \
                           COUNT(*) FILTER (WHERE push_name IS NOT NULL) AS pushed, \
                           COUNT(*) FILTER (WHERE name IS NULL AND push_name IS NULL) \
                             AS nameless, \
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
                        total_contacts: row.col("total")?,
                        with_saved_name: row.col("named")?,
                        with_push_name: row.col("pushed")?,
                        without_any_name: row.col("nameless")?,
                        business: row.col("business")?,
                        active_last_90_days: row.col("recent")?,
                        with_known_activity: row.col("known")?,
                    })
                }

                async fn search_contacts(
                    &self,
                    pair: Pair,
                    group: Option<&GroupRecord>,
                    query: &ContactQuery,
                    recent_since_s: i64,
                ) -> StoreResult<(Vec<ContactRecord>, i64)> {
                    let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*)");
                    push_contact_filter(&mut count, pair, group, &query.filter, recent_since_s);
                    let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

                    let mut page = QueryBuilder::<$db>::new(PAGE_COLUMNS);
                    push_contact_filter(&mut page, pair, group, &query.filter, recent_since_s);
                    page.push(" ORDER BY c.last_message_at IS NULL, c.last_message_at DESC, c.id");
                    <$db as Dialect>::push_page(&mut page, query.page, query.limit);
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
                    let mut q = QueryBuilder::<$db>::new(concat!("SELECT ", contact_columns!()));
                    push_contact_filter(&mut q, pair, group, filter, recent_since_s);
                    q.push(" AND c.id > ")
                        .push_bind(after_id)
                        .push(" ORDER BY c.id");
                    <$db as Dialect>::push_limit(&mut q, limit);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter().map(contact_from_row).collect()
                }

                async fn contact(
                    &self,
                    pair: Pair,
                    contact_id: i64,
                ) -> StoreResult<Option<ContactRecord>> {
                    let row = sqlx::query(one_contact!())
                        .bind(contact_id)
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(contact_from_row).transpose()
                }

                async fn opted_out_numbers(
                    &self,
                    pair: Pair,
                    numbers: &[String],
                ) -> StoreResult<Vec<String>> {
                    let mut out = Vec::new();
                    // Far below either database's limit on binds.
                    for chunk in numbers.chunks(500) {
                        // Inactive contacts too: asking to stop outlives a phone book's change.
                        let mut q: QueryBuilder<$db> = QueryBuilder::new(
                            "SELECT DISTINCT phone_number FROM contacts WHERE opted_out AND user_id = ",
                        );
                        q.push_bind(pair.user_id.get());
                        q.push(" AND place_id = ");
                        q.push_bind(pair.place_id.get());
                        q.push(" AND phone_number IN (");
                        let mut list = q.separated(", ");
                        for n in chunk {
                            list.push_bind(n.as_str());
                        }
                        q.push(")");
                        for row in q.build().fetch_all(&self.pool).await? {
                            out.push(row.col("phone_number")?);
                        }
                    }
                    Ok(out)
                }

                async fn update_contact(
                    &self,
                    pair: Pair,
                    contact_id: i64,
                    patch: &ContactPatch,
                    now_ms: i64,
                ) -> StoreResult<Option<ContactRecord>> {
                    $write!(self, "update a contact", |tx| {
                        // Held until the commit: two patches of one contact merge, neither is
                        // lost.
                        let Some(row) = sqlx::query(Self::CONTACT_FOR_CHANGE)
                            .bind(contact_id)
                            .bind(pair.user_id.get())
                            .bind(pair.place_id.get())
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
                        if let Some(opted_out) = patch.opted_out
                            && opted_out != contact.opted_out
                        {
                            contact.opted_out = opted_out;
                            contact.opted_out_at = opted_out.then_some(now_ms);
                        }
                        sqlx::query(Self::SET_CONTACT_DATA)
                            .bind(serde_json::to_string(&contact.tags).context("encode tags")?)
                            .bind(
                                serde_json::to_string(&contact.custom_fields)
                                    .context("encode custom fields")?,
                            )
                            .bind(now_ms)
                            .bind(contact_id)
                            .bind(contact.opted_out)
                            .bind(contact.opted_out_at)
                            .execute(&mut *tx)
                            .await?;
                        Ok(Some(contact))
                    })
                }
            }
        };
    };
}
pub(crate) use impl_contact_store;
