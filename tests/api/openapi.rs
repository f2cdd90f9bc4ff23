//! The OpenAPI document stays in step with the router, and is served with Swagger UI.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use whatsapp_manager::http::{DOCS_PATH, OPENAPI_PATH, routes};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(app: &TestApp) -> Value {
    let (s, doc) = app.get(OPENAPI_PATH).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    doc
}

/// Every (METHOD, path) of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_lowercase()]
}

/// `{group_id}` → `1`.
fn fill_params(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 16, "{ops:?}");
    for (method, path) in &ops {
        let url = fill_params(path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        if url.starts_with("/api/whatsapp/events") {
            // A stream never ends by itself: its status and headers are the answer.
            let res = app
                .client
                .request(m, format!("{}{url}", app.base))
                .send()
                .await
                .expect("stream");
            assert_eq!(res.status(), StatusCode::OK, "{method} {path}");
            continue;
        }
        let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
        let (s, v) = app.request(m, &url, body).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {v}");
        let fallback = s == StatusCode::NOT_FOUND
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Route not found"));
        assert!(
            !fallback,
            "{method} {path} is documented but not routed: {v}"
        );
    }
}

#[tokio::test]
async fn every_route_of_the_router_is_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let documented = operations(&doc);
    let routed: BTreeSet<(String, String)> = routes(true).into_iter().collect();
    // The table must be the real one, not an empty list that agrees with anything.
    for known in [
        ("GET", "/api/health"),
        ("POST", "/api/whatsapp/init"),
        ("GET", "/api/whatsapp/groups/{group_id}/contacts"),
        ("PUT", "/api/sim/phonebook"),
    ] {
        let known = (known.0.to_string(), known.1.to_string());
        assert!(routed.contains(&known), "{known:?} not in {routed:?}");
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routed, not documented: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");
}

#[tokio::test]
async fn the_sim_routes_are_documented_as_sim_only_and_absent_without_it() {
    let with: BTreeSet<_> = routes(true).into_iter().collect();
    let without: BTreeSet<_> = routes(false).into_iter().collect();
    assert!(without.is_subset(&with));
    let sim_only: Vec<_> = with.difference(&without).cloned().collect();
    assert_eq!(sim_only.len(), 10, "{sim_only:?}");

    let app = spawn_app().await;
    let doc = document(&app).await;
    for (method, path) in &sim_only {
        assert!(path.starts_with("/api/sim/"), "{path}");
        let op = operation(&doc, method, path);
        assert_eq!(op["tags"], json!(["sim"]), "{method} {path}");
        assert!(op["responses"]["404"].is_object(), "{method} {path}");
    }

    // The real engine has no network to simulate: the same paths fall through to 404.
    let real = spawn_app_with(|c| c.engine = whatsapp_manager::config::EngineKind::Whatsapp).await;
    for (method, path) in &sim_only {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (s, v) = real.request(m, path, Some(json!({}))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
    }
    // ... and the document served there still describes them.
    let doc = document(&real).await;
    assert!(doc["paths"]["/api/sim/scan"]["post"].is_object());
}

#[tokio::test]
async fn the_document_is_openapi_3_json() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}{OPENAPI_PATH}", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().expect("ascii");
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = serde_json::from_str(&res.text().await.expect("body")).expect("JSON");
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "WhatsApp Manager");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let app = spawn_app().await;
    for path in [DOCS_PATH.to_string(), format!("{DOCS_PATH}/")] {
        let res = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res.headers()["content-type"].to_str().expect("ascii");
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        let html = res.text().await.expect("body");
        assert!(html.contains("swagger-ui"), "{path}: {html}");
    }
    // The page's script points Swagger UI at our document.
    let js = app
        .client
        .get(format!("{}{DOCS_PATH}/swagger-initializer.js", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.text().await.expect("body").contains(OPENAPI_PATH));
    // A file Swagger UI does not have is a 404 in our envelope, like any other.
    let (s, v) = app.get(&format!("{DOCS_PATH}/no-such-file.js")).await;
    crate::helpers::assert_error(s, &v, 404);
}

#[tokio::test]
async fn every_operation_but_health_needs_a_key_and_documents_401_and_403() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["api_key"],
        json!({"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "The API key."})
    );
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"api_key": []}, {"bearer": []}]));

    let envelope = json!({"$ref": "#/components/schemas/ErrorEnvelope"});
    for (method, path) in operations(&doc) {
        let op = operation(&doc, &method, &path);
        let responses = &op["responses"];
        if path == "/api/health" {
            assert_eq!(op["security"], json!([]), "{method} {path}");
            assert!(responses["401"].is_null(), "{method} {path}");
        } else {
            assert!(
                op["security"].is_null(),
                "{method} {path} overrides security"
            );
            for status in ["401", "403"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"], envelope,
                    "{method} {path} {status}"
                );
            }
        }
        for status in ["408", "500"] {
            assert!(responses[status].is_object(), "{method} {path} {status}");
        }
        if op["requestBody"].is_object() {
            assert!(responses["413"].is_object(), "{method} {path} 413");
        }
        let ok = ["200", "201", "202"]
            .iter()
            .find_map(|s| responses.get(*s))
            .unwrap_or_else(|| panic!("{method} {path} has no success response"));
        assert!(ok["content"].is_object(), "{method} {path}");
    }
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} has no schema");
    }
    // The API-key routes are not served yet; their schemas wait in the document.
    for name in [
        "CreateKeyRequest",
        "CreatedKey",
        "KeyInfo",
        "KeyList",
        "RevokedKey",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_link_leads_to_an_operation_of_the_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let ids: BTreeSet<String> = operations(&doc)
        .iter()
        .map(|(m, p)| {
            operation(&doc, m, p)["operationId"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(
        ids.len(),
        operations(&doc).len(),
        "operation ids are unique"
    );
    let mut links = 0;
    for (method, path) in operations(&doc) {
        let Some(map) = operation(&doc, &method, &path)["responses"]["200"]["links"].as_object()
        else {
            continue;
        };
        for (name, link) in map {
            links += 1;
            let target = link["operationId"].as_str().expect("operationId");
            assert!(
                ids.contains(target),
                "{method} {path} links {name} to {target}"
            );
        }
    }
    assert!(links > 10, "{links} links");
}
