//! Contact groups, written once but for the bulk writes (`<store>::insert_default_groups`,
//! `insert_members`, `unknown_contacts`: chunked `VALUES`/`IN` lists on SQLite, arrays on
//! PostgreSQL) and the read of a group about to change (`GROUP_KIND_FOR_CHANGE`, which
//! PostgreSQL locks).

use crate::domain::text::name_key;
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::sql::StoreRow;
use crate::store::{AutoRule, GroupRecord, StoreResult};

/// Every automatic group, in the order they are made and listed.
pub(crate) const RULES: [AutoRule; 2] = [AutoRule::All, AutoRule::Recent90Days];

/// `SELECT` of groups with their `contact_count` evaluated now (automatic groups are rules,
/// not lists, so the 90-day group stays right as time passes); `$1` is the 90-day cut-off
/// in unix seconds. A macro, not a const: statements must be `&'static str`, and `concat!`
/// takes literals.
macro_rules! group_select {
    () => {
        "SELECT g.id, g.user_id, g.place_id, g.name, g.description, g.auto_rule, \
         g.created_at, g.updated_at, CASE g.auto_rule \
           WHEN 'all' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
                 AND c.place_id = g.place_id AND c.is_active) \
           WHEN 'recent_90d' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
                 AND c.place_id = g.place_id AND c.is_active AND c.last_message_at >= $1) \
           ELSE (SELECT COUNT(*) FROM contact_group_members m \
                 JOIN contacts c ON c.id = m.contact_id \
                 WHERE m.group_id = g.id AND c.is_active) END AS contact_count \
         FROM contact_groups g"
    };
}
pub(crate) use group_select;

pub(crate) fn group_from_row(row: &impl StoreRow) -> StoreResult<GroupRecord> {
    let rule: Option<String> = row.col("auto_rule")?;
    Ok(GroupRecord {
        id: row.col("id")?,
        pair: Pair::new(
            UserId::new_unchecked(row.col("user_id")?),
            PlaceId::new_unchecked(row.col("place_id")?),
        ),
        name: row.col("name")?,
        description: row.col("description")?,
        auto_rule: rule.as_deref().and_then(AutoRule::parse),
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        contact_count: row.col("contact_count")?,
    })
}

/// Takes the automatic groups' keys back from manual groups of the pair that hold them.
/// Only possible for a pair whose automatic groups were never created while it had a manual
/// lookalike (a database from before keys): the automatic groups must exist, and the manual
/// one keeps its name, grandfathered. `$1` user, `$2` place, `$3`, `$4` the keys
/// ([`default_keys`]).
pub(crate) const YIELD_DEFAULT_NAMES: &str = "UPDATE contact_groups SET name_key = NULL \
     WHERE user_id = $1 AND place_id = $2 AND auto_rule IS NULL AND name_key IN ($3, $4)";

pub(crate) fn default_keys() -> [String; 2] {
    RULES.map(|r| name_key(r.group_name()))
}

pub(crate) fn warn_yielded(pair: Pair, yielded: u64) {
    if yielded > 0 {
        tracing::warn!(
            "⚠️ {yielded} manual groups of {pair} looked like an automatic group; they keep \
             their names, and the automatic groups are created beside them"
        );
    }
}

/// What [`GROUP_KIND_FOR_CHANGE`](self) found: `None` when the pair has this group and it
/// is manual; otherwise why it cannot change.
pub(crate) fn refusal(kind: Option<&str>) -> Option<crate::store::GroupChange> {
    use crate::store::GroupChange;
    match kind {
        None => Some(GroupChange::NotFound),
        Some("manual") => None,
        Some(_) => Some(GroupChange::Automatic),
    }
}

/// `impl GroupStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`. The store brings `insert_default_groups(conn, pair, now_ms)`
/// (the missing ones of [`RULES`], `ON CONFLICT DO NOTHING`: how many were made),
/// `unknown_contacts(tx, pair, ids)` (those, in the order given, that are not active
/// contacts of the pair), `insert_members(tx, group_id, ids, now_ms)`, and the statement
/// `GROUP_KIND_FOR_CHANGE` (`$1` group, `$2` user, `$3` place: its `kind`).
macro_rules! impl_group_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use $crate::domain::Pair;
            use $crate::domain::text::name_key;
            use $crate::store::sql::groups::{
                RULES, YIELD_DEFAULT_NAMES, default_keys, group_from_row, group_select, refusal,
                warn_yielded,
            };
            use $crate::store::sql::{Dialect, page_offset};
            use $crate::store::{DefaultGroupsOutcome, GroupChange, GroupRecord, StoreResult};

            impl $store {
                /// Reads (and on PostgreSQL locks) the group about to change: why it cannot,
                /// or `None` when it is the pair's and manual.
                async fn change_refused(
                    tx: &mut <$db as sqlx::Database>::Connection,
                    pair: Pair,
                    group_id: i64,
                ) -> StoreResult<Option<GroupChange>> {
                    let kind: Option<String> = sqlx::query_scalar(Self::GROUP_KIND_FOR_CHANGE)
                        .bind(group_id)
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_optional(&mut *tx)
                        .await?;
                    Ok(refusal(kind.as_deref()))
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::traits::GroupStore for $store {
                async fn ensure_default_groups(
                    &self,
                    pair: Pair,
                    now_ms: i64,
                ) -> StoreResult<DefaultGroupsOutcome> {
                    $write!(self, "create the default groups", |conn| {
                        let existing: Vec<String> = sqlx::query_scalar(
                            "SELECT name FROM contact_groups WHERE user_id = $1 \
                             AND place_id = $2 AND auto_rule IS NOT NULL ORDER BY id",
                        )
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_all(&mut *conn)
                        .await?;
                        // ON CONFLICT DO NOTHING: concurrent ready events, reconnects and
                        // other server instances all race here, and the unique constraints
                        // decide.
                        let mut created = Self::insert_default_groups(conn, pair, now_ms).await?;
                        if existing.len() as u64 + created < RULES.len() as u64 {
                            let [all, recent] = default_keys();
                            let yielded = sqlx::query(YIELD_DEFAULT_NAMES)
                                .bind(pair.user_id.get())
                                .bind(pair.place_id.get())
                                .bind(all)
                                .bind(recent)
                                .execute(&mut *conn)
                                .await?
                                .rows_affected();
                            warn_yielded(pair, yielded);
                            if yielded > 0 {
                                created += Self::insert_default_groups(conn, pair, now_ms).await?;
                            }
                        }
                        Ok(DefaultGroupsOutcome { existing, created })
                    })
                }

                async fn list_groups(
                    &self,
                    pair: Pair,
                    page: i64,
                    limit: i64,
                    recent_since_s: i64,
                ) -> StoreResult<(Vec<GroupRecord>, i64)> {
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM contact_groups WHERE user_id = $1 AND place_id = $2",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_one(&self.pool)
                    .await?;
                    let rows = sqlx::query(concat!(
                        group_select!(),
                        // Automatic groups first, "all" before "90 days", then manual ones
                        // by age.
                        " WHERE g.user_id = $2 AND g.place_id = $3 \
                         ORDER BY g.auto_rule IS NULL, g.auto_rule = 'recent_90d', g.id \
                         LIMIT $4 OFFSET $5"
                    ))
                    .bind(recent_since_s)
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(<$db as Dialect>::limit(limit))
                    .bind(page_offset(page, limit))
                    .fetch_all(&self.pool)
                    .await?;
                    let groups = rows
                        .iter()
                        .map(group_from_row)
                        .collect::<StoreResult<_>>()?;
                    Ok((groups, total))
                }

                async fn group(
                    &self,
                    pair: Pair,
                    group_id: i64,
                    recent_since_s: i64,
                ) -> StoreResult<Option<GroupRecord>> {
                    let row = sqlx::query(concat!(
                        group_select!(),
                        " WHERE g.id = $2 AND g.user_id = $3 AND g.place_id = $4"
                    ))
                    .bind(recent_since_s)
                    .bind(group_id)
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(group_from_row).transpose()
                }

                async fn create_manual_group(
                    &self,
                    pair: Pair,
                    name: &str,
                    description: Option<&str>,
                    contact_ids: &[i64],
                    now_ms: i64,
                ) -> StoreResult<GroupChange> {
                    $write!(self, "create a group", |tx| {
                        let unknown = Self::unknown_contacts(tx, pair, contact_ids).await?;
                        if !unknown.is_empty() {
                            return Ok(GroupChange::UnknownContacts(unknown));
                        }
                        // The database keeps names unique per pair, whatever races: the name
                        // itself, and its key, so a lookalike of another group (an automatic
                        // one included) is refused.
                        let id: Option<i64> = sqlx::query_scalar(
                            "INSERT INTO contact_groups (user_id, place_id, name, name_key, \
                             description, kind, auto_rule, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, 'manual', NULL, $6, $6) \
                             ON CONFLICT DO NOTHING RETURNING id",
                        )
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .bind(name)
                        .bind(name_key(name))
                        .bind(description)
                        .bind(now_ms)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let Some(id) = id else {
                            return Ok(GroupChange::NameTaken);
                        };
                        Self::insert_members(tx, id, contact_ids, now_ms).await?;
                        Ok(GroupChange::Done(id))
                    })
                }

                async fn replace_group_members(
                    &self,
                    pair: Pair,
                    group_id: i64,
                    contact_ids: &[i64],
                    now_ms: i64,
                ) -> StoreResult<GroupChange> {
                    $write!(self, "replace a group's members", |tx| {
                        if let Some(refused) = Self::change_refused(tx, pair, group_id).await? {
                            return Ok(refused);
                        }
                        let unknown = Self::unknown_contacts(tx, pair, contact_ids).await?;
                        if !unknown.is_empty() {
                            return Ok(GroupChange::UnknownContacts(unknown));
                        }
                        sqlx::query("DELETE FROM contact_group_members WHERE group_id = $1")
                            .bind(group_id)
                            .execute(&mut *tx)
                            .await?;
                        Self::insert_members(tx, group_id, contact_ids, now_ms).await?;
                        sqlx::query("UPDATE contact_groups SET updated_at = $1 WHERE id = $2")
                            .bind(now_ms)
                            .bind(group_id)
                            .execute(&mut *tx)
                            .await?;
                        Ok(GroupChange::Done(group_id))
                    })
                }

                async fn delete_manual_group(
                    &self,
                    pair: Pair,
                    group_id: i64,
                ) -> StoreResult<GroupChange> {
                    $write!(self, "delete a group", |tx| {
                        if let Some(refused) = Self::change_refused(tx, pair, group_id).await? {
                            return Ok(refused);
                        }
                        // Memberships go with it (ON DELETE CASCADE).
                        sqlx::query("DELETE FROM contact_groups WHERE id = $1")
                            .bind(group_id)
                            .execute(&mut *tx)
                            .await?;
                        Ok(GroupChange::Done(group_id))
                    })
                }
            }
        };
    };
}
pub(crate) use impl_group_store;
