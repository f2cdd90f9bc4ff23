//! Quotas: sessions per user (server-wide and per key) and requests per second per key.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whatsapp_manager::auth::limits::Rate;

use crate::helpers::*;

fn pair(user: i64, place: i64) -> Value {
    json!({"user_id": user, "place_id": place})
}

async fn init_as(app: &TestApp, key: Option<&str>, user: i64, place: i64) -> (StatusCode, Value) {
    app.request_as(
        key,
        Method::POST,
        "/api/whatsapp/init",
        Some(pair(user, place)),
    )
    .await
}

/// `n` inits of `user` at places `first..first + n`, all at once; their statuses and bodies.
async fn racing_inits(app: &TestApp, user: i64, first: i64, n: i64) -> Vec<(StatusCode, Value)> {
    futures::future::join_all((first..first + n).map(|place| init_status(app, user, place))).await
}

async fn init_status(app: &TestApp, user: i64, place: i64) -> (StatusCode, Value) {
    app.post("/api/whatsapp/init", pair(user, place)).await
}

#[tokio::test]
async fn by_default_a_user_holds_100_sessions_and_the_101st_pair_is_429() {
    let app = spawn_app().await;
    for batch in 0..4 {
        for (s, v) in racing_inits(&app, 1, 1 + batch * 25, 25).await {
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }
    let (s, v) = init_status(&app, 1, 101).await;
    let msg = assert_error(s, &v, 429);
    assert_eq!(
        msg,
        "user_id 1 already has 100 WhatsApp sessions, the most allowed (max sessions per user: \
         100); log one out to link another"
    );
    assert_eq!(app.status(1, 101).await["status"], "not_initialized");
    // A pair already counted is never refused; another user has its own quota.
    let (s, v) = init_status(&app, 1, 1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = init_status(&app, 2, 1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn racing_inits_never_end_above_the_limit_and_a_logout_frees_a_slot() {
    let app = spawn_app_with(|c| c.limits.max_sessions_per_user = Some(5)).await;
    let results = racing_inits(&app, 1, 1, 30).await;
    let ok: Vec<i64> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, v)| v["data"]["place_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ok.len(), 5, "{results:?}");
    for (s, v) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        let msg = assert_error(*s, v, 429);
        assert!(
            msg.contains("user_id 1 already has 5 WhatsApp sessions"),
            "{msg}"
        );
    }
    let (_, v) = app.get("/api/whatsapp/stats").await;
    assert_eq!(v["data"]["total_sessions"], 5, "{v}");

    // Re-init of a counted pair: fine, at the limit.
    let (s, v) = init_status(&app, 1, ok[0]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Session already active");
    // A logout frees one slot, for exactly one new pair.
    let (s, v) = app.post("/api/whatsapp/logout", pair(1, ok[0])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let spare: Vec<i64> = (1..=30).filter(|p| !ok.contains(p)).collect();
    let (s, v) = init_status(&app, 1, spare[0]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = init_status(&app, 1, spare[1]).await;
    assert_error(s, &v, 429);
    // Bringing the logged-out pair back, by init or by restart, is one more session too.
    let (s, v) = init_status(&app, 1, ok[0]).await;
    assert_error(s, &v, 429);
    let (s, v) = app.post("/api/whatsapp/restart", pair(1, ok[0])).await;
    assert_error(s, &v, 429);
    assert_eq!(app.status(1, ok[0]).await["status"], "logged_out");
    // With a slot free again, the restart brings it back.
    let (s, v) = app.post("/api/whatsapp/logout", pair(1, spare[0])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.post("/api/whatsapp/restart", pair(1, ok[0])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.wait_status(1, ok[0], "qr_ready").await;
    let (s, v) = init_status(&app, 1, spare[1]).await;
    assert_error(s, &v, 429);
}

#[tokio::test]
async fn zero_means_no_limit_and_a_keys_own_quota_replaces_the_servers() {
    let app = spawn_app_with_admin_key_and(|c| c.limits.max_sessions_per_user = Some(1)).await;
    let (three, shown) = app
        .create_key(json!({"user_id": 3, "max_sessions": 3}))
        .await;
    assert_eq!(shown["max_sessions"], 3, "{shown}");
    assert_eq!(shown["rate_limit"], Value::Null, "{shown}");
    assert_eq!(shown["rate_limit_burst"], Value::Null, "{shown}");
    let (unlimited, _) = app
        .create_key(json!({"user_id": 4, "max_sessions": 0}))
        .await;
    for place in 1..=3 {
        let (s, v) = init_as(&app, Some(&three), 3, place).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = init_as(&app, Some(&three), 3, 4).await;
    assert!(assert_error(s, &v, 429).contains("max sessions per user: 3"));
    // The admin key goes by the server's quota (1), which user 3 is past.
    let (s, v) = init_as(&app, Some(ADMIN_KEY), 3, 5).await;
    assert!(assert_error(s, &v, 429).contains("max sessions per user: 1"));
    for place in 1..=4 {
        let (s, v) = init_as(&app, Some(&unlimited), 4, place).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // The server-wide 0 is no limit as well.
    let open = spawn_app_with(|c| c.limits.max_sessions_per_user = None).await;
    for (s, v) in racing_inits(&open, 1, 1, 3).await {
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

#[tokio::test]
async fn key_quotas_are_validated_stored_and_listed() {
    let app = spawn_app_with_admin_key().await;
    for (body, field) in [
        (json!({"user_id": 1, "max_sessions": -1}), "max_sessions"),
        (json!({"user_id": 1, "max_sessions": 1.5}), "max_sessions"),
        (json!({"user_id": 1, "max_sessions": "3x"}), "max_sessions"),
        (
            json!({"user_id": 1, "max_sessions": 1_000_001}),
            "max_sessions",
        ),
        (json!({"user_id": 1, "rate_limit": 0}), "rate_limit"),
        (json!({"user_id": 1, "rate_limit": -2.5}), "rate_limit"),
        (json!({"user_id": 1, "rate_limit": "fast"}), "rate_limit"),
        (
            json!({"user_id": 1, "rate_limit_burst": 0}),
            "rate_limit_burst",
        ),
        (
            json!({"user_id": 1, "rate_limit_burst": 2.5}),
            "rate_limit_burst",
        ),
    ] {
        let (s, v) = app.post("/api/admin/keys", body.clone()).await;
        assert!(assert_error(s, &v, 400).contains(field), "{body}: {v}");
    }
    let (_, v) = app.get("/api/admin/keys").await;
    assert_eq!(v["data"]["pagination"]["total"], 0, "{v}");
    let (_, created) = app
        .create_key(
            json!({"user_id": 1, "max_sessions": 7, "rate_limit": 2.5, "rate_limit_burst": 9}),
        )
        .await;
    app.create_key(json!({"user_id": 2, "max_sessions": null}))
        .await;
    let (_, v) = app.get("/api/admin/keys").await;
    let keys = v["data"]["keys"].as_array().unwrap();
    assert_eq!(keys[0]["id"], created["id"]);
    assert_eq!(keys[0]["max_sessions"], 7);
    assert_eq!(keys[0]["rate_limit"], 2.5);
    assert_eq!(keys[0]["rate_limit_burst"], 9);
    for field in ["max_sessions", "rate_limit", "rate_limit_burst"] {
        assert_eq!(keys[1][field], Value::Null, "{field}: {v}");
    }
}

// ------------------------------------------------------------ requests per second

/// Slow enough that a loaded machine never refills a request between two calls of a test.
const SLOW: f64 = 0.05;

#[tokio::test]
async fn the_rate_limit_lets_a_burst_through_then_429_until_it_refills() {
    let app = spawn_app_with_admin_key_and(|c| {
        c.limits.rate = Some(Rate {
            per_second: SLOW,
            burst: 3,
        })
    })
    .await;
    let status = "/api/whatsapp/status?user_id=1&place_id=2";
    for _ in 0..3 {
        let (s, v) = app.get(status).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let res = app
        .client
        .get(format!("{}{status}", app.base))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After: {retry}");
    let v: Value = res.json().await.unwrap();
    let msg = assert_error(StatusCode::TOO_MANY_REQUESTS, &v, 429);
    assert!(msg.contains("Rate limit"), "{msg}");
    // Health is exempt.
    for _ in 0..5 {
        let (s, _) = app.get("/api/health").await;
        assert_eq!(s, StatusCode::OK);
    }
    // One interval later, one more request; not two.
    app.clock.advance(chrono::Duration::seconds(20));
    let (s, v) = app.get(status).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.get(status).await;
    assert_error(s, &v, 429);
}

#[tokio::test]
async fn each_tenant_key_has_its_own_bucket_and_its_own_rate() {
    let app = spawn_app_with_admin_key().await;
    let (slow, shown) = app
        .create_key(json!({"user_id": 1, "rate_limit": SLOW, "rate_limit_burst": 2}))
        .await;
    assert_eq!(shown["rate_limit"], SLOW);
    assert_eq!(shown["rate_limit_burst"], 2);
    let (free, _) = app.create_key(json!({"user_id": 1})).await;
    let status = "/api/whatsapp/status?user_id=1&place_id=2";
    for _ in 0..2 {
        let (s, _) = app.request_as(Some(&slow), Method::GET, status, None).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, v) = app.request_as(Some(&slow), Method::GET, status, None).await;
    assert_error(s, &v, 429);
    // The server has no rate limit: the other key and the admin key are not limited.
    for _ in 0..10 {
        let (s, _) = app.request_as(Some(&free), Method::GET, status, None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = app.get(status).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test]
async fn keyless_each_client_address_has_its_own_bucket() {
    let app = spawn_app_with(|c| {
        c.limits.rate = Some(Rate {
            per_second: SLOW,
            burst: 1,
        })
    })
    .await;
    let url = format!("{}/api/whatsapp/status?user_id=1&place_id=2", app.base);
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<IpAddr>().unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (a, b) = (from("127.0.0.1"), from("127.0.0.3"));
    assert_eq!(a.get(&url).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        a.get(&url).send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(b.get(&url).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_key_is_created_from_a_form_with_its_numbers_as_text() {
    let app = spawn_app_with_admin_key().await;
    let form = "application/x-www-form-urlencoded";
    let (s, v) = app
        .send_raw(
            reqwest::Method::POST,
            "/api/admin/keys",
            form,
            "user_id=3&name=Shop+POS&max_sessions=5&rate_limit=2.5&rate_limit_burst=9",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["data"]["user_id"], 3, "{v}");
    assert_eq!(v["data"]["name"], "Shop POS", "{v}");
    assert_eq!(v["data"]["max_sessions"], 5, "{v}");
    assert_eq!(v["data"]["rate_limit"], 2.5, "{v}");
    assert_eq!(v["data"]["rate_limit_burst"], 9, "{v}");
    // The same bounds as for JSON numbers, and the same messages.
    for (body, field) in [
        ("user_id=3&max_sessions=1000001", "max_sessions"),
        ("user_id=3&max_sessions=-1", "max_sessions"),
        ("user_id=3&max_sessions=5x", "max_sessions"),
        ("user_id=3&rate_limit=0", "rate_limit"),
        ("user_id=3&rate_limit=inf", "rate_limit"),
        ("user_id=3&rate_limit=1e3", "rate_limit"),
        ("user_id=3&rate_limit_burst=0", "rate_limit_burst"),
        ("user_id=3&rate_limit_burst=2.5", "rate_limit_burst"),
        ("user_id=x", "user_id"),
    ] {
        let (s, v) = app
            .send_raw(reqwest::Method::POST, "/api/admin/keys", form, body)
            .await;
        assert!(assert_error(s, &v, 400).contains(field), "{body}: {v}");
    }
    // JSON takes the same text.
    let (s, v) = app
        .post(
            "/api/admin/keys",
            json!({"user_id": "4", "max_sessions": "2", "rate_limit": "0.5"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["data"]["max_sessions"], 2, "{v}");
    assert_eq!(v["data"]["rate_limit"], 0.5, "{v}");
}
