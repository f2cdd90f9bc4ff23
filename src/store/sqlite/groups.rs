//! Groups on SQLite: automatic groups are rules evaluated at read time, manual groups lists.
//! The rest is `store/sql/groups.rs`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::Pair;
use crate::domain::text::name_key;
use crate::store::StoreResult;
use crate::store::sql::groups::{RULES, impl_group_store};

/// Group members written or checked per statement (3 parameters each), under SQLite's
/// limit of parameters.
const MEMBERS_PER_STATEMENT: usize = 1_000;

impl SqliteStore {
    /// No row lock in SQLite: its single writer already makes two changes take turns.
    const GROUP_KIND_FOR_CHANGE: &str =
        "SELECT kind FROM contact_groups WHERE id = $1 AND user_id = $2 AND place_id = $3";

    async fn insert_default_groups(
        conn: &mut SqliteConnection,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, kind, \
             auto_rule, created_at, updated_at) ",
        );
        q.push_values(RULES, |mut b, rule| {
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
        Ok(q.build().execute(conn).await?.rows_affected())
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
}

impl_group_store!(SqliteStore, Sqlite, write_tx);
