//! PostgreSQL going away under a running server, and TLS to it: a server on a cluster of the
//! test's own.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use testkit::pg::{Cluster, ClusterOptions};

use super::server::{Server, pair, serve};

/// The error envelope of SPEC.md with a 503.
fn assert_503_envelope(what: &str, s: StatusCode, v: &Value) {
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{what}: {v}");
    assert_eq!(v["success"], false, "{what}: {v}");
    assert_eq!(v["status_code"], 503, "{what}: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
}

async fn linked(database: &str, data: &Path) -> Server {
    let srv = Server::start_on(database, data, &["--sim-auto-scan", "0.2"]).await;
    let (s, v) = srv.post("/api/whatsapp/init", pair()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    srv.wait_status("ready").await;
    srv
}

#[tokio::test]
async fn with_postgres_stopped_the_api_answers_503_and_recovers_when_it_is_back() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut srv = linked(&db.url, &dir.path().join("data")).await;

    cluster.stop();
    let reads = [
        "/api/health",
        "/api/whatsapp/groups?user_id=1&place_id=2",
        "/api/whatsapp/messages?user_id=1&place_id=2",
        "/api/admin/keys",
    ];
    for path in reads {
        let (s, v) = srv.call(Method::GET, path, None).await;
        assert_503_envelope(path, s, &v);
    }
    let (s, v) = srv.post("/api/admin/keys", json!({"user_id": 1})).await;
    assert_503_envelope("POST /api/admin/keys", s, &v);
    // A node that cannot renew its lease stops its clients (another node could be taking
    // them over): what matters here is that the server lives on and answers.
    let before = srv.status().await;
    assert!(srv.running(), "the server died: {}", srv.logs());

    cluster.start_again();
    // The pool reconnects by itself: no restart of the server.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, v) = srv
            .call(
                Method::GET,
                "/api/whatsapp/groups?user_id=1&place_id=2",
                None,
            )
            .await;
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = srv.call(Method::GET, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The session comes back by itself, the same one, without a QR code.
    let after = srv
        .wait_for("ready and connected", |s| {
            s["status"] == "ready" && s["client_ready"] == true
        })
        .await;
    assert!(
        before["session_id"].is_null() || after["session_id"] == before["session_id"],
        "{before} / {after}"
    );
    let (s, v) = srv.post("/api/admin/keys", json!({"user_id": 1})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = srv.call(Method::GET, "/api/admin/keys", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["keys"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(srv.running());
    let logs = srv.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn with_sslmode_require_the_server_talks_to_postgres_over_tls() {
    let cluster = Cluster::start(ClusterOptions {
        durable: false,
        ssl: true,
    });
    let db = cluster.database().await;
    let url = cluster.tcp_url(&db, "require");
    let dir = tempfile::tempdir().unwrap();
    let srv = linked(&url, &dir.path().join("data")).await;
    let (s, v) = srv.post("/api/admin/keys", json!({"user_id": 1})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Seen from a connection of our own: every one of the server's is encrypted.
    let mut admin = sqlx::PgConnection::connect(cluster.admin_url())
        .await
        .expect("admin");
    let name = url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .unwrap_or_default()
        .to_string();
    let (count, all_tls): (i64, Option<bool>) = sqlx::query_as(
        "SELECT COUNT(*), bool_and(s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = $1",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_ssl");
    assert!(count >= 1, "the server holds no connection to {name}");
    assert_eq!(all_tls, Some(true), "a connection to {name} without TLS");
    drop(srv);
}

#[tokio::test]
async fn sslmode_require_against_postgres_without_tls_stops_the_start_with_a_clear_error() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.database().await;
    let url = cluster.tcp_url(&db, "require");
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(&url, &dir.path().join("data"), &["--engine", "sim"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a database refusing TLS");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(status.code(), Some(1 | 2)), "{status:?}: {stderr}");
    assert!(stderr.contains("cannot connect to database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}
