//! "Session lifecycle" and "On ready".

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn init_starts_a_session_that_shows_a_png_qr_code() {
    let app = spawn_app().await;
    let v = app.init(1, 2).await;
    assert_eq!(v["message"], "Client initialization started");
    assert!(
        ["initializing", "qr_ready"].contains(&v["data"]["status"].as_str().unwrap()),
        "{v}"
    );
    let st = app.wait_status(1, 2, "qr_ready").await;
    let qr = st["qr_code"].as_str().expect("qr_code while qr_ready");
    assert!(qr.starts_with("data:image/png;base64,"), "{qr}");
    assert_eq!(st["session_exists"], true);
    assert_eq!(st["client_ready"], false);
    assert_eq!(st["session_id"], v["data"]["session_id"]);
}

#[tokio::test]
async fn a_second_init_returns_the_live_session() {
    let app = spawn_app().await;
    let first = app.init(1, 2).await;
    let second = app.init(1, 2).await;
    assert_eq!(second["message"], "Session already active");
    assert_eq!(first["data"]["session_id"], second["data"]["session_id"]);
}

#[tokio::test]
async fn concurrent_inits_for_one_pair_make_one_session() {
    let app = spawn_app().await;
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls.push(app.post("/api/whatsapp/init", json!({"user_id": 5, "place_id": 6})));
    }
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, StatusCode::OK, "{v}");
            v["data"]["session_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    app.wait_status(5, 6, "qr_ready").await;
    app.scan(5, 6).await;
    app.wait_status(5, 6, "ready").await;
    assert_eq!(app.groups(5, 6).await.len(), 2);
}

#[tokio::test]
async fn scanning_links_the_session_through_authenticated_to_ready() {
    let app = spawn_app().await;
    app.set_phonebook(1, 2, "966512340000@s.whatsapp.net", json!([]))
        .await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (s, v) = app.scan(1, 2).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = app.wait_status(1, 2, "ready").await;
    assert_eq!(st["qr_code"], json!(null));
    assert_eq!(st["client_ready"], true);
    assert_eq!(st["phone_number"], "+966512340000");
    assert_eq!(st["name"], "Test Shop");
    assert!(st["connected_at"].is_string(), "{st}");
    // Once linked there is no QR to scan.
    let (s, v) = app.scan(1, 2).await;
    assert_error(s, &v, 400);
}

#[tokio::test]
async fn ready_creates_the_two_default_groups_and_fetches_nothing() {
    let app = spawn_app().await;
    let st = app.ready_session(3, 4).await;
    assert_eq!(st["total_groups"], 2, "{st}");
    let groups = app.groups(3, 4).await;
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec![ALL_GROUP, RECENT_GROUP]);
    for g in &groups {
        assert_eq!(g["contact_count"], 0, "{g}");
        assert_eq!(g["type"], "auto");
    }
    // No automatic fetch: nothing is imported however long we wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = app.status(3, 4).await;
    assert_eq!(st["status"], "ready");
    assert_eq!(st["total_contacts"], 0);
    assert_eq!(st["contacts_fetch_completed"], false);
    assert_eq!(st["last_contacts_sync"], json!(null));
}

#[tokio::test]
async fn reconnects_never_duplicate_the_default_groups() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    for _ in 0..3 {
        let (s, v) = app.fault(1, 1, "disconnect").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        app.wait_status(1, 1, "disconnected").await;
        app.wait_status(1, 1, "ready").await;
    }
    let (s, _) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.wait_status(1, 1, "ready").await;
    let groups = app.groups(1, 1).await;
    assert_eq!(groups.len(), 2, "{groups:?}");
}

#[tokio::test]
async fn disconnect_is_followed_by_an_automatic_reconnect() {
    let app = spawn_app().await;
    let before = app.ready_session(1, 1).await;
    app.fault(1, 1, "disconnect").await;
    let during = app.wait_status(1, 1, "disconnected").await;
    assert_eq!(during["client_ready"], false);
    let after = app.wait_status(1, 1, "ready").await;
    assert_eq!(before["session_id"], after["session_id"]);
}

#[tokio::test]
async fn restart_reconnects_a_linked_session_without_a_new_qr() {
    let app = spawn_app().await;
    let before = app.ready_session(1, 2).await;
    let (s, v) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["session_id"], before["session_id"]);
    let after = app.wait_status(1, 2, "ready").await;
    assert_eq!(after["session_id"], before["session_id"]);
}

#[tokio::test]
async fn restart_and_logout_need_a_session() {
    let app = spawn_app().await;
    for path in ["/api/whatsapp/restart", "/api/whatsapp/logout"] {
        let (s, v) = app.post(path, json!({"user_id": 9, "place_id": 9})).await;
        let msg = assert_error(s, &v, 404);
        assert_eq!(
            msg,
            "No WhatsApp session found. Please initialize a session first."
        );
    }
}

#[tokio::test]
async fn logout_forgets_credentials_and_init_then_needs_a_new_qr() {
    let app = spawn_app().await;
    let linked = app.ready_session(1, 2).await;
    let (s, v) = app
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["status"], "logged_out");
    let st = app.status(1, 2).await;
    assert_eq!(st["status"], "logged_out");
    assert_eq!(st["client_ready"], false);
    let creds = sim_link(&app, linked["session_id"].as_str().unwrap()).await;
    assert!(creds.is_none(), "credentials survived logout: {creds:?}");
    // A logout of a logged-out session is harmless.
    let (s, v) = app
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Session already logged out");

    let again = app.init(1, 2).await;
    assert_eq!(again["message"], "Client initialization started");
    assert_ne!(again["data"]["session_id"], linked["session_id"]);
    app.wait_status(1, 2, "qr_ready").await;
    // The groups of the pair are kept and not duplicated by the new link.
    app.scan(1, 2).await;
    app.wait_status(1, 2, "ready").await;
    assert_eq!(app.groups(1, 2).await.len(), 2);
}

#[tokio::test]
async fn an_unlink_from_the_phone_ends_logged_out() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    let (s, v) = app.fault(1, 2, "logout").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = app.wait_status(1, 2, "logged_out").await;
    assert!(
        st["error_message"].as_str().unwrap().contains("init"),
        "{st}"
    );
    let (s, v) = app.start_fetch(1, 2).await;
    let msg = assert_error(s, &v, 400);
    assert!(msg.contains("Current status: logged_out"), "{msg}");
}

#[tokio::test]
async fn qr_codes_rotate_and_run_out_into_an_error_that_says_why() {
    let app = spawn_app_with(|c| {
        c.sim.qr_interval = Duration::from_millis(300);
        c.sim.qr_attempts = 3;
    })
    .await;
    app.init(1, 2).await;
    let first = app.wait_status(1, 2, "qr_ready").await["qr_code"].clone();
    let mut seen = std::collections::HashSet::new();
    seen.insert(first.as_str().unwrap().to_string());
    let st = loop {
        let st = app.status(1, 2).await;
        if let Some(q) = st["qr_code"].as_str() {
            seen.insert(q.to_string());
        }
        if st["status"] == "error" {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.len(), 3, "each rotation shows a new code");
    assert_eq!(st["qr_code"], json!(null));
    let why = st["error_message"].as_str().unwrap();
    assert!(why.contains("QR code attempts ran out"), "{why}");
    // A restart starts a new round of QR codes on the same session.
    let (s, v) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = app.wait_status(1, 2, "qr_ready").await;
    assert_eq!(st["session_id"], v["data"]["session_id"]);
}

#[tokio::test]
async fn auto_scan_links_without_a_scan_call() {
    let app = spawn_app_with(|c| c.sim.auto_scan = Some(Duration::from_millis(100))).await;
    app.init(7, 8).await;
    app.wait_status(7, 8, "ready").await;
}

#[tokio::test]
async fn a_ready_session_comes_back_ready_after_a_server_restart() {
    let app = spawn_app().await;
    let before = app.ready_session(1, 2).await;
    let app = app.restart_server().await;
    let after = app.wait_status(1, 2, "ready").await;
    assert_eq!(after["session_id"], before["session_id"]);
    assert_eq!(after["phone_number"], before["phone_number"]);
    assert_eq!(app.groups(1, 2).await.len(), 2);
    let again = app.init(1, 2).await;
    assert_eq!(again["message"], "Session already active");
    assert_eq!(again["data"]["session_id"], before["session_id"]);
}

#[tokio::test]
async fn an_unlinked_session_is_not_left_waiting_after_a_restart() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let app = app.restart_server().await;
    let st = app.status(1, 2).await;
    assert_eq!(st["status"], "error", "{st}");
    assert!(st["error_message"].as_str().unwrap().contains("init"));
    let v = app.init(1, 2).await;
    assert_eq!(v["message"], "Client initialization started");
    app.wait_status(1, 2, "qr_ready").await;
}

#[tokio::test]
async fn info_reports_statistics_health_and_recommendations() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (s, v) = app.get("/api/whatsapp/info?user_id=1&place_id=2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["status"], "qr_ready");
    assert!(d["health"]["score"].as_i64().unwrap() < 100);
    assert!(!d["health"]["issues"].as_array().unwrap().is_empty());
    assert!(
        d["recommendations"][0].as_str().unwrap().contains("scan"),
        "{d}"
    );

    app.scan(1, 2).await;
    app.wait_status(1, 2, "ready").await;
    let (_, v) = app.get("/api/whatsapp/info?user_id=1&place_id=2").await;
    let d = &v["data"];
    assert_eq!(d["contact_statistics"]["total_contacts"], 0);
    assert!(
        d["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("start-contact-fetch")),
        "{d}"
    );
    app.fetch_and_wait(1, 2).await;
    let (_, v) = app.get("/api/whatsapp/info?user_id=1&place_id=2").await;
    let d = &v["data"];
    assert!(d["contact_statistics"]["total_contacts"].as_i64().unwrap() > 0);
    assert_eq!(d["health"]["score"], 100, "{d}");
}

#[tokio::test]
async fn stats_count_sessions_by_status() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (s, v) = app.get("/api/whatsapp/stats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["live_clients"], 2);
    assert_eq!(d["sessions_by_status"]["ready"], 1);
    assert_eq!(d["sessions_by_status"]["qr_ready"], 1);
    assert!(d["memory"]["rss_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn health_counts_live_sessions() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let (s, v) = app.get("/api/health").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["active_sessions"], 1);
    assert_eq!(v["data"]["database"], "connected");
}

#[tokio::test]
async fn an_unlink_while_the_connection_is_down_is_not_lost() {
    let app = spawn_app_with(|c| c.sim.reconnect_backoff = Duration::from_secs(2)).await;
    let linked = app.ready_session(1, 2).await;
    app.fault(1, 2, "disconnect").await;
    app.wait_status(1, 2, "disconnected").await;
    let (s, v) = app.fault(1, 2, "logout").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.wait_status(1, 2, "logged_out").await;
    let creds = sim_link(&app, linked["session_id"].as_str().unwrap()).await;
    assert!(creds.is_none());
    // The unlink holds across a server restart.
    let app = app.restart_server().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.status(1, 2).await["status"], "logged_out");
}

#[tokio::test]
async fn a_client_that_vanishes_while_showing_a_qr_does_not_leave_it_showing() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    app.fault(1, 2, "drop_client").await;
    let st = app.wait_status(1, 2, "disconnected").await;
    assert_eq!(st["qr_code"], json!(null));
    assert!(
        st["error_message"].as_str().unwrap().contains("restart"),
        "{st}"
    );
    let (s, _) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.wait_status(1, 2, "qr_ready").await;
}

#[tokio::test]
async fn a_vanished_client_is_never_reported_ready() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    app.fault(1, 2, "drop_client").await;
    let st = app.status(1, 2).await;
    // The status waits for the next use (the notes' 503 path), but client_ready is honest.
    assert_eq!(st["status"], "ready");
    assert_eq!(st["client_ready"], false);
    let (_, v) = app.get("/api/whatsapp/info?user_id=1&place_id=2").await;
    let issues = v["data"]["health"]["issues"].to_string();
    assert!(issues.contains("not responding"), "{issues}");
}

#[tokio::test]
async fn a_client_that_dies_while_reconnecting_is_reported_gone() {
    let app = spawn_app_with(|c| c.sim.reconnect_backoff = Duration::from_millis(500)).await;
    app.ready_session(1, 2).await;
    app.fault(1, 2, "disconnect").await;
    app.fault(1, 2, "drop_client").await;
    // No reconnect will come; within a liveness check the status says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let st = loop {
        let st = app.status(1, 2).await;
        let gone = st["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("not available"));
        if gone || tokio::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(st["status"], "disconnected", "{st}");
    assert!(
        st["error_message"].as_str().unwrap().contains("restart"),
        "{st}"
    );
    let again = app.init(1, 2).await;
    assert_eq!(again["message"], "Client initialization started");
    app.wait_status(1, 2, "ready").await;
}

#[tokio::test]
async fn a_disconnect_right_after_linking_is_not_lost() {
    let app = spawn_app_with(|c| c.sim.reconnect_backoff = Duration::from_secs(2)).await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (s, _) = app.scan(1, 2).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.fault(1, 2, "disconnect").await;
    assert_eq!(s, StatusCode::OK);
    app.wait_status(1, 2, "disconnected").await;
    app.wait_status(1, 2, "ready").await;
}

// ----- What the earlier service's clients read -----

#[tokio::test]
async fn init_and_restart_answer_success_and_message_inside_data_too() {
    let app = spawn_app().await;
    let v = app.init(1, 2).await;
    assert_eq!(v["data"]["success"], true, "{v}");
    assert_eq!(v["data"]["message"], "Client initialization started", "{v}");
    assert!(v["data"]["session_id"].is_string(), "{v}");

    let again = app.init(1, 2).await;
    assert_eq!(again["data"]["success"], true, "{again}");
    assert_eq!(
        again["data"]["message"], "Session already active",
        "{again}"
    );

    let (s, v) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["success"], true, "{v}");
    assert_eq!(v["data"]["message"], "Session restart initiated", "{v}");
    assert_eq!(v["data"]["message"], v["message"], "{v}");

    // Logout keeps its shape: no item asked for more there.
    let (s, v) = app
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["data"].get("success").is_none(), "{v}");
}

#[tokio::test]
async fn status_without_a_session_also_says_no_session_found_inside_data() {
    let app = spawn_app().await;
    let st = app.status(4, 5).await;
    assert_eq!(st["message"], "No session found", "{st}");
    assert_eq!(st["status"], "not_initialized", "{st}");
    assert_eq!(st["session_exists"], false, "{st}");
    // A pair with a session answers its status, with no such sentence.
    app.init(4, 5).await;
    let st = app.status(4, 5).await;
    assert!(st.get("message").is_none(), "{st}");
}

async fn post_form(app: &TestApp, path: &str, form: &str) -> (StatusCode, serde_json::Value) {
    app.send_raw(
        reqwest::Method::POST,
        path,
        "application/x-www-form-urlencoded",
        form.to_string(),
    )
    .await
}

#[tokio::test]
async fn the_session_routes_take_form_bodies_like_json() {
    let app = spawn_app().await;
    let (s, v) = post_form(&app, "/api/whatsapp/init", "user_id=3&place_id=4").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["user_id"], 3, "{v}");
    assert_eq!(v["data"]["success"], true, "{v}");
    app.wait_status(3, 4, "qr_ready").await;

    let (s, v) = post_form(
        &app,
        "/api/whatsapp/pair-code",
        "user_id=3&place_id=4&phone_number=%2B966501234567",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["phone_number"], "+966501234567", "{v}");
    assert!(v["data"]["code"].is_string(), "{v}");

    // The same rules as JSON: a field that is not a positive integer is named.
    let (s, v) = post_form(&app, "/api/whatsapp/init", "user_id=abc&place_id=4").await;
    let msg = assert_error(s, &v, 400);
    assert!(msg.contains("user_id"), "{msg}");

    let (s, v) = app.scan(3, 4).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.wait_status(3, 4, "ready").await;
    let (s, v) = post_form(
        &app,
        "/api/whatsapp/start-contact-fetch",
        "user_id=3&place_id=4",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["success"], true, "{v}");
    app.wait_fetch_end(3, 4).await;

    let (s, v) = post_form(&app, "/api/whatsapp/restart", "user_id=3&place_id=4").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["message"], "Session restart initiated", "{v}");

    let (s, v) = post_form(&app, "/api/whatsapp/logout", "user_id=3&place_id=4").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["status"], "logged_out", "{v}");
}

/// The simulated phone's link of a session, as the database holds it.
async fn sim_link(app: &TestApp, session_id: &str) -> Option<String> {
    let db = whatsapp_manager::store::open(&app.config.database_url, &Default::default())
        .await
        .unwrap();
    let id = whatsapp_manager::domain::SessionId::from_db(session_id.to_owned());
    let link = db.sim_device(&id).await.unwrap();
    db.close().await;
    link
}
