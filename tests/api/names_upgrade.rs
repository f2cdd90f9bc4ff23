//! A SQLite database from before group names had keys starts, keeps every group it held and
//! lets no new one look like them. SQLite's alone: PostgreSQL began with today's schema.

use reqwest::StatusCode;

use crate::helpers::*;
use crate::names::{TAKEN, create_group, lookalikes};
use crate::old_schema::sqlite_until;

#[tokio::test]
async fn a_database_from_before_name_keys_starts_and_keeps_its_lookalikes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    // The migrations of the server before name keys.
    let pool = sqlite_until(&db, 4).await;
    // What that server let in: two groups differing by case, the automatic groups, and a
    // manual group named like one of them with a joiner.
    sqlx::query(
        "INSERT INTO contacts (id, user_id, place_id, phone_number, created_at, updated_at) \
         VALUES (7, 1, 2, '+966550000007', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let groups = [
        (ALL_GROUP.to_string(), Some("all")),
        (RECENT_GROUP.to_string(), Some("recent_90d")),
        ("Shop".to_string(), None),
        ("shop".to_string(), None),
        (format!("{ALL_GROUP}\u{200D}"), None),
    ];
    for (name, rule) in &groups {
        sqlx::query(
            "INSERT INTO contact_groups (user_id, place_id, name, kind, auto_rule, created_at, \
             updated_at) VALUES (1, 2, ?, ?, ?, 1, 1)",
        )
        .bind(name)
        .bind(if rule.is_some() { "auto" } else { "manual" })
        .bind(rule)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|c| c.database_url = url).await;
    let mut listed: Vec<String> = app
        .groups(1, 2)
        .await
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = groups.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(listed, want, "every old group is still there");

    for name in lookalikes() {
        let (status, body) = create_group(&app, &name, &[7]).await;
        assert_eq!(assert_error(status, &body, 409), TAKEN, "{name:?}");
    }
    let (status, body) = create_group(&app, "Shop 2", &[7]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The session becoming ready finds its automatic groups, shadowed by nothing.
    app.ready_session(1, 2).await;
    assert_eq!(app.groups(1, 2).await.len(), groups.len() + 1);
}
