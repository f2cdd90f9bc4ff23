//! A database locked by another process for longer than a request waits: the request gets a
//! 503 that says so, and the background work held up meanwhile loses nothing.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::contention::{SECRET, all_pages, book, call, poll, receiver};
use crate::helpers::*;

/// Another process holds the database's write lock for longer than a request waits: the
/// request gets a 503 that says so, and the background work it held up (an incoming
/// message's event, a contact fetch, the session's record) waits it out and loses nothing.
#[tokio::test]
async fn a_database_locked_past_the_limit_answers_503_and_background_work_waits_it_out() {
    let app = spawn_app_with(crate::messaging::fast).await;
    let (url, received) = receiver().await;
    let (s, v) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": url, "secret": SECRET}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids = crate::messaging::pair_with_contacts(&app, 1, 2, 5).await;
    app.set_phonebook(1, 2, "966500000001@s.whatsapp.net", book(2_000, 50_000_000))
        .await;

    let mut other = sqlx::SqliteConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let held = Instant::now();
    let group = async {
        let (s, v) = call(
            &app,
            Method::POST,
            "/api/whatsapp/groups",
            Some(json!({"user_id": 1, "place_id": 2, "name": "while locked",
                        "contact_ids": &ids[..2]})),
        )
        .await;
        (s, v, held.elapsed())
    };
    let incoming = app.post(
        "/api/sim/incoming",
        json!({"user_id": 1, "place_id": 2, "from": "+966551234567", "text": "anyone?"}),
    );
    let fetch = app.start_fetch(1, 2);
    let release = async {
        // Longer than a write waits (10 s), so each step above runs out of it once.
        tokio::time::sleep(Duration::from_secs(14)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    };
    let ((s, v, took), (incoming_status, _), (fetch_status, fetch_body), ()) =
        tokio::join!(group, incoming, fetch, release);
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["message"], "The database is busy; try again", "{v}");
    assert_eq!(v["status_code"], 503, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert!(
        took >= Duration::from_secs(9),
        "waited its turn first: {took:?}"
    );
    assert_eq!(incoming_status, StatusCode::OK);
    assert_eq!(fetch_status, StatusCode::OK, "{fetch_body}");

    let done = poll("the fetch ended", async || {
        let p = app.progress(1, 2).await;
        (p["is_fetching"] == false && p["status"] == "ready").then_some(p)
    })
    .await;
    assert_eq!(done["contacts_fetch_completed"], true, "{done}");
    assert_eq!(done["contacts_fetch_error"], Value::Null, "{done}");
    poll("the incoming message's event delivered", async || {
        let deliveries = all_pages(
            &app,
            "/api/whatsapp/webhook/deliveries?user_id=1",
            "deliveries",
        )
        .await;
        let event = deliveries
            .iter()
            .find(|d| d["event"] == "message.received" && d["status"] == "delivered")?;
        let id = event["event_id"].as_i64()?;
        received.lock().unwrap().contains(&id).then_some(())
    })
    .await;
    // The fetched book and the stranger who wrote, a contact now. Counted only once the
    // message is told: the actor may take the message before or after the fetch ends.
    let after = app.progress(1, 2).await;
    assert_eq!(after["total_contacts"], 2_006, "{after}");
    let (s, v) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "after the lock",
                   "contact_ids": &ids[..2]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}
