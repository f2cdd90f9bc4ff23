//! Two nodes on one PostgreSQL database: events, revocations, webhook deliveries and the
//! outbox hold across them. Sessions are created after both nodes are up, through the node
//! that runs them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::db::TestBackend;
use whatsapp_manager::Config;

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts, settled, sim_outbox};

fn node(id: &'static str) -> impl FnOnce(&mut Config) {
    move |c| {
        fast(c);
        c.cluster.node_id = Some(id.into());
    }
}

async fn two_nodes() -> (TestApp, TestApp) {
    let a = spawn_app_with_on(TestBackend::Postgres, node("node-a")).await;
    let b = a.spawn_peer(node("node-b")).await;
    (a, b)
}

async fn open_stream(app: &TestApp, key: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/api/whatsapp/events?{query}", app.base));
    if let Some(k) = key.or(app.api_key.as_deref()) {
        req = req.header("x-api-key", k);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res
}

/// The `id:` lines of an event stream, in the order they came.
fn stream_ids(seen: &str) -> Vec<i64> {
    seen.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|id| id.trim().parse().unwrap())
        .collect()
}

async fn incoming(app: &TestApp, user: i64, place: i64, text: &str) {
    let (status, body) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": user, "place_id": place, "from": "+966551234567", "text": text}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_event_stream_on_one_node_carries_the_events_of_a_session_on_another_in_order() {
    let (a, b) = two_nodes().await;
    let mut on_b = open_stream(&b, None, "user_id=1").await;
    a.ready_session(1, 2).await;
    incoming(&a, 1, 2, "sent to node a").await;
    let seen = read_until(&mut on_b, "sent to node a").await;
    assert!(seen.contains("event: message.received"), "{seen}");
    // The same events, in the same order, as the table has them (read back through A).
    let mut replay = a
        .client
        .get(format!("{}/api/whatsapp/events?user_id=1", a.base))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let stored = read_until(&mut replay, "sent to node a").await;
    assert_eq!(
        stream_ids(&seen),
        stream_ids(&stored),
        "{seen}\n---\n{stored}"
    );
}

#[tokio::test]
async fn a_key_revoked_on_one_node_ends_its_open_stream_on_another() {
    let a = spawn_app_with_admin_key_and_on(TestBackend::Postgres, node("node-a")).await;
    let b = a.spawn_peer(node("node-b")).await;
    let (s, v) = a.post("/api/admin/keys", json!({"user_id": 4})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["data"]["key"].as_str().unwrap().to_owned();
    let id = v["data"]["id"].as_i64().unwrap();
    let mut on_b = open_stream(&b, Some(&key), "user_id=4").await;
    // Live: a session on A is seen there.
    a.init(4, 1).await;
    read_until(&mut on_b, "session.status").await;

    let (s, v) = a
        .request(Method::DELETE, &format!("/api/admin/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Within a second as a rule; the bound leaves room for a loaded machine, and without
    // the note between nodes the stream never ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = on_b.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the revoked key's stream on node b is still open"
    );
    let (s, v) = b
        .request_as(
            Some(&key),
            Method::GET,
            "/api/whatsapp/events?user_id=4",
            None,
        )
        .await;
    assert_error(s, &v, 401);
}

/// A receiver that takes its time, so a delivery is in flight long enough for the other
/// node's dispatcher to look at the same head.
#[derive(Clone, Default)]
struct SlowReceiver(Arc<Mutex<Vec<Value>>>);

impl SlowReceiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = self.0.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let got = got.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    got.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }

    fn ids(&self) -> Vec<i64> {
        let got = self.0.lock().unwrap();
        got.iter().map(|e| e["id"].as_i64().unwrap()).collect()
    }
}

#[tokio::test]
async fn a_tenants_deliveries_from_both_nodes_arrive_once_each_in_event_order() {
    let (a, b) = two_nodes().await;
    let receiver = SlowReceiver::default();
    let url = receiver.start().await;
    let (s, v) = a
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": url, "events": ["message.received"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.ready_session(1, 1).await;
    b.ready_session(1, 2).await;
    let sends = (0..8).map(|i| {
        let (a, b) = (&a, &b);
        async move {
            incoming(a, 1, 1, &format!("a{i}")).await;
            incoming(b, 1, 2, &format!("b{i}")).await;
        }
    });
    futures::future::join_all(sends).await;

    // An incoming message is told as it is received, after the answer.
    let mut queued: Vec<i64> = testkit::poll(Duration::from_secs(30), "16 deliveries", || async {
        let (_, body) = a
            .get("/api/whatsapp/webhook/deliveries?user_id=1&limit=100")
            .await;
        let ids: Vec<i64> = body["data"]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["event_id"].as_i64().unwrap())
            .collect();
        if ids.len() >= 16 {
            Ok(ids)
        } else {
            Err(body.to_string())
        }
    })
    .await;
    queued.sort_unstable();
    assert_eq!(queued.len(), 16);
    testkit::poll(Duration::from_secs(60), "every delivery", || async {
        let got = receiver.ids();
        if got.len() >= queued.len() {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    // A second copy would come while the other node's dispatcher looks again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.ids(), queued, "once each, in event order");
}

#[tokio::test]
async fn a_retry_through_a_node_that_does_not_run_the_number_is_sent_once_by_its_node() {
    let (a, b) = two_nodes().await;
    pair_with_contacts(&a, 1, 2, 1).await;
    let (s, v) = a.fault(1, 2, "fail_send").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, body) = a
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "hi"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    assert_eq!(settled(&a, 1, 2, id).await["status"], "failed");

    let (s, body) = b
        .post(
            &format!("/api/whatsapp/messages/{id}/retry"),
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let m = settled(&b, 1, 2, id).await;
    assert_eq!(m["status"], "sent", "{m}");
    let out = sim_outbox(&a, 1, 2).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["id"], m["whatsapp_message_id"]);
}
