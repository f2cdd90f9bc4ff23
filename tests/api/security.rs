//! The gate in front of the API: keyless mode refuses browsers, the key is checked before
//! routing, failed keys are throttled per address, health says little without a key, and a
//! revoked key's event streams end.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A request with exactly these headers (and `body` as text/plain when given).
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    raw_from(&app.client, app, method, path, headers, body).await
}

async fn raw_from(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = client.request(method, format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", "text/plain").body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, value, headers)
}

/// A client whose connections come from `ip` (any of 127.0.0.0/8 on Linux): another
/// client address for the server.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

// ------------------------------------------------------------ keyless mode vs browsers

#[tokio::test]
async fn keyless_a_cross_site_text_plain_post_is_refused_and_does_nothing() {
    let app = spawn_app().await;
    let evil = [("origin", "http://evil.example")];
    let pair = r#"{"user_id": 1, "place_id": 2}"#;
    for path in ["/api/whatsapp/init", "/api/whatsapp/logout"] {
        let (s, v, _) = raw(&app, Method::POST, path, &evil, Some(pair)).await;
        let msg = assert_error(s, &v, 403);
        assert!(msg.contains("cross-site"), "{msg}");
        assert!(msg.contains("http://evil.example"), "{msg}");
        assert!(msg.contains("--api-key"), "{msg}");
    }
    let (s, v, _) = raw(
        &app,
        Method::POST,
        "/api/admin/keys",
        &evil,
        Some(r#"{"user_id": 1}"#),
    )
    .await;
    assert_error(s, &v, 403);
    // `Origin: null` (a sandboxed frame, a file) is no better.
    let (s, v, _) = raw(
        &app,
        Method::POST,
        "/api/whatsapp/init",
        &[("origin", "null")],
        Some(pair),
    )
    .await;
    assert_error(s, &v, 403);
    // Another port of this machine is another origin.
    let (s, v, _) = raw(
        &app,
        Method::POST,
        "/api/whatsapp/init",
        &[("origin", "http://localhost:1")],
        Some(pair),
    )
    .await;
    assert_error(s, &v, 403);
    // Nothing was done.
    assert_eq!(app.status(1, 2).await["status"], "not_initialized");
    let (_, v) = app.get("/api/admin/keys").await;
    assert_eq!(v["data"]["pagination"]["total"], 0, "{v}");
    assert_own_origin_and_curl_like_requests_work(&app).await;
}

#[tokio::test]
async fn keyless_a_foreign_host_is_refused_as_dns_rebinding() {
    let app = spawn_app().await;
    let host = format!("evil.example:{}", port(&app));
    for (method, path) in [
        (Method::GET, "/api/whatsapp/status?user_id=1&place_id=2"),
        (Method::GET, "/api/health"),
        (Method::GET, "/api/openapi.json"),
    ] {
        let (s, v, _) = raw(&app, method, path, &[("host", &host)], None).await;
        let msg = assert_error(s, &v, 403);
        assert!(msg.contains("DNS rebinding"), "{msg}");
        assert!(msg.contains("evil.example"), "{msg}");
    }
    let (s, v, _) = raw(
        &app,
        Method::POST,
        "/api/whatsapp/init",
        &[("host", &host)],
        Some(r#"{"user_id": 1, "place_id": 2}"#),
    )
    .await;
    assert_error(s, &v, 403);
    assert_eq!(app.status(1, 2).await["status"], "not_initialized");
    assert_own_origin_and_curl_like_requests_work(&app).await;
    assert_keyed_servers_take_any_host_and_origin().await;
}

/// Programs on this machine and the server's own pages are still served.
async fn assert_own_origin_and_curl_like_requests_work(app: &TestApp) {
    let p = port(app);
    let own = format!("http://127.0.0.1:{p}");
    let named = format!("http://localhost:{p}");
    let host = format!("localhost:{p}");
    let pair = r#"{"user_id": 1, "place_id": 2}"#;
    for headers in [
        vec![],
        vec![("origin", own.as_str())],
        vec![("origin", named.as_str())],
        vec![("host", host.as_str()), ("origin", named.as_str())],
    ] {
        let (s, v, _) = raw(
            app,
            Method::POST,
            "/api/whatsapp/init",
            &headers,
            Some(pair),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{headers:?}: {v}");
        let (s, v, _) = raw(app, Method::GET, "/api/health", &headers, None).await;
        assert_eq!(s, StatusCode::OK, "{headers:?}: {v}");
    }
}

/// With an admin key none of the browser rules apply.
async fn assert_keyed_servers_take_any_host_and_origin() {
    let app = spawn_app_with_admin_key().await;
    let host = format!("api.example.com:{}", port(&app));
    let (s, v, _) = raw(
        &app,
        Method::GET,
        "/api/whatsapp/status?user_id=1&place_id=2",
        &[
            ("x-api-key", ADMIN_KEY),
            ("host", &host),
            ("origin", "https://backoffice.example.com"),
        ],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

// ------------------------------------------------------------ the key before routing

#[tokio::test]
async fn without_a_key_unknown_routes_and_wrong_methods_answer_401_with_one_404_and_405() {
    let app = spawn_app_with_admin_key().await;
    let cases = [
        (Method::GET, "/api/nope", 404),
        (Method::GET, "/api/whatsapp/nope", 404),
        (Method::GET, "/nope", 404),
        (Method::DELETE, "/api/whatsapp/init", 405),
        (Method::POST, "/api/health", 405),
        (Method::GET, "/api/admin/keys/1", 405),
    ];
    for (method, path, with_key) in cases {
        let (s, v) = app.request_as(None, method.clone(), path, None).await;
        let msg = assert_error(s, &v, 401);
        assert!(msg.contains("API key"), "{method} {path}: {msg}");
        let (s, v) = app
            .request_as(Some(ADMIN_KEY), method.clone(), path, None)
            .await;
        assert_error(s, &v, with_key);
    }
    // Health needs no key, and never says 401, even to a wrong one.
    for key in [None, Some("wrong-key")] {
        let (s, v) = app.request_as(key, Method::GET, "/api/health", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

// ------------------------------------------------------------ health

fn assert_minimal(v: &Value) {
    let d = &v["data"];
    assert_eq!(d["status"], "healthy", "{v}");
    assert_eq!(d["database"], "connected", "{v}");
    assert_eq!(
        d["features"]["background_contact_fetching"], "ON DEMAND",
        "{v}"
    );
    for hidden in ["active_sessions", "engine", "uptime_seconds", "version"] {
        assert!(d.get(hidden).is_none(), "{hidden} shown without a key: {v}");
    }
}

fn assert_full(v: &Value) {
    let d = &v["data"];
    assert_eq!(d["status"], "healthy", "{v}");
    assert_eq!(
        d["features"]["background_contact_fetching"], "ON DEMAND",
        "{v}"
    );
    assert!(d["active_sessions"].is_u64(), "{v}");
    assert!(d["uptime_seconds"].is_u64(), "{v}");
    assert_eq!(d["engine"], "sim", "{v}");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"), "{v}");
}

#[tokio::test]
async fn health_without_a_valid_key_shows_no_counts_engine_or_version() {
    let app = spawn_app_with_admin_key().await;
    app.init(1, 2).await;
    for key in [None, Some("wrong-key"), Some("wam_0011223344ff_nope")] {
        let (s, v) = app.request_as(key, Method::GET, "/api/health", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_minimal(&v);
    }
    let (s, v) = app.get("/api/health").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_full(&v);
    assert_eq!(v["data"]["active_sessions"], 1, "{v}");
    let (tenant, _) = app.create_key(json!({"user_id": 9})).await;
    let (_, v) = app
        .request_as(Some(&tenant), Method::GET, "/api/health", None)
        .await;
    assert_full(&v);
    // Without an admin key the server is this machine's own: everything is shown.
    let open = spawn_app().await;
    let (_, v) = open.get("/api/health").await;
    assert_full(&v);
}

// ------------------------------------------------------------ throttling failed keys

#[tokio::test]
async fn the_21st_failed_key_from_one_address_is_429_but_good_keys_and_other_addresses_pass() {
    let app = spawn_app_with_admin_key().await;
    let status = "/api/whatsapp/status?user_id=1&place_id=2";
    for i in 0..20 {
        let key = if i % 2 == 0 { None } else { Some("wrong-key") };
        let (s, v) = app.request_as(key, Method::GET, status, None).await;
        assert_error(s, &v, 401);
    }
    let (s, v, headers) = raw(&app, Method::GET, status, &[("x-api-key", "wrong")], None).await;
    let msg = assert_error(s, &v, 429);
    assert!(msg.contains("failed API key checks"), "{msg}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    // A missing key is a failure too, and an unknown route tells nothing more.
    let (s, v) = app.request_as(None, Method::GET, "/api/nope", None).await;
    assert_error(s, &v, 429);
    // The right key from the same address is neither slowed nor refused.
    let (s, v) = app.get(status).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (tenant, _) = app.create_key(json!({"user_id": 1})).await;
    let (s, _) = app
        .request_as(Some(&tenant), Method::GET, status, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // Health is not gated.
    let (s, _) = app
        .request_as(Some("wrong"), Method::GET, "/api/health", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // Another address has its own allowance.
    let other = client_from("127.0.0.2");
    let (s, v, _) = raw_from(&other, &app, Method::GET, status, &[], None).await;
    assert_error(s, &v, 401);
    // A minute later the address starts afresh.
    app.clock.advance(chrono::Duration::seconds(61));
    let (s, v) = app.request_as(None, Method::GET, status, None).await;
    assert_error(s, &v, 401);
}

// ------------------------------------------------------------ revocation

#[tokio::test]
async fn revoking_a_key_ends_its_open_event_streams_at_once_and_no_other() {
    let app = spawn_app_with_admin_key().await;
    let (doomed, created) = app.create_key(json!({"user_id": 4})).await;
    let (kept, _) = app.create_key(json!({"user_id": 4})).await;
    let open = |key: String| {
        let client = app.client.clone();
        let url = format!("{}/api/whatsapp/events?user_id=4", app.base);
        async move {
            let res = client
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        }
    };
    let mut doomed_stream = open(doomed.clone()).await;
    let mut kept_stream = open(kept).await;
    // Both are live.
    app.init(4, 1).await;
    read_until(&mut doomed_stream, "session.status").await;
    read_until(&mut kept_stream, "session.status").await;

    let id = created["id"].as_i64().unwrap();
    let (s, v) = app
        .request(Method::DELETE, &format!("/api/admin/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The stream ends (the promise is within a second; the bound here leaves room for a
    // loaded machine, and without the change the stream never ends).
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = doomed_stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the revoked key's stream is still open");
    // The other key's stream still gets events.
    app.post("/api/whatsapp/logout", json!({"user_id": 4, "place_id": 1}))
        .await;
    read_until(&mut kept_stream, "logged_out").await;
    let (s, v) = app
        .request_as(
            Some(&doomed),
            Method::GET,
            "/api/whatsapp/events?user_id=4",
            None,
        )
        .await;
    assert_error(s, &v, 401);
}
