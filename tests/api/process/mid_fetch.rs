//! What SIGTERM and `kill -9` in the middle of a 100,000-contact fetch leave behind, on both
//! backends: one body each, run once per backend.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::db::TestBackend;

use super::server::{Server, book, pair};

/// A server fetching a 100,000-contact book slowly, with at least `landed` contacts saved.
const BOOK: usize = 100_000;

async fn server_mid_fetch(database: &str, data: &Path, landed: i64) -> (Server, Value) {
    let srv = Server::start_on(
        database,
        data,
        &["--sim-auto-scan", "0", "--sim-fetch-delay-ms", "60"],
    )
    .await;
    let (s, _) = srv
        .call(reqwest::Method::PUT, "/api/sim/phonebook", Some(book(BOOK)))
        .await;
    assert_eq!(s, StatusCode::OK);
    srv.post("/api/whatsapp/init", pair()).await;
    let ready = srv.wait_status("ready").await;
    let (s, _) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::OK);
    srv.wait_for("partly fetched", |s| {
        s["total_contacts"].as_i64().unwrap_or(0) >= landed
    })
    .await;
    (srv, ready)
}

#[tokio::test]
async fn sigterm_mid_fetch_exits_promptly_and_leaves_the_fetch_resumable() {
    sigterm_mid_fetch(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn sigterm_mid_fetch_exits_promptly_and_leaves_the_fetch_resumable_on_postgres() {
    sigterm_mid_fetch(TestBackend::Postgres).await;
}

async fn sigterm_mid_fetch(backend: TestBackend) {
    let db = backend.database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut srv, before) = server_mid_fetch(&db.url, &data, 2_000).await;
    srv.signal("-TERM");
    let (code, took) = srv.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", srv.logs());
    assert!(took < Duration::from_secs(10), "exit took {took:?}");

    let srv = Server::start_on(&db.url, &data, &["--sim-auto-scan", "0"]).await;
    let st = srv.wait_status("ready").await;
    assert_eq!(
        st["session_id"], before["session_id"],
        "same session, no new scan"
    );
    assert!(
        st["contacts_fetch_error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{st}"
    );
    let (s, _) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::OK);
    let done = srv
        .wait_for("fetched", |s| s["contacts_fetch_completed"] == true)
        .await;
    assert_eq!(done["total_contacts"], BOOK);
    assert_eq!(done["total_groups"], 2);
}

#[tokio::test]
async fn kill_9_mid_fetch_loses_nothing_and_duplicates_nothing() {
    kill_9_mid_fetch(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn kill_9_mid_fetch_loses_nothing_and_duplicates_nothing_on_postgres() {
    kill_9_mid_fetch(TestBackend::Postgres).await;
}

async fn kill_9_mid_fetch(backend: TestBackend) {
    let db = backend.database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut srv, before) = server_mid_fetch(&db.url, &data, 3_000).await;
    srv.signal("-KILL");
    srv.wait_exit(Duration::from_secs(10));

    let srv = Server::start_on(&db.url, &data, &["--sim-auto-scan", "0"]).await;
    let st = srv.wait_status("ready").await;
    assert_eq!(st["session_id"], before["session_id"]);
    assert_ne!(st["status"], "fetching_contacts");
    let (s, v) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let done = srv
        .wait_for("fetched", |s| s["contacts_fetch_completed"] == true)
        .await;
    assert_eq!(done["total_contacts"], BOOK);
    let (_, groups) = srv
        .call(
            reqwest::Method::GET,
            "/api/whatsapp/groups?user_id=1&place_id=2",
            None,
        )
        .await;
    let groups = groups["data"]["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["contact_count"], BOOK);
    // Activity spreads over 200 days in steps of one day: days 0..=89 are recent.
    assert_eq!(groups[1]["contact_count"], BOOK / 200 * 90);
    // No number twice: the group's pages hold BOOK distinct numbers.
    let mut seen = std::collections::HashSet::new();
    for page in 1..=(BOOK / 1000) {
        let (s, v) = srv
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/whatsapp/groups/{}/contacts?user_id=1&place_id=2&page={page}&limit=1000",
                    groups[0]["id"]
                ),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for c in v["data"]["contacts"].as_array().unwrap() {
            assert!(seen.insert(c["phone_number"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(seen.len(), BOOK);
    let st = srv.wait_status("ready").await;
    assert_eq!(st["contacts_fetch_error"], Value::Null, "{st}");
}
