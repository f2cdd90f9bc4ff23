//! The sessions list (every pair's latest session, counts by status), the admin's event
//! stream across tenants, and health telling whose key it is: what the dashboard is built on.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn list_as(app: &TestApp, key: Option<&str>, query: &str) -> (StatusCode, Value) {
    app.request_as(
        key,
        Method::GET,
        &format!("/api/whatsapp/sessions{query}"),
        None,
    )
    .await
}

fn pairs(v: &Value) -> Vec<(i64, i64, String)> {
    v["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            (
                s["user_id"].as_i64().unwrap(),
                s["place_id"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sessions_list_filters_pages_counts_and_keeps_tenants_apart() {
    let app = spawn_app_with_admin_key().await;
    let admin = app.api_key.clone();
    app.ready_session(1, 1).await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    app.ready_session(2, 1).await;
    app.set_phonebook(
        2,
        1,
        "966500000001@s.whatsapp.net",
        json!([person("966512345678", Some("سارة"), None)]),
    )
    .await;
    app.fetch_and_wait(2, 1).await;

    let (s, v) = list_as(&app, admin.as_deref(), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        pairs(&v),
        vec![
            (1, 1, "ready".into()),
            (1, 2, "qr_ready".into()),
            (2, 1, "ready".into())
        ]
    );
    let counts = &v["data"]["counts"];
    assert_eq!(counts["ready"], 2, "{v}");
    assert_eq!(counts["qr_ready"], 1, "{v}");
    assert_eq!(counts["logged_out"], 0, "every status is named: {v}");
    assert_eq!(v["data"]["pagination"]["total"], 3);
    let two = &v["data"]["sessions"][2];
    assert_eq!(two["total_contacts"], 1, "{two}");
    assert_eq!(two["total_groups"], 2, "{two}");
    assert!(
        two["session_id"]
            .as_str()
            .unwrap()
            .starts_with("session_2_1_")
    );

    // Filters: status narrows the rows but not the counts; user narrows both.
    let (_, v) = list_as(&app, admin.as_deref(), "?status=qr_ready").await;
    assert_eq!(pairs(&v), vec![(1, 2, "qr_ready".into())]);
    assert_eq!(v["data"]["counts"]["ready"], 2);
    let (_, v) = list_as(&app, admin.as_deref(), "?user_id=2").await;
    assert_eq!(pairs(&v), vec![(2, 1, "ready".into())]);
    assert_eq!(v["data"]["counts"]["ready"], 1);
    assert_eq!(v["data"]["counts"]["qr_ready"], 0);
    let (_, v) = list_as(&app, admin.as_deref(), "?limit=2&page=2").await;
    assert_eq!(pairs(&v), vec![(2, 1, "ready".into())]);
    assert_eq!(v["data"]["pagination"]["pages"], 2);

    // Bad input is named.
    let (s, v) = list_as(&app, admin.as_deref(), "?status=sleeping").await;
    assert!(
        assert_error(s, &v, 400).contains("status must be one of"),
        "{v}"
    );
    let (s, v) = list_as(&app, admin.as_deref(), "?user_id=0").await;
    assert!(assert_error(s, &v, 400).contains("user_id"), "{v}");
    let (s, v) = list_as(&app, admin.as_deref(), "?limit=1001").await;
    assert_error(s, &v, 400);

    // A tenant sees its own user, named or not, and never another's.
    let (tenant, _) = app.create_key(json!({"user_id": 1})).await;
    let (s, v) = list_as(&app, Some(&tenant), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        pairs(&v),
        vec![(1, 1, "ready".into()), (1, 2, "qr_ready".into())]
    );
    assert_eq!(v["data"]["counts"]["ready"], 1);
    let (s, v) = list_as(&app, Some(&tenant), "?user_id=1&status=ready").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(pairs(&v), vec![(1, 1, "ready".into())]);
    let (s, v) = list_as(&app, Some(&tenant), "?user_id=2").await;
    assert_error(s, &v, 403);
    let (s, v) = list_as(&app, None, "").await;
    assert_error(s, &v, 401);
}

#[tokio::test]
async fn health_tells_whose_key_it_is_and_nothing_without_one() {
    let app = spawn_app_with_admin_key().await;
    let (tenant, _) = app.create_key(json!({"user_id": 7})).await;
    let (_, v) = app.get("/api/health").await;
    assert_eq!(v["data"]["caller"], json!({"role": "admin"}), "{v}");
    let (_, v) = app
        .request_as(Some(&tenant), Method::GET, "/api/health", None)
        .await;
    assert_eq!(
        v["data"]["caller"],
        json!({"role": "tenant", "user_id": 7}),
        "{v}"
    );
    for key in [None, Some("wam_not_a_key")] {
        let (s, v) = app.request_as(key, Method::GET, "/api/health", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["data"].get("caller").is_none(), "{v}");
    }
}

#[tokio::test]
async fn the_admin_hears_every_tenant_on_one_stream_and_a_tenant_only_its_own() {
    let app = spawn_app_with_admin_key().await;
    let (tenant, _) = app.create_key(json!({"user_id": 5})).await;
    let open = |key: Option<String>, query: &'static str| {
        let client = app.client.clone();
        let url = format!("{}/api/whatsapp/events{query}", app.base);
        async move {
            let mut req = client.get(url);
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res
        }
    };
    let mut all = open(app.api_key.clone(), "").await;
    let mut own = open(Some(tenant.clone()), "").await;
    app.init(6, 1).await;
    app.init(5, 3).await;
    let seen = read_until(&mut all, "session_5_3_").await;
    assert!(seen.contains("session_6_1_"), "{seen}");
    let seen = read_until(&mut own, "session_5_3_").await;
    assert!(!seen.contains("session_6_1_"), "{seen}");

    // A replay across tenants from an event id.
    let mut replay = open(app.api_key.clone(), "?last_event_id=0").await;
    let seen = read_until(&mut replay, "session_5_3_").await;
    assert!(seen.contains("session_6_1_"), "{seen}");

    let (s, v) = app
        .request_as(
            Some(&tenant),
            Method::GET,
            "/api/whatsapp/events?user_id=6",
            None,
        )
        .await;
    assert_error(s, &v, 403);
    let (s, v) = app.get("/api/whatsapp/events?place_id=1").await;
    assert!(
        assert_error(s, &v, 400).contains("place_id needs user_id"),
        "{v}"
    );
}
