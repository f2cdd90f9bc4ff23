//! Webhooks: signed bodies a receiver can verify, a durable queue that delivers in order
//! after the receiver was down, the deliveries API, and the server-sent-events stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use whatsapp_manager::Config;

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts, settled};

const SECRET: &str = "test-webhook-secret-123";

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>);

impl Received {
    pub fn all(&self) -> Vec<(axum::http::HeaderMap, String)> {
        self.0.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.all()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let e = self.events();
            if pred(&e) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never received {what}: {:?}", self.events());
    }
}

/// A receiver on `listener` that records every request and answers 200.
fn serve_receiver(listener: tokio::net::TcpListener, got: Received) {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let got = got.clone();
            async move {
                got.0.lock().unwrap().push((headers, body));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

pub async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Received::default();
    serve_receiver(listener, got.clone());
    (url, got)
}

/// What a receiver does: recompute the HMAC of the raw body with the shared secret.
fn verify(secret: &str, headers: &axum::http::HeaderMap, body: &str) -> bool {
    let Some(sig) = headers
        .get("x-webhook-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(sig) = (0..sig.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sig[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

fn quick_retries(c: &mut Config) {
    fast(c);
    c.webhooks.backoff_initial = Duration::from_millis(100);
    c.webhooks.backoff_max = Duration::from_millis(400);
    c.webhooks.max_attempts = 100;
}

#[tokio::test]
async fn events_reach_the_webhook_signed_so_the_receiver_can_verify_them() {
    let app = spawn_app_with(quick_retries).await;
    let (url, got) = receiver().await;
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": url, "secret": SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["secret"], SECRET);
    assert_eq!(body["data"]["events"].as_array().unwrap().len(), 8);

    // session.status (on the way to ready), contacts.fetch.completed, message.sent,
    // message.received.
    pair_with_contacts(&app, 1, 2, 2).await;
    let (_, sent) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "hi"}),
        )
        .await;
    settled(&app, 1, 2, sent["data"]["id"].as_i64().unwrap()).await;
    let (status, body) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 2, "from": "+966551234567", "text": "Is it open?", "push_name": "Sara"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = got
        .wait_for("message.received", |e| {
            e.iter().any(|e| e["event"] == "message.received")
        })
        .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for k in [
        "session.status",
        "contacts.fetch.completed",
        "message.sent",
        "message.received",
    ] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let ready = events
        .iter()
        .find(|e| e["event"] == "session.status" && e["data"]["status"] == "ready")
        .expect("ready told");
    assert!(
        ready["session_id"]
            .as_str()
            .unwrap()
            .starts_with("session_1_2_")
    );
    let received = events
        .iter()
        .find(|e| e["event"] == "message.received")
        .unwrap();
    assert_eq!(received["data"]["from"], "+966551234567");
    assert_eq!(received["data"]["text"], "Is it open?");
    assert_eq!(received["data"]["push_name"], "Sara");
    let sent_event = events
        .iter()
        .find(|e| e["event"] == "message.sent")
        .unwrap();
    assert_eq!(sent_event["data"]["message_id"], sent["data"]["id"]);
    // Ids increase in delivery order.
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    for (headers, body) in got.all() {
        assert!(verify(SECRET, &headers, &body), "signature verifies");
        assert!(!verify("another-secret-123456", &headers, &body));
        assert!(
            !verify(SECRET, &headers, &body.replace("1", "2")),
            "a changed body fails"
        );
        let ev: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(headers["x-webhook-event"], ev["event"].as_str().unwrap());
    }

    let (status, body) = app
        .get("/api/whatsapp/webhook/deliveries?user_id=1&status=delivered")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["pagination"]["total"].as_i64().unwrap() >= 4);
    let d = &body["data"]["deliveries"][0];
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["last_status_code"], 200);
    assert!(d["payload"]["event"].is_string());

    // The secret is not shown again.
    let (_, body) = app.get("/api/whatsapp/webhook?user_id=1").await;
    assert_eq!(body["data"]["secret"], Value::Null);
    assert_eq!(body["data"]["url"], url);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_later_in_order() {
    let app = spawn_app_with(quick_retries).await;
    // A port nobody listens on yet.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": format!("http://{addr}/hook"), "secret": SECRET,
                   "events": ["message.received"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["events"], json!(["message.received"]));
    app.ready_session(1, 2).await;
    for i in 0..5 {
        let (status, body) = app
            .post(
                "/api/sim/incoming",
                json!({"user_id": 1, "place_id": 2, "from": "+966551234567", "text": format!("msg {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Down for a while: the first delivery is retried, the others wait behind it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, body) = app
        .get("/api/whatsapp/webhook/deliveries?user_id=1&status=pending")
        .await;
    assert_eq!(body["data"]["pagination"]["total"], 5, "{body}");
    let head = body["data"]["deliveries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(head["attempts"].as_i64().unwrap() >= 2, "{head}");
    assert!(
        head["last_error"].as_str().unwrap().contains("connect"),
        "{head}"
    );

    let got = Received::default();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    serve_receiver(listener, got.clone());
    let events = got.wait_for("all five", |e| e.len() >= 5).await;
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["msg 0", "msg 1", "msg 2", "msg 3", "msg 4"]);
    assert!(
        events.iter().all(|e| e["event"] == "message.received"),
        "only what it subscribed to"
    );
    // The receiver has the last event before the dispatcher has read its answer and marked
    // it delivered: wait for that, rather than racing it.
    let mut pending = Value::Null;
    for _ in 0..200 {
        let (_, body) = app
            .get("/api/whatsapp/webhook/deliveries?user_id=1&status=pending")
            .await;
        pending = body["data"]["pagination"]["total"].clone();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_and_another_tenant_cannot_touch_it() {
    let app = spawn_app_with_admin_key().await;
    for (body, needle) in [
        (json!({"user_id": 1}), "url"),
        (json!({"user_id": 1, "url": "ftp://x"}), "url"),
        (
            json!({"user_id": 1, "url": "https://198.51.99.1/h", "secret": "short"}),
            "secret",
        ),
        (
            json!({"user_id": 1, "url": "https://198.51.99.1/h", "events": ["nope"]}),
            "events",
        ),
        (
            json!({"user_id": 1, "url": "https://198.51.99.1/h", "events": []}),
            "events",
        ),
        (
            json!({"user_id": 0, "url": "https://198.51.99.1/h"}),
            "user_id",
        ),
    ] {
        let (status, resp) = app.put("/api/whatsapp/webhook", body.clone()).await;
        assert!(
            assert_error(status, &resp, 400).contains(needle),
            "{body}: {resp}"
        );
    }
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": "https://198.51.99.1/h"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["secret_generated"], true);
    assert!(body["data"]["secret"].as_str().unwrap().len() >= 32);

    // A tenant key of user 2 cannot read or change user 1's webhook.
    let (_, key) = app
        .post("/api/admin/keys", json!({"user_id": 2, "name": "t"}))
        .await;
    let key = key["data"]["key"].as_str().unwrap().to_string();
    let (status, _) = app
        .request_as(
            Some(&key),
            reqwest::Method::GET,
            "/api/whatsapp/webhook?user_id=1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .request_as(
            Some(&key),
            reqwest::Method::DELETE,
            "/api/whatsapp/webhook?user_id=1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = app
        .request(
            reqwest::Method::DELETE,
            "/api/whatsapp/webhook?user_id=1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get("/api/whatsapp/webhook?user_id=1").await;
    assert_error(status, &body, 404);
}

#[tokio::test]
async fn the_event_stream_pushes_events_live_and_replays_what_a_listener_missed() {
    let app = spawn_app_with(fast).await;
    app.ready_session(1, 2).await;
    let mut resp = app.event_stream(1).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (status, _) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 2, "from": "+966551234567", "text": "live one"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = read_until(&mut resp, "live one").await;
    assert!(seen.contains("event: message.received"), "{seen}");
    drop(resp);

    // Everything of user 1 after event 0: the session's status changes and the message.
    let mut resp = app
        .client
        .get(format!("{}/api/whatsapp/events?user_id=1", app.base))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let seen = read_until(&mut resp, "live one").await;
    assert!(seen.contains("event: session.status"), "{seen}");
    let (status, body) = app
        .get("/api/whatsapp/events?user_id=1&last_event_id=x")
        .await;
    assert!(assert_error(status, &body, 400).contains("last_event_id"));
}

/// A back office that posts forms (`asForm()`, `$.post`): the events as `events[]=…`.
#[tokio::test]
async fn a_webhook_is_set_from_a_form_body_by_the_same_rules() {
    let app = spawn_app_with_admin_key().await;
    let form = "application/x-www-form-urlencoded";
    let (status, body) = app
        .send_raw(
            reqwest::Method::PUT,
            "/api/whatsapp/webhook",
            form,
            format!(
                "user_id=1&url=https%3A%2F%2F198.51.99.1%2Fh&secret={SECRET}\
                 &events[]=message.sent&events[]=session.status&events[]=message.sent"
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user_id"], 1, "{body}");
    assert_eq!(body["data"]["url"], "https://198.51.99.1/h", "{body}");
    assert_eq!(
        body["data"]["events"],
        json!(["message.sent", "session.status"]),
        "{body}"
    );
    assert_eq!(body["data"]["secret"], SECRET, "{body}");
    assert_eq!(body["data"]["secret_generated"], false, "{body}");
    for (bad, needle) in [
        (
            "user_id=1&url=https%3A%2F%2F198.51.99.1%2Fh&events[]=nope",
            "events",
        ),
        (
            "user_id=1&url=https%3A%2F%2F198.51.99.1%2Fh&events=message.sent",
            "events",
        ),
        ("user_id=1&url=ftp%3A%2F%2Fx", "url"),
        (
            "user_id=1&url=https%3A%2F%2F198.51.99.1%2Fh&secret=short",
            "secret",
        ),
        ("user_id=one&url=https%3A%2F%2F198.51.99.1%2Fh", "user_id"),
    ] {
        let (status, body) = app
            .send_raw(reqwest::Method::PUT, "/api/whatsapp/webhook", form, bad)
            .await;
        assert!(
            assert_error(status, &body, 400).contains(needle),
            "{bad}: {body}"
        );
    }
    let (status, body) = app.get("/api/whatsapp/webhook?user_id=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["events"],
        json!(["message.sent", "session.status"])
    );
}
