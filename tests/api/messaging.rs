//! Messaging through the durable outbox: every route of SPEC "Messaging", the pace, the
//! daily cap, retries, and a restart with messages still queued (each sent exactly once).

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use whatsapp_manager::Config;

use crate::helpers::*;

const ME: &str = "966500000009@s.whatsapp.net";

/// Fast pace for tests: what is measured is the order and the count, not the speed.
/// A quick pace, on a server allowed to reach this machine: the tests' webhook receivers and
/// image servers listen on loopback.
pub fn fast(c: &mut Config) {
    fast_public_only(c);
    c.outbound_allow = vec!["127.0.0.1/32".parse().unwrap()];
}

/// A quick pace, with the default outbound policy (public addresses only).
pub fn fast_public_only(c: &mut Config) {
    c.pacing.interval = Duration::from_millis(20);
    c.pacing.jitter = Duration::ZERO;
}

/// A ready pair with `n` named contacts; their ids, most recently active first.
pub async fn pair_with_contacts(app: &TestApp, user: i64, place: i64, n: usize) -> Vec<i64> {
    let now = chrono::Utc::now().timestamp();
    let book: Vec<Value> = (0..n)
        .map(|i| {
            json!({"jid": format!("9665{:08}@s.whatsapp.net", 10_000_000 + user * 1_000 + i as i64),
                   "name": format!("Person {i}"), "last_message_at": now - i as i64 * 60})
        })
        .collect();
    app.set_phonebook(user, place, ME, json!(book)).await;
    app.ready_session(user, place).await;
    app.fetch_and_wait(user, place).await;
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/search?user_id={user}&place_id={place}&limit=1000"
        ))
        .await;
    body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

pub async fn sim_outbox(app: &TestApp, user: i64, place: i64) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/sim/outbox?user_id={user}&place_id={place}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["messages"].as_array().unwrap().clone()
}

pub async fn message(app: &TestApp, user: i64, place: i64, id: i64) -> Value {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id={user}&place_id={place}&limit=1000"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the message is `sent` or `failed`.
pub async fn settled(app: &TestApp, user: i64, place: i64, id: i64) -> Value {
    for _ in 0..300 {
        let m = message(app, user, place, id).await;
        if m["status"] == "sent" || m["status"] == "failed" {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "message {id} never settled: {}",
        message(app, user, place, id).await
    );
}

async fn job(app: &TestApp, user: i64, place: i64, id: i64) -> Value {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages/jobs/{id}?user_id={user}&place_id={place}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

async fn job_done(app: &TestApp, user: i64, place: i64, id: i64) -> Value {
    for _ in 0..400 {
        let j = job(app, user, place, id).await;
        if j["completed"] == true {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} never completed: {}",
        job(app, user, place, id).await
    );
}

#[tokio::test]
async fn a_message_to_a_contact_and_to_a_number_is_queued_then_sent_once_with_its_id() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 3).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[0], "text": "Hello {name}!"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["success"], true);
    let first = &body["data"];
    assert_eq!(first["status"], "queued");
    assert_eq!(
        first["text"], "Hello Person 0!",
        "variables filled per contact"
    );
    assert_eq!(first["whatsapp_message_id"], Value::Null);
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966 55 123 4567", "message": "Plain"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["recipient"], "+966551234567");

    let a = settled(&app, 1, 2, first["id"].as_i64().unwrap()).await;
    let b = settled(&app, 1, 2, body["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(a["status"], "sent", "{a}");
    assert_eq!(b["status"], "sent", "{b}");
    assert!(a["sent_at"].is_string());
    let out = sim_outbox(&app, 1, 2).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["id"], a["whatsapp_message_id"]);
    assert_eq!(out[0]["text"], "Hello Person 0!");
    assert_eq!(out[1]["to"], "+966551234567");
    assert_eq!(out[1]["text"], "Plain");

    // Another tenant sees neither the messages nor the outbox.
    let (_, body) = app.get("/api/whatsapp/messages?user_id=1&place_id=3").await;
    assert_eq!(body["data"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn bad_sends_are_refused_naming_the_field_and_nothing_is_queued() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let long = "x".repeat(4097);
    for (body, want, needle) in [
        (
            json!({"user_id": 1, "place_id": 2, "text": "hi"}),
            400,
            "recipient",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567"}),
            400,
            "text",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": long}),
            400,
            "4096",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "   "}),
            400,
            "text",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "12ab", "text": "hi"}),
            400,
            "phone_number",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "contact_id": ids[0], "text": "hi"}),
            400,
            "not both",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "contact_id": 0, "text": "hi"}),
            400,
            "contact_id",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "contact_id": 999999, "text": "hi"}),
            404,
            "Contact",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "Hi {offer}"}),
            400,
            "{offer}",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "template_id": "nope"}),
            400,
            "template_id",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "a", "template_id": "welcome"}),
            400,
            "not both",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "a", "image_url": "ftp://x/y.png"}),
            400,
            "image_url",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "a", "variables": [1]}),
            400,
            "variables",
        ),
        (
            json!({"user_id": 1, "place_id": 0, "phone_number": "+966551234567", "text": "a"}),
            400,
            "place_id",
        ),
        (
            json!({"user_id": 1, "place_id": 9, "phone_number": "+966551234567", "text": "a"}),
            404,
            "No WhatsApp session found",
        ),
    ] {
        let (status, resp) = app.post("/api/whatsapp/send-message", body.clone()).await;
        let msg = assert_error(status, &resp, want);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // The other tenant's contact is not found.
    let other = pair_with_contacts(&app, 5, 6, 1).await;
    let (status, resp) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": other[0], "text": "a"}),
        )
        .await;
    assert_error(status, &resp, 404);
    // A session that is not linked cannot send.
    app.init(7, 8).await;
    app.wait_status(7, 8, "qr_ready").await;
    let (status, resp) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 7, "place_id": 8, "phone_number": "+966551234567", "text": "a"}),
        )
        .await;
    assert!(assert_error(status, &resp, 400).contains("Current status: qr_ready"));

    let (_, body) = app.get("/api/whatsapp/messages?user_id=1&place_id=2").await;
    assert_eq!(body["data"]["pagination"]["total"], 0, "nothing was queued");
}

#[tokio::test]
async fn a_group_send_is_a_job_that_reaches_every_member_with_its_own_name() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 6).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "VIP", "contact_ids": &ids[..4]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group = body["data"]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/whatsapp/groups/{group}/send-message"),
            json!({"user_id": 1, "place_id": 2, "template_id": "promotion",
                   "variables": {"offer": "20% off.", "valid_until": "Friday"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let j = &body["data"];
    assert_eq!(j["total"], 4);
    assert_eq!(j["group_id"], group);
    let done = job_done(&app, 1, 2, j["job_id"].as_i64().unwrap()).await;
    assert_eq!(done["sent"], 4, "{done}");
    assert_eq!(done["progress"], 100);
    let out = sim_outbox(&app, 1, 2).await;
    let texts: HashSet<String> = out
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    for i in 0..4 {
        assert!(
            texts.contains(&format!("Hi Person {i}! 20% off. Valid until Friday.")),
            "{texts:?}"
        );
    }
    // The job's messages are in the log, filterable by job.
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id=1&place_id=2&job_id={}",
            j["job_id"]
        ))
        .await;
    assert_eq!(body["data"]["pagination"]["total"], 4);

    // Unknown and other tenants' groups are not found; a template's variables are required.
    let (status, resp) = app
        .post(
            "/api/whatsapp/groups/999999/send-message",
            json!({"user_id": 1, "place_id": 2, "text": "hi"}),
        )
        .await;
    assert_error(status, &resp, 404);
    let (status, resp) = app
        .post(
            &format!("/api/whatsapp/groups/{group}/send-message"),
            json!({"user_id": 1, "place_id": 2, "template_id": "promotion"}),
        )
        .await;
    assert!(assert_error(status, &resp, 400).contains("{offer}"));
}

#[tokio::test]
async fn a_bulk_send_takes_numbers_ids_and_objects_skips_repeats_and_refuses_any_bad_one() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Hi {name}, code {code}",
                   "variables": {"code": "A1"},
                   "recipients": ["+966551234567", ids[0],
                                  {"phone_number": "+966551234568", "name": "Sara", "variables": {"code": "B2"}},
                                  "00966551234567"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 3);
    assert_eq!(body["data"]["duplicates_skipped"], 1);
    let done = job_done(&app, 1, 2, body["data"]["job_id"].as_i64().unwrap()).await;
    assert_eq!(done["sent"], 3, "{done}");
    let out = sim_outbox(&app, 1, 2).await;
    let texts: Vec<&str> = out.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["Hi , code A1", "Hi Person 0, code A1", "Hi Sara, code B2"]
    );

    for (recipients, needle) in [
        (json!([]), "recipients"),
        (
            json!(
                (0..101)
                    .map(|i| format!("+9665512{i:05}"))
                    .collect::<Vec<_>>()
            ),
            "recipients",
        ),
        (
            json!(["+966551234567", "+966551234568", "not a number"]),
            "recipients[2]",
        ),
        (json!([{"name": "x"}]), "recipients[0]"),
        (json!([true]), "recipients[0]"),
    ] {
        let (status, resp) = app
            .post(
                "/api/whatsapp/send-bulk-messages",
                json!({"user_id": 1, "place_id": 2, "text": "x", "recipients": recipients}),
            )
            .await;
        assert!(assert_error(status, &resp, 400).contains(needle), "{resp}");
    }
    let (status, resp) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "x", "recipients": ["+966551234567"], "delay_seconds": -1}),
        )
        .await;
    assert!(assert_error(status, &resp, 400).contains("delay_seconds"));
    let (_, body) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    assert_eq!(
        body["data"]["total"], 3,
        "refused requests queued nothing: {body}"
    );
}

#[tokio::test]
async fn a_failed_send_keeps_its_reason_and_retry_sends_it_under_the_same_id() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let (s, b) = app.fault(1, 2, "fail_send").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "hi"}),
        )
        .await;
    let id = body["data"]["id"].as_i64().unwrap();
    let m = settled(&app, 1, 2, id).await;
    assert_eq!(m["status"], "failed");
    assert!(m["error"].as_str().unwrap().contains("refused"), "{m}");
    assert!(m["failed_at"].is_string());

    let (status, body) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=2&status=failed")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["pagination"]["total"], 1);

    let (status, body) = app
        .post(
            &format!("/api/whatsapp/messages/{id}/retry"),
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "queued");
    let m = settled(&app, 1, 2, id).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["error"], Value::Null);
    let out = sim_outbox(&app, 1, 2).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], m["whatsapp_message_id"]);

    let (status, body) = app
        .post(
            &format!("/api/whatsapp/messages/{id}/retry"),
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("Current status: sent"));
    let (status, body) = app
        .post(
            "/api/whatsapp/messages/999999/retry",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app
        .post(
            &format!("/api/whatsapp/messages/{id}/retry"),
            json!({"user_id": 1, "place_id": 3}),
        )
        .await;
    assert_error(status, &body, 404);
}

#[tokio::test]
async fn logs_filter_by_status_type_dates_and_recipient_and_stats_count_them() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let mut last = 0;
    for n in ["+966551234567", "+966551234568", "+966551234569"] {
        let (_, body) = app
            .post(
                "/api/whatsapp/send-message",
                json!({"user_id": 1, "place_id": 2, "phone_number": n, "text": "hi"}),
            )
            .await;
        last = body["data"]["id"].as_i64().unwrap();
    }
    settled(&app, 1, 2, last).await;
    let count = |q: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(&format!("/api/whatsapp/messages?user_id=1&place_id=2&{q}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body["data"]["pagination"]["total"].as_i64().unwrap()
        }
    };
    assert_eq!(count("").await, 3);
    assert_eq!(count("status=sent").await, 3);
    assert_eq!(count("status=queued").await, 0);
    assert_eq!(count("type=text").await, 3);
    assert_eq!(count("type=image").await, 0);
    assert_eq!(count("recipient=1234568").await, 1);
    assert_eq!(count("date_from=2000-01-01").await, 3);
    assert_eq!(count("date_to=2000-01-01").await, 0);
    for (q, field) in [
        ("status=done", "status"),
        ("type=gif", "type"),
        ("date_from=yesterday", "date_from"),
        ("recipient=abc", "recipient"),
        ("job_id=0", "job_id"),
    ] {
        let (status, body) = app
            .get(&format!("/api/whatsapp/messages?user_id=1&place_id=2&{q}"))
            .await;
        assert!(assert_error(status, &body, 400).contains(field), "{q}");
    }
    let (_, body) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    let s = &body["data"];
    assert_eq!(s["total"], 3);
    assert_eq!(s["sent"], 3);
    assert_eq!(s["by_type"]["text"], 3);
    assert_eq!(s["last_24_hours"]["sent"], 3);
    assert_eq!(
        s["last_24_hours"]["remaining"],
        s["last_24_hours"]["daily_cap"].as_i64().unwrap() - 3
    );
}

#[tokio::test]
async fn the_daily_cap_holds_messages_until_the_oldest_send_is_a_day_old() {
    let app = spawn_app_with(|c| {
        fast(c);
        c.pacing.daily_cap = 2;
    })
    .await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, body) = app
            .post(
                "/api/whatsapp/send-message",
                json!({"user_id": 1, "place_id": 2, "phone_number": format!("+96655123456{i}"), "text": "hi"}),
            )
            .await;
        ids.push(body["data"]["id"].as_i64().unwrap());
    }
    settled(&app, 1, 2, ids[1]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(message(&app, 1, 2, ids[2]).await["status"], "queued");
    let (_, body) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    assert_eq!(body["data"]["last_24_hours"]["remaining"], 0);
    app.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    assert_eq!(settled(&app, 1, 2, ids[2]).await["status"], "sent");
}

#[tokio::test]
async fn messages_queued_before_a_restart_are_each_sent_exactly_once_after_it() {
    let app = spawn_app_with(|c| {
        c.pacing.interval = Duration::from_millis(100);
        c.pacing.jitter = Duration::ZERO;
    })
    .await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let recipients: Vec<String> = (0..50).map(|i| format!("+9665512{i:05}")).collect();
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "hi", "recipients": recipients}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job_id = body["data"]["job_id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = app.restart_server().await;
    let before = job(&app, 1, 2, job_id).await;
    assert!(
        before["sent"].as_i64().unwrap() < 50,
        "some were still queued: {before}"
    );
    let done = job_done(&app, 1, 2, job_id).await;
    assert_eq!(done["sent"], 50, "{done}");
    let out = sim_outbox(&app, 1, 2).await;
    assert_eq!(out.len(), 50, "each sent once: {}", out.len());
    let ids: HashSet<&str> = out.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let tos: HashSet<&str> = out.iter().map(|m| m["to"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 50);
    assert_eq!(tos.len(), 50);
    // Paced: no two sends of the number closer than the interval.
    let mut at: Vec<i64> = out
        .iter()
        .map(|m| {
            chrono::DateTime::parse_from_rfc3339(m["sent_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    at.sort_unstable();
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 95), "{at:?}");
}
