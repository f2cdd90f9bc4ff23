//! Groups on PostgreSQL: automatic groups are rules evaluated at read time, manual groups
//! lists. A change to a manual group locks its row first, so two changes take turns.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PgStore, page_limit, page_offset, pg_tx};
use crate::domain::text::name_key;
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::prelude::*;
use crate::store::*;

fn group_from_row(row: &PgRow) -> StoreResult<GroupRecord> {
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

/// `contact_count` of a group, evaluated now (automatic groups are rules, not lists). `$1`
/// is the 90-day cut-off in unix seconds.
macro_rules! group_columns {
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

const RULES: [AutoRule; 2] = [AutoRule::All, AutoRule::Recent90Days];

/// Inserts the automatic groups that are missing; the unique indexes decide every race.
async fn insert_default_groups(
    conn: &mut PgConnection,
    pair: Pair,
    now_ms: i64,
) -> StoreResult<u64> {
    let names: Vec<&str> = RULES.iter().map(|r| r.group_name()).collect();
    let keys: Vec<String> = names.iter().map(|n| name_key(n)).collect();
    let descriptions: Vec<&str> = RULES.iter().map(|r| r.description()).collect();
    let rules: Vec<&str> = RULES.iter().map(|r| r.as_str()).collect();
    Ok(sqlx::query(
        "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, kind, \
         auto_rule, created_at, updated_at) \
         SELECT $1, $2, u.name, u.name_key, u.description, 'auto', u.rule, $3, $3 \
         FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[]) \
           WITH ORDINALITY AS u(name, name_key, description, rule, n) \
         ORDER BY u.n ON CONFLICT DO NOTHING",
    )
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
    .bind(now_ms)
    .bind(&names)
    .bind(&keys)
    .bind(&descriptions)
    .bind(&rules)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Takes the automatic groups' keys back from manual groups of the pair that hold them (a
/// manual lookalike made before the pair's automatic groups existed); the manual group
/// keeps its name. Returns how many gave their key up.
async fn yield_default_names(conn: &mut PgConnection, pair: Pair) -> StoreResult<u64> {
    let yielded = sqlx::query(
        "UPDATE contact_groups SET name_key = NULL \
         WHERE user_id = $1 AND place_id = $2 AND auto_rule IS NULL AND name_key IN ($3, $4)",
    )
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
    .bind(name_key(AutoRule::All.group_name()))
    .bind(name_key(AutoRule::Recent90Days.group_name()))
    .execute(conn)
    .await?
    .rows_affected();
    if yielded > 0 {
        tracing::warn!(
            "⚠️ {yielded} manual groups of {pair} looked like an automatic group; they keep \
             their names, and the automatic groups are created beside them"
        );
    }
    Ok(yielded)
}

#[async_trait]
impl GroupStore for PgStore {
    async fn ensure_default_groups(
        &self,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<DefaultGroupsOutcome> {
        pg_tx!(self, "create the default groups", |conn| {
            let existing: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM contact_groups WHERE user_id = $1 AND place_id = $2 \
                 AND auto_rule IS NOT NULL ORDER BY id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_all(&mut *conn)
            .await?;
            let mut created = insert_default_groups(conn, pair, now_ms).await?;
            if existing.len() as u64 + created < RULES.len() as u64
                && yield_default_names(conn, pair).await? > 0
            {
                created += insert_default_groups(conn, pair, now_ms).await?;
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
        // Automatic groups first, "all" before "90 days", then manual ones by age.
        let rows = sqlx::query(concat!(
            group_columns!(),
            " WHERE g.user_id = $2 AND g.place_id = $3 \
             ORDER BY g.auto_rule IS NULL, g.auto_rule = 'recent_90d', g.id \
             LIMIT $4 OFFSET $5"
        ))
        .bind(recent_since_s)
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .bind(page_limit(limit))
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
            group_columns!(),
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
        pg_tx!(self, "create a group", |tx| {
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            // The unique indexes keep names, and their keys, unique per pair whatever races.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, \
                 kind, auto_rule, created_at, updated_at) \
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
        pg_tx!(self, "replace a group's members", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
                return Ok(refused);
            }
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            sqlx::query("DELETE FROM contact_group_members WHERE group_id = $1")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            insert_members(tx, group_id, contact_ids, now_ms).await?;
            sqlx::query("UPDATE contact_groups SET updated_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            Ok(GroupChange::Done(group_id))
        })
    }

    async fn delete_manual_group(&self, pair: Pair, group_id: i64) -> StoreResult<GroupChange> {
        pg_tx!(self, "delete a group", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
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

/// `None` when the pair has this group and it is manual (its row now locked until the
/// commit); otherwise why it cannot change.
async fn manual_group_of(
    tx: &mut PgConnection,
    pair: Pair,
    group_id: i64,
) -> StoreResult<Option<GroupChange>> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM contact_groups WHERE id = $1 AND user_id = $2 AND place_id = $3 \
         FOR UPDATE",
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
async fn unknown_contacts(tx: &mut PgConnection, pair: Pair, ids: &[i64]) -> StoreResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found: std::collections::HashSet<i64> = sqlx::query_scalar(
        "SELECT id FROM contacts WHERE user_id = $1 AND place_id = $2 AND is_active \
         AND id = ANY($3)",
    )
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !found.contains(id))
        .collect())
}

async fn insert_members(
    tx: &mut PgConnection,
    group_id: i64,
    ids: &[i64],
    now_ms: i64,
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO contact_group_members (group_id, contact_id, added_at) \
         SELECT $1, u.id, $2 FROM UNNEST($3::bigint[]) AS u(id) \
         ON CONFLICT (group_id, contact_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(now_ms)
    .bind(ids)
    .execute(tx)
    .await?;
    Ok(())
}
