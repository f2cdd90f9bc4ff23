//! API keys: the admin key, tenant keys scoped to one user, and no leak across tenants.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn create_key(app: &TestApp, user: i64, name: Option<&str>) -> (String, Value) {
    let (s, v) = app
        .post("/api/admin/keys", json!({"user_id": user, "name": name}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["data"]["key"]
        .as_str()
        .expect("key shown once")
        .to_string();
    (key, v["data"].clone())
}

fn pair_body(user: i64, place: i64) -> Value {
    json!({"user_id": user, "place_id": place})
}

/// Every route of the API that acts on a pair, as (method, path, body).
fn pair_routes(user: i64, place: i64, group: i64) -> Vec<(Method, String, Option<Value>)> {
    let q = format!("user_id={user}&place_id={place}");
    let b = || Some(pair_body(user, place));
    vec![
        (Method::POST, "/api/whatsapp/init".into(), b()),
        (Method::GET, format!("/api/whatsapp/status?{q}"), None),
        (Method::GET, format!("/api/whatsapp/qr?{q}"), None),
        (
            Method::POST,
            "/api/whatsapp/pair-code".into(),
            Some(json!({"user_id": user, "place_id": place, "phone_number": "+966501234567"})),
        ),
        (Method::GET, format!("/api/whatsapp/info?{q}"), None),
        (Method::POST, "/api/whatsapp/restart".into(), b()),
        (Method::POST, "/api/whatsapp/logout".into(), b()),
        (
            Method::POST,
            "/api/whatsapp/start-contact-fetch".into(),
            b(),
        ),
        (
            Method::GET,
            format!("/api/whatsapp/contacts/progress?{q}"),
            None,
        ),
        (Method::GET, format!("/api/whatsapp/groups?{q}"), None),
        (
            Method::POST,
            "/api/whatsapp/check-numbers".into(),
            Some(json!({"user_id": user, "place_id": place, "numbers": ["+966501234567"]})),
        ),
        (
            Method::GET,
            format!("/api/whatsapp/conversations?{q}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/whatsapp/contacts/1/messages?{q}"),
            None,
        ),
        (Method::POST, "/api/whatsapp/contacts/1/read".into(), b()),
        (
            Method::GET,
            format!("/api/whatsapp/messages/1/media?{q}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/whatsapp/groups/{group}/contacts?{q}"),
            None,
        ),
        (
            Method::PUT,
            "/api/sim/phonebook".into(),
            Some(json!({"user_id": user, "place_id": place, "entries": []})),
        ),
        (Method::POST, "/api/sim/scan".into(), b()),
        (
            Method::POST,
            "/api/sim/fault".into(),
            Some(json!({"user_id": user, "place_id": place, "kind": "drop_client"})),
        ),
    ]
}

#[tokio::test]
async fn without_a_key_every_route_but_health_answers_401_in_the_envelope() {
    // Many failures from one address on purpose: the throttle is tested in security.rs.
    let app = spawn_app_with_admin_key_and(|c| c.limits.key_failures_per_minute = 1000).await;
    let (s, v) = app.request_as(None, Method::GET, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut routes = pair_routes(1, 2, 1);
    routes.push((Method::GET, "/api/whatsapp/stats".into(), None));
    routes.push((Method::GET, "/api/admin/keys".into(), None));
    routes.push((
        Method::POST,
        "/api/admin/keys".into(),
        Some(json!({"user_id": 1})),
    ));
    routes.push((Method::DELETE, "/api/admin/keys/1".into(), None));
    routes.push((Method::GET, "/api/openapi.json".into(), None));
    // Unknown routes and wrong methods too: the key is checked before routing.
    routes.push((Method::GET, "/api/whatsapp/no-such-route".into(), None));
    routes.push((Method::GET, "/api/whatsapp/init".into(), None));
    routes.push((Method::PUT, "/api/health".into(), None));
    for (method, path, body) in routes {
        for key in [None, Some("wrong-key"), Some("wam_0011223344ff_nope")] {
            let (s, v) = app
                .request_as(key, method.clone(), &path, body.clone())
                .await;
            let msg = assert_error(s, &v, 401);
            assert!(msg.contains("API key"), "{method} {path}: {msg}");
        }
    }
    let res = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(format!("{}/docs/", app.base))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Nothing was done by the refused calls.
    let st = app.status(1, 2).await;
    assert_eq!(st["status"], "not_initialized", "{st}");
}

#[tokio::test]
async fn the_admin_key_works_in_x_api_key_and_as_a_bearer_token() {
    let app = spawn_app_with_admin_key().await;
    let url = format!("{}/api/whatsapp/status?user_id=1&place_id=2", app.base);
    let res = app
        .client
        .get(&url)
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .get(&url)
        .header("authorization", format!("Basic {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status_code"], 401);
    let (s, _) = app
        .request_as(Some(ADMIN_KEY), Method::GET, "/api/whatsapp/stats", None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_key_is_shown_once_listed_without_its_secret_and_acts_on_its_user_only() {
    let app = spawn_app_with_admin_key().await;
    let (key, created) = create_key(&app, 5, Some("Branch app")).await;
    assert!(key.starts_with("wam_"), "{key}");
    assert_eq!(created["user_id"], 5);
    assert_eq!(created["name"], "Branch app");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["created_at"].is_string());

    let (s, v) = app.get("/api/admin/keys").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let listed = v["data"]["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("key").is_none(), "{v}");
    assert!(
        !v.to_string()
            .contains(&key[created["prefix"].as_str().unwrap().len()..])
    );
    assert_eq!(v["data"]["pagination"]["total"], 1);

    // Its own user: allowed.
    let (s, v) = app
        .request_as(
            Some(&key),
            Method::POST,
            "/api/whatsapp/init",
            Some(pair_body(5, 1)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Another user: 403 on every route, and nothing happens.
    for (method, path, body) in pair_routes(6, 1, 1) {
        let (s, v) = app
            .request_as(Some(&key), method.clone(), &path, body)
            .await;
        let msg = assert_error(s, &v, 403);
        // The simulated network is the admin's whatever the user (tests/api/sim_access.rs).
        let why = if path.starts_with("/api/sim/") {
            "admin"
        } else {
            "user_id 5"
        };
        assert!(msg.contains(why), "{method} {path}: {msg}");
    }
    assert_eq!(app.status(6, 1).await["status"], "not_initialized");
    // Service-wide statistics and key management are the admin's.
    for (method, path, body) in [
        (Method::GET, "/api/whatsapp/stats", None),
        (Method::GET, "/api/admin/keys", None),
        (Method::POST, "/api/admin/keys", Some(json!({"user_id": 5}))),
        (Method::DELETE, "/api/admin/keys/1", None),
    ] {
        let (s, v) = app.request_as(Some(&key), method, path, body).await;
        assert_error(s, &v, 403);
    }
    // A bad user_id is still a 400 naming the field, not a 403.
    let (s, v) = app
        .request_as(
            Some(&key),
            Method::GET,
            "/api/whatsapp/status?user_id=abc&place_id=1",
            None,
        )
        .await;
    assert!(assert_error(s, &v, 400).contains("user_id"));
}

#[tokio::test]
async fn another_tenants_group_is_404_for_a_tenant_key_never_a_leak() {
    let app = spawn_app_with_admin_key().await;
    app.ready_session(7, 1).await;
    let foreign = app.group_id(7, 1, ALL_GROUP).await;
    let (key, _) = create_key(&app, 8, None).await;
    let (s, v) = app
        .request_as(
            Some(&key),
            Method::GET,
            &format!("/api/whatsapp/groups/{foreign}/contacts?user_id=8&place_id=1"),
            None,
        )
        .await;
    // Exactly what a group that does not exist gets: nothing tells that it does.
    assert_eq!(assert_error(s, &v, 404), "Group not found");
    let (s, v) = app
        .request_as(
            Some(&key),
            Method::GET,
            &format!("/api/whatsapp/groups/{foreign}/contacts?user_id=7&place_id=1"),
            None,
        )
        .await;
    assert_error(s, &v, 403);
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once_and_cannot_be_revoked_twice() {
    let app = spawn_app_with_admin_key().await;
    let (key, created) = create_key(&app, 5, None).await;
    let (other, _) = create_key(&app, 5, Some("second")).await;
    let id = created["id"].as_i64().unwrap();
    let status = "/api/whatsapp/status?user_id=5&place_id=1";
    let (s, _) = app.request_as(Some(&key), Method::GET, status, None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = app
        .request(Method::DELETE, &format!("/api/admin/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"], json!({"id": id, "user_id": 5, "revoked": true}));
    let (s, v) = app.request_as(Some(&key), Method::GET, status, None).await;
    assert_error(s, &v, 401);
    let (s, _) = app
        .request_as(Some(&other), Method::GET, status, None)
        .await;
    assert_eq!(s, StatusCode::OK, "the other key of the user still works");

    let (s, v) = app
        .request(Method::DELETE, &format!("/api/admin/keys/{id}"), None)
        .await;
    assert_error(s, &v, 404);
    let (s, v) = app
        .request(Method::DELETE, "/api/admin/keys/abc", None)
        .await;
    assert!(assert_error(s, &v, 400).contains("key_id"));
    let (_, v) = app.get("/api/admin/keys?user_id=5").await;
    assert_eq!(v["data"]["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn key_creation_validates_user_id_and_name_and_listing_filters_by_user() {
    let app = spawn_app_with_admin_key().await;
    for (body, field) in [
        (json!({}), "user_id"),
        (json!({"user_id": 0}), "user_id"),
        (json!({"user_id": "x"}), "user_id"),
        (json!({"user_id": 1, "name": 5}), "name"),
        (json!({"user_id": 1, "name": "  "}), "name"),
        (json!({"user_id": 1, "name": "n".repeat(101)}), "name"),
    ] {
        let (s, v) = app.post("/api/admin/keys", body.clone()).await;
        assert!(assert_error(s, &v, 400).contains(field), "{body}: {v}");
    }
    create_key(&app, 1, None).await;
    create_key(&app, 2, None).await;
    create_key(&app, 2, None).await;
    let (_, v) = app.get("/api/admin/keys?user_id=2").await;
    let keys = v["data"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["user_id"] == 2));
    let (_, v) = app.get("/api/admin/keys?page=2&limit=2").await;
    assert_eq!(v["data"]["keys"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["pagination"]["total"], 3);
    let (s, v) = app.get("/api/admin/keys?user_id=-1").await;
    assert!(assert_error(s, &v, 400).contains("user_id"));
}

#[tokio::test]
async fn tenant_keys_survive_a_restart_and_the_admin_key_is_never_stored() {
    let app = spawn_app_with_admin_key().await;
    let (key, _) = create_key(&app, 3, None).await;
    let app = app.restart_server().await;
    let (s, _) = app
        .request_as(
            Some(&key),
            Method::GET,
            "/api/whatsapp/status?user_id=3&place_id=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let bytes = app.stored_bytes().await;
    for secret in [key.as_bytes(), ADMIN_KEY.as_bytes()] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "a key was written to the database"
        );
    }
}

#[tokio::test]
async fn without_an_admin_key_the_api_is_open_on_loopback_but_a_tenant_key_still_scopes() {
    // The default test server has no admin key.
    let app = spawn_app().await;
    let (s, _) = app.get("/api/whatsapp/status?user_id=1&place_id=2").await;
    assert_eq!(s, StatusCode::OK);
    let (key, _) = create_key(&app, 1, None).await;
    let (s, v) = app
        .request_as(
            Some(&key),
            Method::GET,
            "/api/whatsapp/status?user_id=2&place_id=2",
            None,
        )
        .await;
    assert_error(s, &v, 403);
    let (s, v) = app
        .request_as(
            Some("not-a-key"),
            Method::GET,
            "/api/whatsapp/status?user_id=1&place_id=2",
            None,
        )
        .await;
    assert_error(s, &v, 401);
}
