//! `GET /api/sim/connections`: every connection a linked device opened to the simulated
//! WhatsApp, with its node and why it closed; one device, one open connection.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn connections(app: &TestApp, user: i64, place: i64) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "/api/sim/connections?user_id={user}&place_id={place}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["data"]["user_id"], user, "{body}");
    body["data"]["connections"].as_array().unwrap().clone()
}

/// Polls until the pair's connections are `want` reasons (`None`: open), oldest first.
async fn wait_reasons(app: &TestApp, user: i64, place: i64, want: &[Option<&str>]) -> Vec<Value> {
    testkit::poll(
        std::time::Duration::from_secs(20),
        &format!("connections {want:?}"),
        || async {
            let all = connections(app, user, place).await;
            let reasons: Vec<Option<&str>> = all.iter().map(|c| c["reason"].as_str()).collect();
            if reasons == want {
                Ok(all.clone())
            } else {
                Err(format!("{all:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn connections_are_recorded_while_linked_and_closed_with_why() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    assert!(
        connections(&app, 1, 2).await.is_empty(),
        "a QR code is no device's connection"
    );
    let (s, v) = app.scan(1, 2).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = app.wait_status(1, 2, "ready").await;
    let session_id = st["session_id"].as_str().unwrap().to_string();
    let open = wait_reasons(&app, 1, 2, &[None]).await;
    let c = &open[0];
    assert_eq!(c["session_id"], session_id.as_str());
    assert!(!c["node_id"].as_str().unwrap().is_empty(), "{c}");
    assert!(c["closed_at"].is_null() && c["reason"].is_null(), "{c}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(c["opened_at"].as_str().unwrap()).is_ok(),
        "{c}"
    );

    // A dropped connection is lost; the client is back on a new one.
    let (s, v) = app.fault(1, 2, "disconnect").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_reasons(&app, 1, 2, &[Some("connection_lost"), None]).await;
    app.wait_status(1, 2, "ready").await;

    // A restart stops the client first: closed, never replaced by its successor.
    let (s, v) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.wait_status(1, 2, "ready").await;
    wait_reasons(&app, 1, 2, &[Some("connection_lost"), Some("closed"), None]).await;

    let (s, v) = app
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let all = wait_reasons(
        &app,
        1,
        2,
        &[Some("connection_lost"), Some("closed"), Some("logged_out")],
    )
    .await;
    assert!(all.iter().all(|c| c["session_id"] == session_id.as_str()));
    let ids: Vec<i64> = all.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    for c in &all {
        let closed = c["closed_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(closed).is_ok(), "{c}");
    }
    // Another pair's connections are its own.
    assert!(connections(&app, 1, 3).await.is_empty());
}

#[tokio::test]
async fn a_server_stop_closes_its_connections_and_the_restored_session_opens_one() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    wait_reasons(&app, 1, 2, &[None]).await;
    let app = app.restart_server().await;
    app.wait_status(1, 2, "ready").await;
    wait_reasons(&app, 1, 2, &[Some("closed"), None]).await;
}

#[tokio::test]
async fn connections_need_valid_ids_and_the_admin_key() {
    let app = spawn_app_with_admin_key().await;
    for q in [
        "",
        "?user_id=1",
        "?user_id=0&place_id=1",
        "?user_id=x&place_id=1",
    ] {
        let (status, body) = app.get(&format!("/api/sim/connections{q}")).await;
        assert_error(status, &body, 400);
    }
    let (status, body) = app
        .post("/api/admin/keys", json!({"user_id": 1, "name": "shop"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_string();
    let (status, body) = app
        .request_as(
            Some(&key),
            reqwest::Method::GET,
            "/api/sim/connections?user_id=1&place_id=1",
            None,
        )
        .await;
    assert!(assert_error(status, &body, 403).contains("admin"), "{body}");
}
