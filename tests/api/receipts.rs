//! Receipts on the sim: the recipient's phone moves sent messages on to delivered, read and
//! played, never back; events go to the stream and the webhook; the log's filters, the stats
//! and a job's counts follow; `POST /api/sim/receipt` refuses what it cannot send.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::{fast, message, settled};
use crate::webhooks::receiver;

async fn send_to(app: &TestApp, user: i64, place: i64, number: &str) -> i64 {
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": user, "place_id": place, "phone_number": number, "text": "Invoice ready"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// The message once sent, and its WhatsApp id.
async fn sent(app: &TestApp, user: i64, place: i64, id: i64) -> String {
    let m = settled(app, user, place, id).await;
    assert_eq!(m["status"], "sent", "{m}");
    m["whatsapp_message_id"].as_str().unwrap().to_owned()
}

async fn receipt(app: &TestApp, user: i64, place: i64, wa_id: &str, kind: &str) {
    let (status, body) = app
        .post(
            "/api/sim/receipt",
            json!({"user_id": user, "place_id": place, "whatsapp_message_id": wa_id, "kind": kind}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kind"], kind);
    assert_eq!(body["data"]["whatsapp_message_id"], wa_id);
}

/// Receipts are applied after the route answers: wait for the message to get there.
async fn reaches(app: &TestApp, user: i64, place: i64, id: i64, status: &str) -> Value {
    for _ in 0..300 {
        let m = message(app, user, place, id).await;
        if m["status"] == status {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "message {id} never became {status}: {}",
        message(app, user, place, id).await
    );
}

#[tokio::test]
async fn receipts_move_a_message_on_with_its_times_and_never_back() {
    let app = spawn_app_with(fast).await;
    app.ready_session(1, 2).await;
    let a = send_to(&app, 1, 2, "+966551234567").await;
    let b = send_to(&app, 1, 2, "+966551234568").await;
    let (wa_a, wa_b) = (sent(&app, 1, 2, a).await, sent(&app, 1, 2, b).await);

    receipt(&app, 1, 2, &wa_a, "delivered").await;
    let m = reaches(&app, 1, 2, a, "delivered").await;
    assert!(m["delivered_at"].is_string(), "{m}");
    assert_eq!(
        (&m["read_at"], &m["played_at"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(m["whatsapp_message_id"], wa_a.as_str());
    let delivered_at = m["delivered_at"].clone();

    receipt(&app, 1, 2, &wa_a, "read").await;
    let m = reaches(&app, 1, 2, a, "read").await;
    assert!(m["read_at"].is_string(), "{m}");
    assert_eq!(m["delivered_at"], delivered_at, "stamped once");

    // A late delivered receipt, then one for b: receipts of a pair are applied in order, so
    // once b moved, the late one was applied too, and a did not move back.
    receipt(&app, 1, 2, &wa_a, "delivered").await;
    receipt(&app, 1, 2, &wa_b, "played").await;
    let mb = reaches(&app, 1, 2, b, "played").await;
    for t in ["delivered_at", "read_at", "played_at"] {
        assert!(mb[t].is_string(), "played implies {t}: {mb}");
    }
    let m = message(&app, 1, 2, a).await;
    assert_eq!(m["status"], "read", "{m}");
    assert_eq!(m["delivered_at"], delivered_at);
}

#[tokio::test]
async fn receipts_are_told_on_the_stream_and_to_the_webhook() {
    let app = spawn_app_with(fast).await;
    let (url, got) = receiver().await;
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": url, "secret": "test-webhook-secret-123",
                   "events": ["message.delivered", "message.read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.ready_session(1, 2).await;
    let mut stream = app.event_stream(1).await;
    let id = send_to(&app, 1, 2, "+966551234567").await;
    let wa = sent(&app, 1, 2, id).await;
    receipt(&app, 1, 2, &wa, "delivered").await;
    receipt(&app, 1, 2, &wa, "read").await;
    receipt(&app, 1, 2, &wa, "read").await;
    receipt(&app, 1, 2, &wa, "played").await;

    let seen = read_until(&mut stream, "\"played\"").await;
    assert!(seen.contains("event: message.delivered"), "{seen}");
    assert!(seen.contains("event: message.read"), "{seen}");

    let mut events = Vec::new();
    for _ in 0..300 {
        events = got
            .all()
            .iter()
            .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
            .collect();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only what the webhook subscribes to; the repeated read changed nothing, so no event.
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["data"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("message.delivered", "delivered"),
            ("message.read", "read"),
            ("message.read", "played")
        ]
    );
    let d = &events[1]["data"];
    assert_eq!(d["message_id"], id);
    assert_eq!(d["whatsapp_message_id"], wa.as_str());
    assert_eq!(d["recipient"], "+966551234567");
    assert_eq!(
        (events[1]["user_id"].clone(), events[1]["place_id"].clone()),
        (json!(1), json!(2))
    );
    assert!(
        d["delivered_at"].is_string() && d["read_at"].is_string(),
        "{d}"
    );
    assert_eq!(d["played_at"], Value::Null);
}

#[tokio::test]
async fn filters_stats_and_job_counts_follow_receipts_and_the_job_stays_completed() {
    let app = spawn_app_with(fast).await;
    app.ready_session(1, 2).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Sale",
                   "recipients": ["+966551234561", "+966551234562", "+966551234563", "+966551234564"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (
            body["data"]["delivered"].clone(),
            body["data"]["read"].clone()
        ),
        (json!(0), json!(0))
    );
    let job = body["data"]["job_id"].as_i64().unwrap();
    let ids: Vec<i64> = body["data"]["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let mut wa = Vec::new();
    for id in &ids {
        wa.push(sent(&app, 1, 2, *id).await);
    }
    receipt(&app, 1, 2, &wa[0], "delivered").await;
    receipt(&app, 1, 2, &wa[1], "read").await;
    receipt(&app, 1, 2, &wa[2], "played").await;
    reaches(&app, 1, 2, ids[0], "delivered").await;
    reaches(&app, 1, 2, ids[1], "read").await;
    reaches(&app, 1, 2, ids[2], "played").await;

    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages/jobs/{job}?user_id=1&place_id=2"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let j = &body["data"];
    assert_eq!(
        (
            &j["sent"],
            &j["delivered"],
            &j["read"],
            &j["played"],
            &j["failed"]
        ),
        (&json!(4), &json!(3), &json!(2), &json!(1), &json!(0)),
        "{j}"
    );
    assert_eq!(
        (&j["completed"], &j["progress"]),
        (&json!(true), &json!(100)),
        "{j}"
    );

    let (status, body) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = &body["data"];
    assert_eq!(
        (
            &s["total"],
            &s["sent"],
            &s["delivered"],
            &s["read"],
            &s["played"]
        ),
        (&json!(4), &json!(4), &json!(3), &json!(2), &json!(1)),
        "{s}"
    );

    // The earlier service's `status=delivered`, and every receipt status: the status now.
    for (status_name, want) in [
        ("delivered", vec![ids[0]]),
        ("read", vec![ids[1]]),
        ("played", vec![ids[2]]),
        ("sent", vec![ids[3]]),
    ] {
        let (status, body) = app
            .get(&format!(
                "/api/whatsapp/messages?user_id=1&place_id=2&status={status_name}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let got: Vec<i64> = body["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, want, "status={status_name}");
    }
    let (status, body) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=2&status=seen")
        .await;
    assert!(assert_error(status, &body, 400).contains("delivered"));
}

#[tokio::test]
async fn the_sim_receipt_route_refuses_bad_input_unknown_messages_and_tenant_keys() {
    let app = spawn_app_with_admin_key_and(fast).await;
    app.ready_session(1, 2).await;
    app.ready_session(1, 3).await;
    let id = send_to(&app, 1, 2, "+966551234567").await;
    let wa = sent(&app, 1, 2, id).await;
    let other = send_to(&app, 1, 3, "+966551234567").await;
    let wa_other = sent(&app, 1, 3, other).await;

    let post = |body: Value| app.post("/api/sim/receipt", body);
    for (body, field) in [
        (
            json!({"user_id": 1, "place_id": 2, "whatsapp_message_id": wa, "kind": "seen"}),
            "kind",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "whatsapp_message_id": wa}),
            "kind",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "whatsapp_message_id": wa, "kind": 1}),
            "kind",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "kind": "read"}),
            "whatsapp_message_id",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "whatsapp_message_id": " ", "kind": "read"}),
            "whatsapp_message_id",
        ),
        (
            json!({"user_id": 1, "whatsapp_message_id": wa, "kind": "read"}),
            "place_id",
        ),
    ] {
        let (status, resp) = post(body.clone()).await;
        let msg = assert_error(status, &resp, 400);
        assert!(msg.contains(field), "{body}: {msg}");
    }
    // Another pair's message, or none at all: the simulated phone sent no such message.
    for unknown in [wa_other.as_str(), "3EB0NOSUCHMESSAGE"] {
        let (status, resp) = post(json!({"user_id": 1, "place_id": 2,
                                          "whatsapp_message_id": unknown, "kind": "read"}))
        .await;
        assert!(assert_error(status, &resp, 404).contains(unknown), "{resp}");
    }
    // A pair with no live client.
    let (status, resp) = post(json!({"user_id": 1, "place_id": 9,
                                      "whatsapp_message_id": wa, "kind": "read"}))
    .await;
    assert_error(status, &resp, 404);

    // A tenant key may not drive the network, and cannot read another user's receipts.
    let (key, _) = app.create_key(json!({"user_id": 1})).await;
    let (status, resp) = app
        .request_as(
            Some(&key),
            Method::POST,
            "/api/sim/receipt",
            Some(json!({"user_id": 1, "place_id": 2, "whatsapp_message_id": wa, "kind": "read"})),
        )
        .await;
    assert_error(status, &resp, 403);
    receipt(&app, 1, 2, &wa, "read").await;
    reaches(&app, 1, 2, id, "read").await;
    let (key2, _) = app.create_key(json!({"user_id": 2})).await;
    let (status, resp) = app
        .request_as(
            Some(&key2),
            Method::GET,
            "/api/whatsapp/messages?user_id=1&place_id=2&status=read",
            None,
        )
        .await;
    assert_error(status, &resp, 403);
    // The other pair's message with the same recipient did not move.
    assert_eq!(message(&app, 1, 3, other).await["status"], "sent");
}
