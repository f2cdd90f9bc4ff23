//! Keys of group names (`contact_groups.name_key`, migration 0005): the backfill of rows
//! written before the column existed (the automatic groups' claim on their keys is
//! `store/sql/groups.rs`).

use sqlx::{Row, SqlitePool};

use crate::domain::text::name_key;
use crate::store::StoreResult;

/// Keys the groups that have none, at start-up. SQL cannot fold Unicode case, so this runs
/// here rather than in the migration. Automatic groups first: no manual group, however old,
/// may keep the key of an automatic one. When two old groups of a pair look alike, the later
/// keeps no key (grandfathered: it keeps its name, and is tried again at the next start, in
/// case the other was deleted). Never fails the start: a database error is logged, and the
/// rows left without a key are only not guarded against lookalikes.
pub(super) async fn backfill(pool: &SqlitePool) {
    if let Err(e) = try_backfill(pool).await {
        tracing::warn!("⚠️ Cannot compare old group names for lookalikes: {e:#}");
    }
}

async fn try_backfill(pool: &SqlitePool) -> StoreResult<()> {
    let rows = sqlx::query(
        "SELECT id, user_id, place_id, name FROM contact_groups WHERE name_key IS NULL \
         ORDER BY auto_rule IS NULL, id",
    )
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut grandfathered = Vec::new();
    // Writes only, so the write lock is taken at the first statement and held to the commit.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        // OR IGNORE: a key another group of the pair holds leaves this row as it was.
        let keyed = sqlx::query(
            "UPDATE OR IGNORE contact_groups SET name_key = ? WHERE id = ? AND name_key IS NULL",
        )
        .bind(name_key(&name))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if keyed == 0 {
            let user_id: i64 = row.try_get("user_id")?;
            let place_id: i64 = row.try_get("place_id")?;
            grandfathered.push((id, user_id, place_id, name));
        }
    }
    tx.commit().await?;
    for (id, user_id, place_id, name) in &grandfathered {
        tracing::warn!(
            "⚠️ Group {id} {name:?} of user {user_id}, place {place_id} looks like an older group \
             of the same pair (same name once case and invisible characters are ignored); it \
             keeps its name, but rename or delete one of them"
        );
    }
    tracing::info!(
        "ℹ️ Keyed {} group names for lookalike checks ({} left as they were)",
        rows.len() - grandfathered.len(),
        grandfathered.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::domain::{Pair, PlaceId, UserId};
    use crate::store::GroupChange;
    use crate::store::prelude::*;

    fn pair() -> Pair {
        Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2))
    }

    async fn keys(store: &SqliteStore) -> Vec<(String, Option<String>)> {
        sqlx::query_as("SELECT name, name_key FROM contact_groups ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    async fn insert_unkeyed(store: &SqliteStore, name: &str, rule: Option<&str>) {
        sqlx::query(
            "INSERT INTO contact_groups (user_id, place_id, name, kind, auto_rule, created_at, \
             updated_at) VALUES (1, 2, ?, ?, ?, 1, 1)",
        )
        .bind(name)
        .bind(if rule.is_some() { "auto" } else { "manual" })
        .bind(rule)
        .execute(&store.pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_backfill_keys_old_rows_and_grandfathers_the_later_lookalike() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        // Rows as a server without keys wrote them: a manual lookalike older than the
        // automatic group it imitates, and two manual groups differing only by case.
        insert_unkeyed(&store, "جميع الارقام\u{200D}", None).await;
        insert_unkeyed(&store, "جميع الارقام", Some("all")).await;
        insert_unkeyed(&store, "Shop", None).await;
        insert_unkeyed(&store, "shop", None).await;
        drop(store);

        let store = SqliteStore::connect(&url).await.unwrap();
        let got = keys(&store).await;
        assert_eq!(
            got[0].1, None,
            "the manual lookalike yields to the automatic group"
        );
        assert_eq!(got[1].1.as_deref(), Some("جميع الارقام"));
        assert_eq!(got[2].1.as_deref(), Some("shop"));
        assert_eq!(got[3].1, None, "the later of two lookalikes keeps no key");

        // Once the older one is gone, the next start keys the grandfathered one.
        sqlx::query("DELETE FROM contact_groups WHERE name = 'Shop'")
            .execute(&store.pool)
            .await
            .unwrap();
        drop(store);
        let store = SqliteStore::connect(&url).await.unwrap();
        let got = keys(&store).await;
        assert_eq!(got.last().unwrap().1.as_deref(), Some("shop"));
    }

    #[tokio::test]
    async fn automatic_groups_are_created_beside_an_old_manual_lookalike() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        // A manual group that took the automatic group's key before that group existed.
        sqlx::query(
            "INSERT INTO contact_groups (user_id, place_id, name, name_key, kind, created_at, \
             updated_at) VALUES (1, 2, 'جميع الارقام\u{200B}', 'جميع الارقام', 'manual', 1, 1)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let out = store.ensure_default_groups(pair(), 5).await.unwrap();
        assert_eq!(out.created, 2);
        let got = keys(&store).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, None);
        assert!(got[1..].iter().all(|(_, k)| k.is_some()));
    }

    #[tokio::test]
    async fn a_lookalike_of_any_group_is_a_taken_name() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.ensure_default_groups(pair(), 1).await.unwrap();
        let create = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .create_manual_group(pair(), name, None, &[], 2)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(create("Shop").await, GroupChange::Done(_)));
        for taken in [
            "SHOP",
            "sho\u{200B}p",
            "جميع الارقام\u{200D}",
            "اخر الارقام (90 يوم)\u{FEFF}",
        ] {
            assert!(
                matches!(create(taken).await, GroupChange::NameTaken),
                "{taken:?}"
            );
        }
        assert!(matches!(create("Shop 2").await, GroupChange::Done(_)));
    }
}
