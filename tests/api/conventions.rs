//! "Conventions": envelopes, id validation, unknown routes and bodies, health, stats,
//! session ids, and the no-session answers of "Session lifecycle" and "Contact fetch on demand".

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const NO_SESSION: &str = "No WhatsApp session found. Please initialize a session first.";

/// Routes that take `user_id` and `place_id` in the JSON body.
const BODY_ROUTES: [&str; 4] = [
    "/api/whatsapp/init",
    "/api/whatsapp/start-contact-fetch",
    "/api/whatsapp/restart",
    "/api/whatsapp/logout",
];

/// Routes that take `user_id` and `place_id` in the query string.
const QUERY_ROUTES: [&str; 4] = [
    "/api/whatsapp/status",
    "/api/whatsapp/info",
    "/api/whatsapp/contacts/progress",
    "/api/whatsapp/groups",
];

/// Bad ids as raw JSON text; `None` leaves the field out.
const BAD_JSON_IDS: [Option<&str>; 9] = [
    None,
    Some("0"),
    Some("-1"),
    Some("\"12abc\""),
    Some("1.5"),
    Some("9223372036854775808"),
    Some("null"),
    Some("true"),
    Some("[]"),
];

/// Bad ids as query-string values; `None` leaves the parameter out.
const BAD_QUERY_IDS: [Option<&str>; 7] = [
    None,
    Some(""),
    Some("abc"),
    Some("1.5"),
    Some("-1"),
    Some("0"),
    Some("99999999999999999999"),
];

const ALL_STATUSES: [&str; 8] = [
    "initializing",
    "qr_ready",
    "authenticated",
    "ready",
    "fetching_contacts",
    "disconnected",
    "logged_out",
    "error",
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Asserts an RFC 3339 timestamp within a minute of the real now.
fn assert_recent_rfc3339(ts: &Value) {
    let s = ts
        .as_str()
        .unwrap_or_else(|| panic!("timestamp not a string: {ts}"));
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("timestamp {s:?} is not RFC 3339: {e}"));
    let drift = (chrono::Utc::now().timestamp_millis() - t.timestamp_millis()).abs();
    assert!(drift < 60_000, "timestamp {s} is {drift} ms away from now");
}

/// A request whose answer we want with its headers and raw text.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    (status, headers, text)
}

/// Asserts the full error envelope (JSON content type, exact keys) and returns the message.
fn assert_error_envelope(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    text: &str,
    want: u16,
) -> String {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} for {status}: {text}"
    );
    let body: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let message = assert_error(status, &body, want);
    assert_eq!(
        keys(&body),
        key_set(&["success", "message", "status_code", "timestamp"]),
        "{body}"
    );
    assert_recent_rfc3339(&body["timestamp"]);
    assert!(!message.trim().is_empty(), "{body}");
    message
}

fn pair_body(user: Option<&str>, place: Option<&str>) -> String {
    let mut fields = Vec::new();
    if let Some(u) = user {
        fields.push(format!("\"user_id\": {u}"));
    }
    if let Some(p) = place {
        fields.push(format!("\"place_id\": {p}"));
    }
    format!("{{{}}}", fields.join(", "))
}

fn pair_query(user: Option<&str>, place: Option<&str>) -> String {
    let mut fields = Vec::new();
    if let Some(u) = user {
        fields.push(format!("user_id={u}"));
    }
    if let Some(p) = place {
        fields.push(format!("place_id={p}"));
    }
    fields.join("&")
}

async fn assert_no_session_was_created(app: &TestApp) {
    let (s, v) = app.get("/api/whatsapp/stats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["live_clients"], 0, "{v}");
    for st in ALL_STATUSES {
        assert_eq!(v["data"]["sessions_by_status"][st], 0, "{st}: {v}");
    }
}

// ---------------------------------------------------------------- envelopes

#[tokio::test]
async fn success_answers_use_the_success_envelope_with_an_rfc3339_timestamp() {
    let app = spawn_app().await;
    for (s, v) in [
        app.get("/api/health").await,
        app.post("/api/whatsapp/init", json!({"user_id": 1, "place_id": 2}))
            .await,
        app.get("/api/whatsapp/status?user_id=1&place_id=2").await,
        app.get("/api/whatsapp/stats").await,
    ] {
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            keys(&v),
            key_set(&["success", "data", "message", "timestamp"]),
            "{v}"
        );
        assert_eq!(v["success"], true, "{v}");
        assert!(!v["data"].is_null(), "{v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
            "{v}"
        );
        assert_recent_rfc3339(&v["timestamp"]);
    }
}

#[tokio::test]
async fn errors_use_the_error_envelope_whose_status_code_equals_the_http_status() {
    let app = spawn_app().await;
    let cases: [(Method, &str, Option<&str>, u16); 4] = [
        (Method::GET, "/api/whatsapp/status?place_id=1", None, 400),
        (
            Method::GET,
            "/api/whatsapp/info?user_id=1&place_id=1",
            None,
            404,
        ),
        (Method::GET, "/api/whatsapp/nope", None, 404),
        (
            Method::POST,
            "/api/whatsapp/init",
            Some("{\"user_id\": 1,"),
            400,
        ),
    ];
    for (method, path, body, want) in cases {
        let (s, h, text) = raw(
            &app,
            method.clone(),
            path,
            body.map(|_| "application/json"),
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await;
        let msg = assert_error_envelope(s, &h, &text, want);
        for leak in ["panicked", "stack backtrace", "src/", ".rs:", "<html"] {
            assert!(!msg.contains(leak), "{method} {path}: {msg}");
        }
    }
}

// ---------------------------------------------------------------- ids

#[tokio::test]
async fn bad_ids_in_json_bodies_are_rejected_with_400_naming_the_field() {
    let app = spawn_app().await;
    for route in BODY_ROUTES {
        for bad in BAD_JSON_IDS {
            for field in ["user_id", "place_id"] {
                let body = if field == "user_id" {
                    pair_body(bad, Some("1"))
                } else {
                    pair_body(Some("1"), bad)
                };
                let (s, v) = app
                    .send_raw(Method::POST, route, "application/json", body.clone())
                    .await;
                let msg = assert_error(s, &v, 400);
                assert!(
                    msg.contains(field),
                    "POST {route} {body}: message does not name {field}: {msg}"
                );
            }
        }
    }
    assert_no_session_was_created(&app).await;
}

#[tokio::test]
async fn bad_ids_in_query_strings_are_rejected_with_400_naming_the_field() {
    let app = spawn_app().await;
    for route in QUERY_ROUTES {
        for bad in BAD_QUERY_IDS {
            for field in ["user_id", "place_id"] {
                let query = if field == "user_id" {
                    pair_query(bad, Some("1"))
                } else {
                    pair_query(Some("1"), bad)
                };
                let path = format!("{route}?{query}");
                let (s, v) = app.get(&path).await;
                let msg = assert_error(s, &v, 400);
                assert!(
                    msg.contains(field),
                    "GET {path}: message does not name {field}: {msg}"
                );
            }
        }
    }
    assert_no_session_was_created(&app).await;
}

#[tokio::test]
async fn init_accepts_ids_written_as_digit_strings() {
    let app = spawn_app().await;
    let (s, v) = app
        .post(
            "/api/whatsapp/init",
            json!({"user_id": "123", "place_id": "456"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true, "{v}");
    let id = v["data"]["session_id"].as_str().expect("session_id");
    assert!(id.starts_with("session_123_456_"), "{id}");
    let st = app.status(123, 456).await;
    assert_eq!(st["session_exists"], true, "{st}");
    assert_eq!(st["session_id"], id, "{st}");
}

// ---------------------------------------------------------------- routes and bodies

#[tokio::test]
async fn unknown_routes_answer_404_in_the_error_envelope() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/api/whatsapp/nope"),
        (Method::GET, "/nothing"),
        (Method::POST, "/api/whatsapp/nope"),
    ] {
        let (s, h, text) = raw(&app, method, path, None, None).await;
        assert_error_envelope(s, &h, &text, 404);
    }
}

#[tokio::test]
async fn wrong_methods_answer_405_in_the_error_envelope() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/api/whatsapp/init"),
        (Method::DELETE, "/api/whatsapp/status?user_id=1&place_id=1"),
    ] {
        let (s, h, text) = raw(&app, method, path, None, None).await;
        assert_error_envelope(s, &h, &text, 405);
    }
}

#[tokio::test]
async fn malformed_json_answers_400_mentioning_json() {
    let app = spawn_app().await;
    let (s, h, text) = raw(
        &app,
        Method::POST,
        "/api/whatsapp/init",
        Some("application/json"),
        Some(b"{\"user_id\": 1,".to_vec()),
    )
    .await;
    let msg = assert_error_envelope(s, &h, &text, 400);
    assert!(msg.to_lowercase().contains("json"), "{msg}");
    assert_no_session_was_created(&app).await;
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_answers_400() {
    let app = spawn_app().await;
    for body in ["[1,2]", "\"x\"", "42", "null"] {
        let (s, h, text) = raw(
            &app,
            Method::POST,
            "/api/whatsapp/init",
            Some("application/json"),
            Some(body.as_bytes().to_vec()),
        )
        .await;
        assert_error_envelope(s, &h, &text, 400);
    }
}

#[tokio::test]
async fn an_empty_body_on_init_answers_400_naming_user_id() {
    let app = spawn_app().await;
    for ct in [Some("application/json"), None] {
        let (s, h, text) = raw(
            &app,
            Method::POST,
            "/api/whatsapp/init",
            ct,
            Some(Vec::new()),
        )
        .await;
        let msg = assert_error_envelope(s, &h, &text, 400);
        assert!(msg.contains("user_id"), "{msg}");
    }
}

#[tokio::test]
async fn a_body_over_64_kibibytes_answers_413_in_the_error_envelope_and_does_nothing() {
    let app = spawn_app().await;
    let pad = "x".repeat(64 * 1024);
    for path in [
        "/api/whatsapp/init",
        "/api/whatsapp/start-contact-fetch",
        "/api/admin/keys",
    ] {
        let body = json!({"user_id": 1, "place_id": 1, "pad": pad}).to_string();
        let (s, h, text) = raw(
            &app,
            Method::POST,
            path,
            Some("application/json"),
            Some(body.into_bytes()),
        )
        .await;
        assert_error_envelope(s, &h, &text, 413);
    }
    assert_no_session_was_created(&app).await;
    let (_, v) = app.get("/api/admin/keys").await;
    assert_eq!(
        v["data"]["pagination"]["total"], 0,
        "no key was created: {v}"
    );
    // Just under the limit is read (and judged on its content).
    let body = json!({"user_id": 1, "place_id": 1, "pad": "x".repeat(60 * 1024)});
    let (s, v) = app.post("/api/whatsapp/init", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn valid_json_sent_as_text_plain_is_still_accepted() {
    let app = spawn_app().await;
    let (s, v) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/init",
            "text/plain",
            r#"{"user_id": 7, "place_id": 8}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert!(
        v["data"]["session_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("session_7_8_")),
        "{v}"
    );
}

// ---------------------------------------------------------------- health, stats

#[tokio::test]
async fn health_reports_status_version_uptime_sessions_database_and_features() {
    let app = spawn_app().await;
    let (s, v) = app.get("/api/health").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true, "{v}");
    let d = &v["data"];
    assert!(d["status"].as_str().is_some_and(|x| !x.is_empty()), "{v}");
    assert!(d["version"].as_str().is_some_and(|x| !x.is_empty()), "{v}");
    assert!(d["uptime_seconds"].is_u64(), "{v}");
    assert!(d["active_sessions"].is_u64(), "{v}");
    assert!(!d["database"].is_null(), "{v}");
    assert_eq!(
        d["features"]["background_contact_fetching"], "ON DEMAND",
        "{v}"
    );
    assert_eq!(d["features"]["error_handling"], true, "{v}");
    assert_eq!(d["features"]["session_recovery"], true, "{v}");
}

#[tokio::test]
async fn stats_report_live_clients_sessions_by_status_memory_and_uptime() {
    let app = spawn_app().await;
    let (s, v) = app.get("/api/whatsapp/stats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["live_clients"], 0, "{v}");
    let by = d["sessions_by_status"]
        .as_object()
        .unwrap_or_else(|| panic!("sessions_by_status is not an object: {v}"));
    for st in ALL_STATUSES {
        assert_eq!(by.get(st), Some(&json!(0)), "{st}: {v}");
    }
    assert!(d["memory"].is_object(), "{v}");
    assert!(d["uptime_seconds"].is_u64(), "{v}");

    app.ready_session(3, 4).await;
    let (s, v) = app.get("/api/whatsapp/stats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["live_clients"], 1, "{v}");
    assert_eq!(d["sessions_by_status"]["ready"], 1, "{v}");
    for st in ALL_STATUSES.iter().filter(|s| **s != "ready") {
        assert_eq!(d["sessions_by_status"][*st], 0, "{st}: {v}");
    }
}

// ---------------------------------------------------------------- sessions

#[tokio::test]
async fn session_ids_are_session_user_place_and_unix_milliseconds() {
    let app = spawn_app().await;
    let v = app.init(41, 42).await;
    let id = v["data"]["session_id"].as_str().expect("session_id");
    let parts: Vec<&str> = id.split('_').collect();
    assert_eq!(parts.len(), 4, "{id}");
    assert_eq!(parts[0], "session", "{id}");
    assert_eq!(parts[1], "41", "{id}");
    assert_eq!(parts[2], "42", "{id}");
    assert!(
        !parts[3].is_empty() && parts[3].bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    let ms: i64 = parts[3].parse().expect("unix ms");
    let drift = (chrono::Utc::now().timestamp_millis() - ms).abs();
    assert!(drift < 60_000, "{id}: {drift} ms away from now");
}

#[tokio::test]
async fn status_without_a_session_is_200_not_initialized() {
    let app = spawn_app().await;
    let (s, v) = app.get("/api/whatsapp/status?user_id=9&place_id=9").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["status"], "not_initialized", "{v}");
    assert_eq!(v["data"]["session_exists"], false, "{v}");
}

#[tokio::test]
async fn info_progress_and_fetch_without_a_session_are_404_asking_to_initialize() {
    let app = spawn_app().await;
    // Another pair's session must not count.
    app.init(1, 1).await;
    for path in [
        "/api/whatsapp/info?user_id=9&place_id=9",
        "/api/whatsapp/contacts/progress?user_id=9&place_id=9",
    ] {
        let (s, v) = app.get(path).await;
        let msg = assert_error(s, &v, 404);
        assert_eq!(msg, NO_SESSION, "GET {path}");
    }
    let (s, v) = app.start_fetch(9, 9).await;
    let msg = assert_error(s, &v, 404);
    assert_eq!(msg, NO_SESSION, "POST start-contact-fetch");
}

// ---------------------------------------------------------------- sim controls

#[tokio::test]
async fn sim_fault_with_an_unknown_kind_is_400_naming_the_allowed_kinds() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    let (s, v) = app.fault(1, 2, "meteor").await;
    let msg = assert_error(s, &v, 400);
    for kind in [
        "drop_client",
        "disconnect",
        "logout",
        "fail_fetch",
        "slow_fetch",
    ] {
        assert!(msg.contains(kind), "{msg}");
    }
}

#[tokio::test]
async fn sim_fault_without_a_kind_is_400() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    let (s, v) = app
        .post("/api/sim/fault", json!({"user_id": 1, "place_id": 2}))
        .await;
    let msg = assert_error(s, &v, 400);
    assert!(msg.contains("kind"), "{msg}");
}

#[tokio::test]
async fn sim_fault_for_a_pair_without_a_session_is_404() {
    let app = spawn_app().await;
    let (s, v) = app.fault(5, 6, "disconnect").await;
    assert_error(s, &v, 404);
}

#[tokio::test]
async fn sim_scan_without_a_session_is_400() {
    let app = spawn_app().await;
    let (s, v) = app.scan(5, 6).await;
    assert_error(s, &v, 400);
}

#[tokio::test]
async fn sim_phonebook_without_entries_is_400() {
    let app = spawn_app().await;
    let (s, v) = app
        .put(
            "/api/sim/phonebook",
            json!({"user_id": 1, "place_id": 2, "me": "966512345678@s.whatsapp.net"}),
        )
        .await;
    let msg = assert_error(s, &v, 400);
    assert!(msg.contains("entries"), "{msg}");
}

#[tokio::test]
async fn sim_phonebook_with_a_bad_user_id_is_400_naming_user_id() {
    let app = spawn_app().await;
    let (s, v) = app
        .put(
            "/api/sim/phonebook",
            json!({"user_id": "12abc", "place_id": 2, "entries": []}),
        )
        .await;
    let msg = assert_error(s, &v, 400);
    assert!(msg.contains("user_id"), "{msg}");
}

#[tokio::test]
async fn sim_phonebook_accepts_bodies_far_over_one_mebibyte() {
    let app = spawn_app().await;
    let entries: Vec<Value> = (0..50_000)
        .map(|i| {
            person(
                &format!("9665{:08}", i),
                Some(&format!("Customer number {i} with a long name")),
                Some(1_700_000_000 + i),
            )
        })
        .collect();
    let body = json!({"user_id": 1, "place_id": 2, "me": "966512345678@s.whatsapp.net",
                      "push_name": "Big Shop", "entries": entries});
    let size = body.to_string().len();
    assert!(size > 4 * 1024 * 1024, "body is only {size} bytes");
    let (s, v) = app.put("/api/sim/phonebook", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["entries"], 50_000, "{v}");
}

#[tokio::test]
async fn a_request_that_times_out_answers_408_in_the_error_envelope() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|c| c.request_timeout = std::time::Duration::from_millis(300)).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Promise 100 bytes of body and send one: the handler waits for the rest.
    sock.write_all(
        b"POST /api/whatsapp/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\nConnection: close\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["status_code"], 408);
}
