//! Groups on SQLite: automatic groups are rules evaluated at read time, manual groups lists.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::text::name_key;
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::prelude::*;
use crate::store::*;

/// Group members written or checked per statement (3 parameters each).
const MEMBERS_PER_STATEMENT: usize = 1_000;

fn group_from_row(row: &SqliteRow) -> StoreResult<GroupRecord> {
    let rule: Option<String> = row.try_get("auto_rule")?;
    Ok(GroupRecord {
        id: row.try_get("id")?,
        pair: Pair::new(
            UserId::new_unchecked(row.try_get("user_id")?),
            PlaceId::new_unchecked(row.try_get("place_id")?),
        ),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        auto_rule: rule.as_deref().and_then(AutoRule::parse),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        contact_count: row.try_get("contact_count")?,
    })
}

/// `contact_count` of a group, evaluated now: automatic groups are rules, not lists, so the
/// 90-day group stays right as time passes. `?1` is the 90-day cut-off in unix seconds.
const GROUP_COLUMNS: &str = "g.id, g.user_id, g.place_id, g.name, g.description, g.auto_rule, \
    g.created_at, g.updated_at, CASE g.auto_rule \
      WHEN 'all' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
            AND c.place_id = g.place_id AND c.is_active = 1) \
      WHEN 'recent_90d' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
            AND c.place_id = g.place_id AND c.is_active = 1 AND c.last_message_at >= ?1) \
      ELSE (SELECT COUNT(*) FROM contact_group_members m JOIN contacts c ON c.id = m.contact_id \
            WHERE m.group_id = g.id AND c.is_active = 1) END AS contact_count";

#[async_trait]
impl GroupStore for SqliteStore {
    async fn ensure_default_groups(
        &self,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<DefaultGroupsOutcome> {
        let rules = [AutoRule::All, AutoRule::Recent90Days];
        write_tx!(self, "create the default groups", |conn| {
            let existing: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM contact_groups WHERE user_id = ? AND place_id = ? \
                 AND auto_rule IS NOT NULL ORDER BY id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_all(&mut *conn)
            .await?;
            // ON CONFLICT DO NOTHING: concurrent ready events, reconnects and other server
            // instances all race here, and the unique constraints decide.
            let insert = || {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, \
                     kind, auto_rule, created_at, updated_at) ",
                );
                q.push_values(rules, |mut b, rule| {
                    b.push_bind(pair.user_id.get())
                        .push_bind(pair.place_id.get())
                        .push_bind(rule.group_name())
                        .push_bind(name_key(rule.group_name()))
                        .push_bind(rule.description())
                        .push_bind("auto")
                        .push_bind(rule.as_str())
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q
            };
            let mut created = insert().build().execute(&mut *conn).await?.rows_affected();
            if existing.len() as u64 + created < rules.len() as u64
                && super::group_names::yield_default_names(&mut *conn, pair).await? > 0
            {
                created += insert().build().execute(&mut *conn).await?.rows_affected();
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
            "SELECT COUNT(*) FROM contact_groups WHERE user_id = ? AND place_id = ?",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(GROUP_COLUMNS);
        q.push(" FROM contact_groups g WHERE g.user_id = ?2 AND g.place_id = ?3");
        // Automatic groups first, "all" before "90 days", then manual ones by age.
        q.push(
            " ORDER BY g.auto_rule IS NULL, g.auto_rule = 'recent_90d', g.id \
             LIMIT ?4 OFFSET ?5",
        );
        let rows = q
            .build()
            .bind(recent_since_s)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(limit)
            .bind((page - 1).saturating_mul(limit))
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
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(GROUP_COLUMNS);
        q.push(" FROM contact_groups g WHERE g.id = ?2 AND g.user_id = ?3 AND g.place_id = ?4");
        let row = q
            .build()
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
        write_tx!(self, "create a group", |tx| {
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            // The database keeps names unique per pair, whatever races: the name itself, and
            // its key, so a lookalike of another group (an automatic one included) is refused.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, \
                 kind, auto_rule, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'manual', NULL, ?, ?) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(name)
            .bind(name_key(name))
            .bind(description)
            .bind(now_ms)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Ok(GroupChange::NameTaken);
            };
            insert_members(tx, id, contact_ids, now_ms).await?;
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
        write_tx!(self, "replace a group's members", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
                return Ok(refused);
            }
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            sqlx::query("DELETE FROM contact_group_members WHERE group_id = ?")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            insert_members(tx, group_id, contact_ids, now_ms).await?;
            sqlx::query("UPDATE contact_groups SET updated_at = ? WHERE id = ?")
                .bind(now_ms)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            Ok(GroupChange::Done(group_id))
        })
    }

    async fn delete_manual_group(&self, pair: Pair, group_id: i64) -> StoreResult<GroupChange> {
        write_tx!(self, "delete a group", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
                return Ok(refused);
            }
            // Memberships go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM contact_groups WHERE id = ?")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            Ok(GroupChange::Done(group_id))
        })
    }
}

/// `None` when the pair has this group and it is manual; otherwise why it cannot change.
async fn manual_group_of(
    tx: &mut SqliteConnection,
    pair: Pair,
    group_id: i64,
) -> StoreResult<Option<GroupChange>> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM contact_groups WHERE id = ? AND user_id = ? AND place_id = ?",
    )
    .bind(group_id)
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match kind.as_deref() {
        None => Some(GroupChange::NotFound),
        Some("manual") => None,
        Some(_) => Some(GroupChange::Automatic),
    })
}

/// The ids, in the order given, that are not active contacts of the pair.
async fn unknown_contacts(
    tx: &mut SqliteConnection,
    pair: Pair,
    ids: &[i64],
) -> StoreResult<Vec<i64>> {
    let mut found = std::collections::HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(MEMBERS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id FROM contacts WHERE user_id = ");
        q.push_bind(pair.user_id.get())
            .push(" AND place_id = ")
            .push_bind(pair.place_id.get())
            .push(" AND is_active = 1 AND id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        found.extend(rows);
    }
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !found.contains(id))
        .collect())
}

async fn insert_members(
    tx: &mut SqliteConnection,
    group_id: i64,
    ids: &[i64],
    now_ms: i64,
) -> StoreResult<()> {
    for chunk in ids.chunks(MEMBERS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO contact_group_members (group_id, contact_id, added_at) ",
        );
        q.push_values(chunk, |mut b, id| {
            b.push_bind(group_id).push_bind(*id).push_bind(now_ms);
        });
        q.push(" ON CONFLICT (group_id, contact_id) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
