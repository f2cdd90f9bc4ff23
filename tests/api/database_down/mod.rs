//! A database that stops answering: health says 503, other routes a 500 envelope, no panic.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use whatsapp_manager::auth::{AdminKeyHash, ApiKeys};
use whatsapp_manager::clock::SystemClock;
use whatsapp_manager::engine::sim::{SimConfig, SimNetwork};
use whatsapp_manager::http::{AppState, router};
use whatsapp_manager::session::SessionManager;
use whatsapp_manager::store::*;

mod store;

use store::DownStore;

async fn call(app: axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-api-key", "admin-key")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn health_is_503_and_other_routes_500_in_the_envelope_when_the_database_is_down() {
    let clock = Arc::new(SystemClock);
    let store: Db = Arc::new(DownStore);
    // The outbox, the event log and the simulated phones live in a database of their own
    // here; this test is about the session and contact routes.
    let side = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let net = SimNetwork::new(SimConfig::default(), Arc::new(side.clone()), clock.clone());
    let events = whatsapp_manager::events::EventBus::new(Arc::new(side.clone()), clock.clone());
    let manager = SessionManager::new(Arc::new(net.clone()), store.clone(), clock.clone(), 4);
    let outbox = whatsapp_manager::messaging::Outbox::new(
        Arc::new(side.clone()),
        Arc::new(side),
        manager.clone(),
        events.clone(),
        clock.clone(),
        whatsapp_manager::messaging::pacing::Pacing::default(),
        whatsapp_manager::messaging::image::Images::new(&Default::default()),
    );
    let state = AppState {
        manager,
        outbox,
        events,
        keys: ApiKeys::new(
            Some(AdminKeyHash::of("admin-key")),
            Arc::new(DownStore),
            clock.clone(),
        ),
        store,
        clock,
        sim: Some(net),
        engine: "sim",
        started: Instant::now(),
        request_timeout: std::time::Duration::from_secs(5),
        outbound: Default::default(),
        identity: whatsapp_manager::cluster::NodeIdentity {
            node_id: "down:1".into(),
            advertise_url: "http://127.0.0.1:1".into(),
        },
        cluster: None,
    };
    let app = router(state);

    let (s, v) = call(app.clone(), "GET", "/api/health", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["status_code"], 503);
    assert_eq!(v["message"], "Database is unreachable");

    for (method, uri, body) in [
        ("GET", "/api/whatsapp/status?user_id=1&place_id=2", ""),
        (
            "POST",
            "/api/whatsapp/init",
            r#"{"user_id":1,"place_id":2}"#,
        ),
        (
            "POST",
            "/api/whatsapp/start-contact-fetch",
            r#"{"user_id":1,"place_id":2}"#,
        ),
        ("GET", "/api/whatsapp/groups?user_id=1&place_id=2", ""),
    ] {
        let (s, v) = call(app.clone(), method, uri, body).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {v}");
        assert_eq!(
            v["message"], "Internal server error",
            "no internals leak: {v}"
        );
        assert_eq!(v["status_code"], 500);
    }
    // Input is still validated first: a client mistake stays a 400.
    let (s, _) = call(
        app.clone(),
        "GET",
        "/api/whatsapp/status?user_id=x&place_id=2",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A tenant key cannot be checked without the database: an error, never a way in.
    let req = Request::builder()
        .uri("/api/whatsapp/status?user_id=1&place_id=2")
        .header("x-api-key", "wam_0123456789ab_secret")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
