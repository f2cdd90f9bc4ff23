//! No silently ignored query parameter: a name a route does not take answers 400 naming it,
//! on every route, so a misspelt filter can never widen a listing or a send.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// Every documented route with its placeholders filled, and the query names it documents.
fn routes() -> Vec<(Method, String, Vec<String>)> {
    let doc = whatsapp_manager::http::openapi_json();
    let mut out = Vec::new();
    for (method, path) in whatsapp_manager::http::routes(true) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let names = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        let mut concrete = String::new();
        let mut rest = path.as_str();
        while let Some(open) = rest.find('{') {
            concrete.push_str(&rest[..open]);
            concrete.push('1');
            rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
        }
        concrete.push_str(rest);
        out.push((method.parse().expect("method"), concrete, names));
    }
    out
}

async fn call(app: &TestApp, method: Method, path: &str) -> (StatusCode, Value) {
    // The event stream answers and then streams: read only until the first bytes.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut req = client.request(method, format!("{}{path}", app.base));
    if let Some(k) = &app.api_key {
        req = req.header("x-api-key", k);
    }
    let Ok(res) = req.send().await else {
        return (StatusCode::OK, Value::Null);
    };
    let status = res.status();
    if res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, Value::Null);
    }
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_refuses_a_query_parameter_it_does_not_take_naming_it() {
    let app = spawn_app_with_admin_key().await;
    let all = routes();
    assert!(all.len() > 30, "{all:?}");
    for (method, path, _) in &all {
        let url = format!("{path}?serach=john");
        let (s, v) = call(&app, method.clone(), &url).await;
        let msg = assert_error(s, &v, 400);
        assert_eq!(msg, "unknown query parameter: serach", "{method} {url}");
    }
}

#[tokio::test]
async fn every_documented_query_parameter_is_taken_by_its_route() {
    let app = spawn_app_with_admin_key().await;
    for (method, path, names) in routes() {
        for name in names {
            let url = format!("{path}?{name}=1");
            let (_, v) = call(&app, method.clone(), &url).await;
            let msg = v["message"].as_str().unwrap_or("");
            assert!(
                !msg.starts_with("unknown query parameter"),
                "{method} {url}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn one_unknown_name_beside_valid_ones_is_enough_and_the_first_is_named() {
    let app = spawn_app().await;
    let (s, v) = app
        .get("/api/whatsapp/groups?user_id=1&place_id=1&page=1&serach=a&sort=name")
        .await;
    assert_eq!(assert_error(s, &v, 400), "unknown query parameter: serach");
    let (s, v) = app
        .post(
            "/api/whatsapp/init?force=true",
            serde_json::json!({"user_id": 1, "place_id": 1}),
        )
        .await;
    assert_eq!(assert_error(s, &v, 400), "unknown query parameter: force");
    // Refused before anything happened: the pair has no session.
    let (_, v) = app.get("/api/whatsapp/status?user_id=1&place_id=1").await;
    assert_eq!(v["data"]["status"], "not_initialized", "{v}");
}

#[tokio::test]
async fn the_key_is_checked_before_the_parameters_and_valid_listings_still_answer() {
    let mut app = spawn_app_with_admin_key().await;
    let (s, v) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=1&search=a")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.api_key = None;
    let (s, v) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=1&serach=a")
        .await;
    assert_error(s, &v, 401);
}

#[tokio::test]
async fn an_empty_name_or_a_repeated_known_name_is_not_an_unknown_parameter() {
    let app = spawn_app().await;
    let (s, v) = app
        .get("/api/whatsapp/groups?user_id=1&&place_id=1&page=1&page=2")
        .await;
    // No session: the listing answers for the pair, not a parameter error.
    let msg = v["message"].as_str().unwrap_or("");
    assert!(!msg.contains("unknown query parameter"), "{s} {v}");
}
