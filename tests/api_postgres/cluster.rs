//! Two servers on one PostgreSQL database, each its own node: any node answers any route.
//! A command on a session the other node runs is carried out there, with the caller's key;
//! a session whose node is gone answers 503 "moving"; the nodes are listed with their state.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::api::*;
use testkit::db::TestBackend;
use whatsapp_manager::domain::{Pair, PlaceId, UserId};
use whatsapp_manager::store::prelude::*;
use whatsapp_manager::store::traits::NodeJoin;
use whatsapp_manager::store::{DatabaseOptions, open};

const MOVING: &str = "Session is moving to another node. Please retry.";
/// Long enough that the nodes stay alive without the lease loop's heartbeats.
const LEASE: Duration = Duration::from_secs(600);
const LEASE_MS: i64 = 600_000;
const WAIT: Duration = Duration::from_secs(30);

struct TwoNodes {
    a: TestApp,
    b: TestApp,
    leases: Arc<dyn ClusterStore>,
}

async fn two_nodes() -> TwoNodes {
    let a = spawn_app_with_admin_key_and_on(TestBackend::Postgres, |c| {
        c.cluster.node_id = Some("node-a".into());
        c.cluster.lease = LEASE;
    })
    .await;
    let url = a.config.database_url.clone();
    let b = spawn_app_with_admin_key_and_on(TestBackend::Postgres, |c| {
        c.database_url = url;
        c.cluster.node_id = Some("node-b".into());
        c.cluster.lease = LEASE;
    })
    .await;
    let db = open(&a.config.database_url, &DatabaseOptions::default())
        .await
        .expect("open the shared database");
    let leases = db.cluster().expect("PostgreSQL has a cluster store");
    TwoNodes { a, b, leases }
}

fn pair(user: i64, place: i64) -> Pair {
    Pair::new(UserId::new_unchecked(user), PlaceId::new_unchecked(place))
}

/// `status` through `app` once it satisfies `want`.
async fn wait_for(app: &TestApp, user: i64, place: i64, want: impl Fn(&Value) -> bool) -> Value {
    testkit::poll(WAIT, "the awaited status", || async {
        let st = app.status(user, place).await;
        if want(&st) {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    })
    .await
}

/// The raw answer: status, headers and text.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("x-api-key", key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.text().await.expect("body"))
}

/// The QR code as text, through `app`.
async fn qr(app: &TestApp) -> String {
    let (s, h, text) = raw(
        app,
        Method::GET,
        "/api/whatsapp/qr?user_id=1&place_id=1&format=raw",
        ADMIN_KEY,
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(h["cache-control"], "no-store");
    text
}

fn assert_moving(status: StatusCode, headers: &reqwest::header::HeaderMap, text: &str) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let v: Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["message"], MOVING, "{v}");
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {headers:?}"));
    assert!(retry >= 1, "{retry}");
}

#[tokio::test]
async fn a_command_sent_to_another_node_runs_on_the_node_that_holds_the_session() {
    let n = two_nodes().await;
    let epoch = n.leases.acquire(pair(1, 1), "node-a", LEASE_MS).await;
    assert!(matches!(epoch, Ok(Some(_))), "{epoch:?}");

    let (s, v) =
        n.b.post("/api/whatsapp/init", json!({"user_id": 1, "place_id": 1}))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The session lives on A: A answers its status from its live actor, and B names A.
    let on_a = wait_for(&n.a, 1, 1, |st| st["status"] == "qr_ready").await;
    assert_eq!(on_a["node_id"], "node-a", "{on_a}");
    let via_b = n.b.status(1, 1).await;
    assert_eq!(via_b["node_id"], "node-a", "{via_b}");

    // The QR code through B is A's (it may rotate in between: one of the two A showed).
    let before = qr(&n.a).await;
    let through_b = qr(&n.b).await;
    let after = qr(&n.a).await;
    assert!(
        through_b == before || through_b == after,
        "{through_b} is not A's QR ({before} / {after})"
    );

    // A sim command on the live client, through B, reaches A's client.
    let (s, v) = n.b.scan(1, 1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ready = wait_for(&n.b, 1, 1, |st| st["status"] == "ready").await;
    assert_eq!(ready["node_id"], "node-a", "{ready}");
    assert!(n.a.status(1, 1).await["client_ready"] == true);
}

#[tokio::test]
async fn a_tenant_key_goes_with_the_command_and_another_users_pair_is_refused_alike() {
    let n = two_nodes().await;
    let (s, v) = n.a.post("/api/admin/keys", json!({"user_id": 7})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["data"]["key"].as_str().expect("the key").to_owned();
    for p in [pair(7, 1), pair(8, 1)] {
        let taken = n.leases.acquire(p, "node-a", LEASE_MS).await;
        assert!(matches!(taken, Ok(Some(_))), "{taken:?}");
    }

    // Its own pair: the owner accepts the forwarded key (it would answer 401 without it).
    let (s, v) =
        n.b.request_as(
            Some(&key),
            Method::POST,
            "/api/whatsapp/init",
            Some(json!({"user_id": 7, "place_id": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Live on A: only a live session shows its QR code (the database keeps none).
    let on_a = wait_for(&n.a, 7, 1, |st| st["qr_code"].is_string()).await;
    assert_eq!(on_a["node_id"], "node-a", "{on_a}");

    // Another user's pair: the same 403 through either node, and nothing started.
    let body = json!({"user_id": 8, "place_id": 1});
    let mut answers = Vec::new();
    for app in [&n.a, &n.b] {
        let (s, v) = app
            .request_as(
                Some(&key),
                Method::POST,
                "/api/whatsapp/init",
                Some(body.clone()),
            )
            .await;
        answers.push((s, v["message"].clone()));
    }
    assert_eq!(answers[0].0, StatusCode::FORBIDDEN, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(n.a.status(8, 1).await["status"], "not_initialized");
}

#[tokio::test]
async fn a_session_whose_node_is_dead_answers_503_moving_with_retry_after() {
    let n = two_nodes().await;
    // A node that joined and stopped at once: its heartbeat is stale, its lease still runs.
    let joined = n
        .leases
        .join(&NodeJoin {
            node_id: "node-dead",
            advertise_url: "http://127.0.0.1:9",
            incarnation: "gone",
            lease_ms: 1,
            force: false,
        })
        .await;
    assert!(joined.is_ok(), "{joined:?}");
    let taken = n.leases.acquire(pair(2, 1), "node-dead", LEASE_MS).await;
    assert!(matches!(taken, Ok(Some(_))), "{taken:?}");

    for (method, path, body) in [
        (
            Method::POST,
            "/api/whatsapp/start-contact-fetch",
            Some(json!({"user_id": 2, "place_id": 1})),
        ),
        (Method::GET, "/api/whatsapp/qr?user_id=2&place_id=1", None),
        (
            Method::POST,
            "/api/whatsapp/init",
            Some(json!({"user_id": 2, "place_id": 1})),
        ),
    ] {
        let (s, h, text) = raw(&n.b, method, path, ADMIN_KEY, &[], body).await;
        assert_moving(s, &h, &text);
    }
    // Nothing started anywhere, and the status (a read) still answers from the database.
    let st = n.a.status(2, 1).await;
    assert_eq!(st["status"], "not_initialized", "{st}");
    assert_eq!(st["node_id"], Value::Null, "{st}");
    // A bad request is still refused as before, by the node asked.
    let (s, v) =
        n.b.post("/api/whatsapp/start-contact-fetch", json!({"place_id": 1}))
            .await;
    assert!(assert_error(s, &v, 400).contains("user_id"), "{v}");
}

#[tokio::test]
async fn a_forwarded_request_is_never_forwarded_again() {
    let n = two_nodes().await;
    // A node whose address is B's own: without the hop marker B would send the request to
    // itself for ever.
    let joined = n
        .leases
        .join(&NodeJoin {
            node_id: "node-loop",
            advertise_url: &n.b.base,
            incarnation: "loop",
            lease_ms: LEASE_MS,
            force: false,
        })
        .await;
    assert!(joined.is_ok(), "{joined:?}");
    let taken = n.leases.acquire(pair(3, 1), "node-loop", LEASE_MS).await;
    assert!(matches!(taken, Ok(Some(_))), "{taken:?}");
    let body = json!({"user_id": 3, "place_id": 1});
    let (s, h, text) = raw(
        &n.b,
        Method::POST,
        "/api/whatsapp/logout",
        ADMIN_KEY,
        &[],
        Some(body.clone()),
    )
    .await;
    assert_moving(s, &h, &text);
    assert!(
        h.get("x-wam-not-here").is_none(),
        "internal marker leaked: {h:?}"
    );

    // A request marked as forwarded, for a session another node runs, is not sent on.
    let taken = n.leases.acquire(pair(4, 1), "node-a", LEASE_MS).await;
    assert!(matches!(taken, Ok(Some(_))), "{taken:?}");
    let (s, h, text) = raw(
        &n.b,
        Method::POST,
        "/api/whatsapp/init",
        ADMIN_KEY,
        &[("x-wam-forwarded-by", "node-x")],
        Some(json!({"user_id": 4, "place_id": 1})),
    )
    .await;
    assert_moving(s, &h, &text);
    assert_eq!(n.a.status(4, 1).await["status"], "not_initialized");
}

#[tokio::test]
async fn the_nodes_are_listed_with_their_state_for_the_admin_only() {
    let n = two_nodes().await;
    let joined = n
        .leases
        .join(&NodeJoin {
            node_id: "node-dead",
            advertise_url: "http://127.0.0.1:9",
            incarnation: "gone",
            lease_ms: 1,
            force: false,
        })
        .await;
    assert!(joined.is_ok(), "{joined:?}");
    let taken = n.leases.acquire(pair(5, 1), "node-a", LEASE_MS).await;
    assert!(matches!(taken, Ok(Some(_))), "{taken:?}");

    for app in [&n.a, &n.b] {
        let (s, v) = app.get("/api/admin/nodes").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let nodes = v["data"]["nodes"].as_array().expect("nodes").clone();
        let by_id = |id: &str| {
            nodes
                .iter()
                .find(|n| n["node_id"] == id)
                .unwrap_or_else(|| panic!("{id} missing: {v}"))
                .clone()
        };
        let a = by_id("node-a");
        assert_eq!(a["state"], "alive", "{a}");
        assert_eq!(a["sessions"], 1, "{a}");
        assert_eq!(a["advertise_url"], n.a.base, "{a}");
        for t in ["started_at", "last_heartbeat"] {
            let t = a[t].as_str().expect("a time");
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        }
        let b = by_id("node-b");
        assert_eq!(
            (b["state"].clone(), b["sessions"].clone()),
            (json!("alive"), json!(0))
        );
        assert_eq!(b["advertise_url"], n.b.base, "{b}");
        assert_eq!(by_id("node-dead")["state"], "dead");
        assert_eq!(nodes.len(), 3, "{v}");
    }

    let (s, v) = n.a.post("/api/admin/keys", json!({"user_id": 7})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["data"]["key"].as_str().expect("the key");
    let (s, v) =
        n.b.request_as(Some(key), Method::GET, "/api/admin/nodes", None)
            .await;
    assert_error(s, &v, 403);
}

#[tokio::test]
async fn a_single_sqlite_server_is_a_cluster_of_one() {
    let app = spawn_app_on(TestBackend::Sqlite).await;
    app.init(1, 1).await;
    app.wait_status(1, 1, "qr_ready").await;
    let (s, v) = app.get("/api/admin/nodes").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let nodes = v["data"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{v}");
    let me = &nodes[0];
    assert_eq!(me["state"], "alive", "{me}");
    assert_eq!(me["sessions"], 1, "{me}");
    assert_eq!(me["advertise_url"], app.base, "{me}");
    let id = me["node_id"].as_str().expect("an id");
    assert!(
        id.ends_with(&format!(":{}", app.base.rsplit(':').next().unwrap())),
        "{id}"
    );
    assert_eq!(app.status(1, 1).await["node_id"], id);
    assert_eq!(app.status(2, 1).await["node_id"], Value::Null);
}
