//! Groups on PostgreSQL: automatic groups are rules evaluated at read time, manual groups
//! lists. A change to a manual group locks its row first, so two changes take turns. The
//! rest is `store/sql/groups.rs`.

use sqlx::{PgConnection, Postgres};

use super::{PgStore, pg_tx};
use crate::domain::Pair;
use crate::domain::text::name_key;
use crate::store::StoreResult;
use crate::store::sql::groups::{RULES, impl_group_store};

impl PgStore {
    /// Locked until the commit: two changes of one group take turns, as SQLite's single
    /// writer makes them.
    const GROUP_KIND_FOR_CHANGE: &str = "SELECT kind FROM contact_groups \
         WHERE id = $1 AND user_id = $2 AND place_id = $3 FOR UPDATE";

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

    /// The ids, in the order given, that are not active contacts of the pair.
    async fn unknown_contacts(
        tx: &mut PgConnection,
        pair: Pair,
        ids: &[i64],
    ) -> StoreResult<Vec<i64>> {
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
}

impl_group_store!(PgStore, Postgres, pg_tx);
