//! A database written before issue 19 starts with every message as it was: same ids, same
//! statuses, outgoing. SQLite rebuilds its `messages` table to take the new types and
//! statuses; PostgreSQL swaps the table's checks.

use crate::helpers::*;
use crate::old_schema::{postgres_until, sqlite_until};

#[tokio::test]
async fn messages_from_before_rich_messaging_keep_their_ids_statuses_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    // The migrations of the server before rich messaging.
    let pool = sqlite_until(&db, 9).await;
    insert_old_messages(&pool).await;
    pool.close().await;
    let url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|c| c.database_url = url).await;
    assert_kept(&app).await;
}

#[tokio::test]
async fn messages_from_before_rich_messaging_keep_them_on_postgres_too() {
    let db = testkit::pg::database().await;
    // The migrations of the server before rich messaging.
    let pool = postgres_until(&db.url, 4).await;
    insert_old_messages(&pool).await;
    // The rows were written with their ids; a real database's sequences are past them.
    for statement in [
        "SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))",
        "SELECT setval(pg_get_serial_sequence('message_jobs', 'id'), 3)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let url = db.url.clone();
    let app = spawn_app_with(|c| c.database_url = url).await;
    assert_kept(&app).await;
}

/// Written with the old columns only; `?` and `$n` both read as the n-th bind on each.
async fn insert_old_messages<DB: sqlx::Database>(pool: &sqlx::Pool<DB>)
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'static str>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'static str: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO message_jobs (id, user_id, place_id, kind, group_id, total, created_at) \
         VALUES (3, 1, 2, 'bulk', NULL, 2, 1000)",
    )
    .execute(pool)
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
             VALUES ($1, 1, 2, $2, '+966500000001', $3, 'hi', $4, $5, $6, 1000, 1000, $7)",
        )
        .bind(id)
        .bind(job)
        .bind(kind)
        .bind(image)
        .bind(status)
        .bind(format!("3EB0OLD{id}"))
        .bind(sent_at)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn assert_kept(app: &TestApp) {
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
    crate::messaging::pair_with_contacts(app, 1, 2, 1).await;
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
