//! The real binary's request ids in its logs, and its `--metrics-listen` listener.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::server::{ADMIN_KEY, BIN, Server, serve};

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_method_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("wam.db").display());
    let mut cmd = serve(&db, &dir.path().join("data"), &["--engine", "sim"]);
    // The default level, with the closing lines of successes, which are at debug.
    cmd.env("RUST_LOG", "info,whatsapp_manager::http::observe=debug");
    let server = Server::spawn(cmd);
    let client = reqwest::Client::new();

    let res = client
        .post(format!("{}/api/whatsapp/init", server.base))
        .header("x-api-key", ADMIN_KEY)
        .header("x-request-id", "init-req-7f3a")
        .json(&json!({"user_id": 61, "place_id": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(format!("{}/api/nothing/61", server.base))
        .header("x-api-key", ADMIN_KEY)
        .header("x-request-id", "lost-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    eventually("the 404's closing line", || {
        server.logs().contains("answered 404")
    })
    .await;

    let logs = server.logs();
    let of = |id: &str| -> Vec<&str> {
        logs.lines()
            .filter(|l| l.contains(&format!("request_id={id}")))
            .collect()
    };
    let init = of("init-req-7f3a");
    // The manager's own line, not only the middleware's, is in the request's span.
    assert!(
        init.iter().any(|l| l.contains("Initializing new session")),
        "the handler's line lacks the id:\n{logs}"
    );
    let done = init
        .iter()
        .find(|l| l.contains("answered 200"))
        .unwrap_or_else(|| panic!("no closing line:\n{logs}"));
    assert!(done.contains("method=POST"), "{done}");
    assert!(done.contains("route=/api/whatsapp/init"), "{done}");
    assert!(done.contains(" ms"), "{done}");
    // Successes at debug: the default level leaves them out under load.
    assert!(done.contains("DEBUG") && done.contains("✅"), "{done}");
    let lost = of("lost-req-1");
    let line = lost
        .iter()
        .find(|l| l.contains("answered 404"))
        .unwrap_or_else(|| panic!("no closing line of the 404:\n{logs}"));
    assert!(
        line.contains("INFO") && line.contains("route=unmatched"),
        "{line}"
    );
    // The raw path of an unknown route stays out of the log, as out of the metrics.
    assert!(!line.contains("/api/nothing/61"), "{line}");
}

#[tokio::test]
async fn metrics_listen_serves_only_the_metrics_and_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let mut at = None;
    eventually("the metrics listener's address in the log", || {
        at = server
            .logs()
            .lines()
            .find_map(|l| l.split("Metrics without a key on ").nth(1))
            .map(|s| s.trim().to_owned());
        at.is_some()
    })
    .await;
    let url = at.unwrap();
    assert!(url.ends_with("/metrics"), "{url}");
    let client = reqwest::Client::new();

    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE wam_sessions gauge"), "{text}");
    assert!(text.contains("wam_build_info{"), "{text}");
    // Nothing else of the API there.
    let other = url.replace("/metrics", "/api/whatsapp/status?user_id=1&place_id=1");
    let res = client.get(&other).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The API's own listener still asks for the key.
    let res = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_bad_or_taken_metrics_address_stops_the_start_with_exit_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (addr, says) in [
        ("nope", "--metrics-listen"),
        ("127.0.0.1", "--metrics-listen"),
        (taken.as_str(), "(--metrics-listen)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--engine", "sim", "--listen", "127.0.0.1:0"])
            .arg("--database")
            .arg(format!("sqlite://{}", dir.path().join("wam.db").display()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--metrics-listen", addr])
            .env("WAM_API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{addr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{addr}: {err}");
        assert!(!err.contains("listening on"), "{addr}: {err}");
    }
}
