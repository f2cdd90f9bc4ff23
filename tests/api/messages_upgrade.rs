//! A SQLite database written before issue 19 (its `messages` table is rebuilt to take the new
//! types and statuses) starts with every message as it was: same ids, same statuses, outgoing.

use crate::helpers::*;

/// The migrations of the server before issue 19, applied by hand.
async fn database_before_rich_messaging(path: &std::path::Path) -> sqlx::SqlitePool {
    let old = tempfile::tempdir().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let version: u32 = name[..4].parse().unwrap();
        if version <= 9 {
            std::fs::copy(entry.path(), old.path().join(&name)).unwrap();
        }
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

#[tokio::test]
async fn messages_from_before_rich_messaging_keep_their_ids_statuses_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let pool = database_before_rich_messaging(&db).await;
    sqlx::query(
        "INSERT INTO message_jobs (id, user_id, place_id, kind, group_id, total, created_at) \
         VALUES (3, 1, 2, 'bulk', NULL, 2, 1000)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let rows = [
        (40, Some(3), "text", None, "sent", Some(2000)),
        (
            41,
            Some(3),
            "image",
            Some("https://example.com/a.png"),
            "failed",
            None,
        ),
        (42, None, "text", None, "queued", None),
    ];
    for (id, job, kind, image, status, sent_at) in rows {
        sqlx::query(
            "INSERT INTO messages (id, user_id, place_id, job_id, recipient, kind, body, \
             image_url, status, wa_message_id, created_at, updated_at, sent_at) \
             VALUES (?, 1, 2, ?, '+966500000001', ?, 'hi', ?, ?, ?, 1000, 1000, ?)",
        )
        .bind(id)
        .bind(job)
        .bind(kind)
        .bind(image)
        .bind(status)
        .bind(format!("3EB0OLD{id}"))
        .bind(sent_at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|c| c.database_url = url).await;
    let (status, body) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=2&limit=10")
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = body["data"]["messages"].as_array().unwrap();
    let got: Vec<(i64, &str, &str, &str)> = listed
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["type"].as_str().unwrap(),
                m["status"].as_str().unwrap(),
                m["direction"].as_str().unwrap(),
            )
        })
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        [
            (40, "text", "sent", "out"),
            (41, "image", "failed", "out"),
            (42, "text", "queued", "out"),
        ],
        "{body}"
    );
    let image = listed.iter().find(|m| m["id"] == 41).unwrap();
    assert_eq!(image["image_url"], "https://example.com/a.png");
    assert_eq!(
        image["media"]["url"], "https://example.com/a.png",
        "{image}"
    );
    let sent = listed.iter().find(|m| m["id"] == 40).unwrap();
    assert_eq!(sent["whatsapp_message_id"], "3EB0OLD40");

    // The ids go on from where they were.
    crate::messaging::pair_with_contacts(&app, 1, 2, 1).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            serde_json::json!({"user_id": 1, "place_id": 2, "phone_number": "+966500000002",
                               "text": "after the upgrade"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert!(body["data"]["id"].as_i64().unwrap() > 42, "{body}");
}
