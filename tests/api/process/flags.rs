//! The binary's flags, its start-up refusals, and its logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::server::{ADMIN_KEY, BIN, Server, pair};

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "WAM_LISTEN",
        "127.0.0.1:5000",
        "--database",
        "DATABASE_URL",
        "sqlite://data/whatsapp-manager.db",
        "--data-dir",
        "WAM_DATA_DIR",
        "--engine",
        "WAM_ENGINE",
        "--sim-contacts",
        "--sim-auto-scan",
        "--sim-qr-interval",
        "--sim-qr-attempts",
        "--sim-fetch-delay-ms",
        "--api-key",
        "WAM_API_KEY",
        "--request-timeout",
        "WAM_REQUEST_TIMEOUT",
        "--max-concurrent-fetches",
        "WAM_MAX_CONCURRENT_FETCHES",
        "--max-sessions-per-user",
        "WAM_MAX_SESSIONS_PER_USER",
        "--rate-limit",
        "WAM_RATE_LIMIT",
        "--rate-limit-burst",
        "WAM_RATE_LIMIT_BURST",
        "--auth-failure-limit",
        "WAM_AUTH_FAILURE_LIMIT",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// This machine has no route to WhatsApp: `init` on the default engine must end in a state
/// a person can read (or a QR code, where the internet is there), the API must keep
/// answering, and retries must back off instead of spinning.
#[tokio::test]
async fn the_default_engine_offline_gives_a_clear_status_and_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_raw(dir.path(), &[]).await;
    assert!(
        server.logs().contains("(engine: whatsapp)"),
        "{}",
        server.logs()
    );
    let (code, body) = server
        .post("/api/whatsapp/init", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Client initialization started");
    let t0 = std::time::Instant::now();
    let settled = loop {
        let st = server.status().await;
        if st["status"] == "disconnected" || st["status"] == "qr_ready" {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "init never settled: {st}"
        );
        // The API answers while the engine struggles.
        let h0 = std::time::Instant::now();
        let (hc, _) = server.call(reqwest::Method::GET, "/api/health", None).await;
        assert_eq!(hc, StatusCode::OK);
        assert!(h0.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if settled["status"] == "disconnected" {
        let msg = settled["error_message"].as_str().unwrap_or_default();
        assert!(msg.contains("cannot reach WhatsApp servers"), "{settled}");
        assert_eq!(settled["client_ready"], false);
        // Using the session answers the contract's errors, not a hang.
        let (code, body) = server
            .post(
                "/api/whatsapp/start-contact-fetch",
                json!({"user_id": 1, "place_id": 2}),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        let (code, body) = server
            .call(
                reqwest::Method::GET,
                "/api/whatsapp/qr?user_id=1&place_id=2",
                None,
            )
            .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        // Backoff: a few seconds bring a handful of attempts, and one warning for them.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let logs = server.logs();
        let warnings = logs.matches("Cannot reach WhatsApp servers").count();
        assert_eq!(warnings, 1, "{logs}");
        let attempts = logs.matches("Failed to connect").count();
        assert!(attempts <= 8, "{attempts} attempts: {logs}");
        // The library's own lines get the emoji of their level and the session id too.
        for line in logs.lines().filter(|l| l.contains("Failed to connect")) {
            assert!(line.contains("❌ Failed to connect"), "{line}");
            assert!(line.contains("session.id=session_1_2_"), "{line}");
        }
    }
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

/// `serve` without an admin key on `listen`; its exit code and logs if it stopped by itself.
fn serve_without_a_key(dir: &std::path::Path, listen: &str, key_env: Option<&str>) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--engine", "sim", "--listen", listen, "--database"])
        .arg(format!("sqlite://{}", dir.join("wam.db").display()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("WAM_API_KEY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(v) = key_env {
        cmd.env("WAM_API_KEY", v);
    }
    cmd.spawn().expect("start server")
}

#[test]
fn without_an_admin_key_a_public_listen_address_is_refused() {
    // An empty WAM_API_KEY is no key.
    for key in [None, Some(""), Some("   ")] {
        let dir = tempfile::tempdir().unwrap();
        let child = serve_without_a_key(dir.path(), "0.0.0.0:0", key);
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(2), "{key:?}");
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(
            logs.contains("refusing to listen on 0.0.0.0:0 without an admin API key"),
            "{logs}"
        );
        assert!(!logs.contains("listening on"), "{logs}");
    }
}

#[tokio::test]
async fn without_an_admin_key_the_server_warns_and_serves_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_without_a_key(dir.path(), "127.0.0.1:0", None);
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut seen = String::new();
    let port = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("server ended: {seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("⚠️ No admin API key is set"), "{seen}");
    assert!(!port.is_empty());
}

#[tokio::test]
async fn with_an_admin_key_a_public_address_is_served_and_keys_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--listen", "0.0.0.0:0"]).await;
    assert!(!srv.logs().contains("No admin API key"), "{}", srv.logs());
    let res = reqwest::get(format!(
        "{}/api/whatsapp/status?user_id=1&place_id=2",
        srv.base
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = srv.call(reqwest::Method::GET, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv
        .call(
            reqwest::Method::GET,
            "/api/whatsapp/status?user_id=1&place_id=2",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn an_admin_key_shorter_than_16_characters_stops_the_start_with_exit_code_2() {
    const SHORT: &str = "tiny-key-77";
    for by_flag in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--engine",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(format!("sqlite://{}", dir.path().join("wam.db").display()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("WAM_API_KEY");
        if by_flag {
            cmd.args(["--api-key", SHORT]);
        } else {
            cmd.env("WAM_API_KEY", SHORT);
        }
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "by flag: {by_flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("has 11 characters; it needs at least 16"),
            "{stderr}"
        );
        assert!(!stderr.contains(SHORT), "the key was printed: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
        assert!(!dir.path().join("wam.db").exists(), "started anyway");
    }
}

#[test]
fn a_database_url_of_another_kind_stops_the_start_with_exit_code_2_and_creates_nothing() {
    // mysql: refused by the flag's parser. postgres: accepted, and a server that cannot be
    // reached stops the start, without printing the URL's password.
    for (url, by_flag, says) in [
        ("mysql://wam:secret@localhost/wam", true, "sqlite://PATH"),
        (
            "postgres://wam:secret@localhost/wam?host=/nonexistent-wam-socket-dir",
            true,
            "cannot connect to database postgres://wam:*****@localhost/wam",
        ),
        (
            "postgresql://wam:secret@localhost/wam?host=/nonexistent-wam-socket-dir",
            false,
            "cannot connect to database",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["serve", "--engine", "sim", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("WAM_API_KEY");
        if by_flag {
            cmd.args(["--database", url]).env_remove("DATABASE_URL");
        } else {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("secret"),
            "the password was printed: {stderr}"
        );
        assert!(!stderr.contains("listening on"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{url} created {left:?}");
    }
}

#[test]
fn a_bad_flag_value_is_refused_before_starting() {
    let out = Command::new(BIN)
        .args(["serve", "--sim-qr-attempts", "0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
}

#[tokio::test]
async fn logs_follow_the_notes_and_never_carry_qr_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--sim-auto-scan", "0.2"]).await;
    let (s, v) = srv.post("/api/whatsapp/init", pair()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["data"]["session_id"].as_str().unwrap().to_string();
    let ready = srv.wait_status("ready").await;
    assert_eq!(ready["session_id"], id.as_str());
    let (s, _) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::OK);
    srv.wait_for("fetched", |s| s["contacts_fetch_completed"] == true)
        .await;
    let (s, _) = srv
        .post(
            "/api/sim/fault",
            json!({"user_id": 1, "place_id": 2, "kind": "drop_client"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = srv.logs();
    for line in [
        format!("✅ Session ready: {id}"),
        format!("🏗️ Creating default groups for session: {id}"),
        "ℹ️ Found 0 existing auto groups: ".to_string(),
        "✅ Created 2 new default groups for user 1".to_string(),
        format!("✅ Created 2 default groups for session: {id}"),
        "ℹ️ Attempting to start contact fetch for user 1, place 2".to_string(),
        "ℹ️ Starting background contact fetch for user 1, place 2".to_string(),
        format!("⚡ Contact fetch starting for session: {id}"),
        "✅ Background contact fetch started successfully".to_string(),
        format!("⚠️ Client not found in memory for session {id}, updating status"),
        "🔄 Session status updated to disconnected".to_string(),
        "❌ Error starting contact fetch: Client not available - session may have been disconnected".to_string(),
    ] {
        assert!(logs.contains(&line), "missing log line {line:?} in:\n{logs}");
    }
    // A QR payload is `ref,key,key,secret`: digits '@' then base64 runs joined by commas.
    for (i, _) in logs.match_indices('@') {
        let tail: String = logs[i + 1..].chars().take(40).collect();
        let b64 = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "+/=".contains(*c))
            .count();
        assert!(
            !(b64 >= 16 && tail.chars().nth(b64) == Some(',')),
            "a QR payload reached the logs near: {tail}"
        );
    }
    assert!(
        !logs.contains("data:image/png"),
        "a QR image reached the logs"
    );
    assert!(!logs.contains(ADMIN_KEY), "the admin key reached the logs");
}
