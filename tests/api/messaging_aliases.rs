//! Messaging as a client of the earlier service calls it: its filter names, body names,
//! numeric strings, form bodies, and the WhatsApp ids it reads back.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::message_checks::image_server;
use crate::messaging::{fast, message, pair_with_contacts, settled, sim_outbox};

const FORM: &str = "application/x-www-form-urlencoded";

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The ids of the pair's messages a query finds, and its total.
async fn found(app: &TestApp, query: &str) -> (Vec<i64>, Value) {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id=1&place_id=2&limit=1000{query}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let messages = body["data"]["messages"].as_array().unwrap();
    let mut ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    (ids, body)
}

async fn refused(app: &TestApp, query: &str) -> String {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id=1&place_id=2{query}"
        ))
        .await;
    assert_error(status, &body, 400)
}

async fn stats_total(app: &TestApp, query: &str) -> i64 {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages/stats?user_id=1&place_id=2{query}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["data"]["total"].as_i64().unwrap()
}

async fn job_completed(app: &TestApp, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app
            .get(&format!(
                "/api/whatsapp/messages/jobs/{id}?user_id=1&place_id=2"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["data"]["completed"] == true {
            return body["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never completed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_message_log_takes_the_earlier_service_filter_names_and_a_group_id() {
    // A cap of one: the first message goes, every later one stays queued.
    let app = spawn_app_with(|c| {
        fast(c);
        c.pacing.daily_cap = 1;
    })
    .await;
    let ids = pair_with_contacts(&app, 1, 2, 3).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "VIP", "contact_ids": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let vip = body["data"]["id"].as_i64().unwrap();

    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let first = body["data"]["id"].as_i64().unwrap();
    assert_eq!(settled(&app, 1, 2, first).await["status"], "sent");
    let (status, body) = app
        .post(
            &format!("/api/whatsapp/groups/{vip}/send-message"),
            json!({"user_id": 1, "place_id": 2, "text": "to the group"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let group_job = body["data"]["job_id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "bulk", "recipients": ["+966551234568"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (all, _) = found(&app, "").await;
    assert_eq!(all.len(), 4);

    // `pending` is `queued`.
    let (queued, _) = found(&app, "&status=queued").await;
    let (pending, body) = found(&app, "&status=pending").await;
    assert_eq!(queued.len(), 3, "{body}");
    assert_eq!(pending, queued);
    assert_eq!(stats_total(&app, "&status=pending").await, 3);

    // A group's sends, through its jobs; another group, or no such group, finds nothing.
    let (in_vip, body) = found(&app, &format!("&group_id={vip}")).await;
    assert_eq!(in_vip.len(), 2, "{body}");
    assert!(
        body["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["job_id"] == group_job),
        "{body}"
    );
    assert_eq!(stats_total(&app, &format!("&group_id={vip}")).await, 2);
    let everyone = app.group_id(1, 2, "جميع الارقام").await;
    assert!(
        found(&app, &format!("&group_id={everyone}"))
            .await
            .0
            .is_empty()
    );
    assert!(found(&app, "&group_id=999999").await.0.is_empty());
    for bad in ["abc", "0", "-1"] {
        assert!(
            refused(&app, &format!("&group_id={bad}"))
                .await
                .contains("group_id")
        );
    }
    // Another tenant naming this pair's group sees nothing of it.
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id=1&place_id=3&group_id={vip}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["pagination"]["total"], 0);

    // `message_type` is `type`.
    assert_eq!(found(&app, "&message_type=text").await.0, all);
    assert!(found(&app, "&message_type=image").await.0.is_empty());
    assert_eq!(stats_total(&app, "&message_type=image").await, 0);
    assert!(
        refused(&app, "&message_type=gif")
            .await
            .contains("message_type")
    );

    // `recipient_number` is `recipient`.
    let (bulk_one, _) = found(&app, "&recipient_number=551234568").await;
    assert_eq!(bulk_one.len(), 1);
    assert_eq!(
        found(&app, "&recipient=551234568&recipient_number=551234568")
            .await
            .0,
        bulk_one
    );
    assert!(
        refused(&app, "&recipient_number=abc")
            .await
            .contains("recipient_number")
    );

    // `from_date` / `to_date` are `date_from` / `date_to`.
    assert_eq!(found(&app, "&from_date=2000-01-01").await.0, all);
    assert!(found(&app, "&from_date=2999-01-01").await.0.is_empty());
    assert!(found(&app, "&to_date=2000-01-01").await.0.is_empty());
    assert_eq!(stats_total(&app, "&to_date=2000-01-01").await, 0);
    assert!(refused(&app, "&to_date=soon").await.contains("to_date"));

    // Both names with different values: refused, naming both.
    for (query, a, b) in [
        ("&type=text&message_type=image", "type", "message_type"),
        (
            "&date_from=2000-01-01&from_date=2001-01-01",
            "date_from",
            "from_date",
        ),
        (
            "&date_to=2000-01-01&to_date=2001-01-01",
            "date_to",
            "to_date",
        ),
        (
            "&recipient=5512&recipient_number=5513",
            "recipient",
            "recipient_number",
        ),
    ] {
        let message = refused(&app, query).await;
        assert!(
            message.contains(a) && message.contains(b),
            "{query}: {message}"
        );
        let (status, body) = app
            .get(&format!(
                "/api/whatsapp/messages/stats?user_id=1&place_id=2{query}"
            ))
            .await;
        assert_error(status, &body, 400);
    }
    assert_eq!(
        found(&app, "&type=text&message_type=text").await.0,
        all,
        "the same value under both names is one filter"
    );
}

#[tokio::test]
async fn sends_take_the_earlier_service_body_names_and_answer_whatsapp_ids() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;

    // A contact id as a string, and `message` for `text`; the answer's `message_id` is the
    // WhatsApp id the message goes out under.
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": "1", "place_id": "2", "contact_id": ids[0].to_string(),
                   "message": "Hello {name}"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let data = &body["data"];
    assert_eq!(data["text"], "Hello Person 0");
    assert_eq!(data["contact_id"], ids[0]);
    let wa_id = data["message_id"].as_str().expect("message_id").to_owned();
    assert!(wa_id.starts_with("3EB0"), "{body}");
    let sent = settled(&app, 1, 2, data["id"].as_i64().unwrap()).await;
    assert_eq!(sent["whatsapp_message_id"], wa_id.as_str());
    assert_eq!(sim_outbox(&app, 1, 2).await[0]["id"], wa_id.as_str());
    for bad in [json!("abc"), json!("0"), json!("1.5"), json!(true)] {
        let (status, body) = app
            .post(
                "/api/whatsapp/send-message",
                json!({"user_id": 1, "place_id": 2, "contact_id": bad, "text": "x"}),
            )
            .await;
        assert!(
            assert_error(status, &body, 400).contains("contact_id"),
            "{body}"
        );
    }

    // A group send answers the ids of its messages, ours and WhatsApp's.
    let everyone = app.group_id(1, 2, "جميع الارقام").await;
    let (status, body) = app
        .post(
            &format!("/api/whatsapp/groups/{everyone}/send-message"),
            json!({"user_id": 1, "place_id": 2, "message": "Hi {name}"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ours: Vec<i64> = serde_json::from_value(body["data"]["message_ids"].clone())
        .unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(ours.len(), 2);
    let group_ids: Vec<String> =
        serde_json::from_value(body["data"]["whatsapp_message_ids"].clone())
            .unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(group_ids.len(), 2);
    job_completed(&app, body["data"]["job_id"].as_i64().unwrap()).await;
    // Ours name the log's messages, and each was sent under the WhatsApp id beside it.
    for (id, wa) in ours.iter().zip(&group_ids) {
        let m = message(&app, 1, 2, *id).await;
        assert_eq!(m["whatsapp_message_id"], wa.as_str(), "{m}");
    }
    let out = sim_outbox(&app, 1, 2).await;
    let out_ids: Vec<&str> = out.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        out_ids[1..],
        group_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // A bulk send with `contacts` and `delay` in milliseconds: 1.5 s between its messages,
    // on a pace of 20 ms.
    let started = Instant::now();
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "message": "Hi {name}", "delay": 1500,
                   "contacts": [{"contact_id": ids[1].to_string()},
                                {"phone_number": "+966551234569", "name": "Sara"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 2);
    let bulk_ids: Vec<String> =
        serde_json::from_value(body["data"]["whatsapp_message_ids"].clone())
            .unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        body["data"]["message_ids"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(bulk_ids.len(), 2);
    job_completed(&app, body["data"]["job_id"].as_i64().unwrap()).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "delay is milliseconds between messages: {:?}",
        started.elapsed()
    );
    let out = sim_outbox(&app, 1, 2).await;
    let tail: Vec<(&str, &str)> = out[3..]
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tail,
        [
            (bulk_ids[0].as_str(), "Hi Person 1"),
            (bulk_ids[1].as_str(), "Hi Sara")
        ]
    );

    // The same limits, in either unit; each form once.
    let bulk = |extra: Value| {
        let mut b = json!({"user_id": 1, "place_id": 2, "text": "x",
                           "recipients": ["+966551234567"]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, names) in [
        (json!({"delay": 3_600_001}), vec!["delay"]),
        (json!({"delay": -1}), vec!["delay"]),
        (json!({"delay": "1e3"}), vec!["delay"]),
        (json!({"delay_seconds": "abc"}), vec!["delay_seconds"]),
        (json!({"delay_seconds": "3601"}), vec!["delay_seconds"]),
        (
            json!({"delay_seconds": 1, "delay": 1000}),
            vec!["delay_seconds", "delay"],
        ),
        (
            json!({"contacts": ["+966551234568"]}),
            vec!["recipients", "contacts"],
        ),
        (
            json!({"recipients": null, "contacts": [{"name": "x"}]}),
            vec!["contacts[0]"],
        ),
        (
            json!({"recipients": [{"contact_id": "x1"}]}),
            vec!["recipients[0].contact_id"],
        ),
    ] {
        let (status, resp) = app
            .post("/api/whatsapp/send-bulk-messages", bulk(extra.clone()))
            .await;
        let message = assert_error(status, &resp, 400);
        assert!(
            names.iter().all(|n| message.contains(n)),
            "{extra}: {message}"
        );
    }
    for extra in [
        json!({"delay_seconds": "0.5"}),
        json!({"delay": "250"}),
        json!({"recipients": null, "contacts": ["+966551234567"]}),
    ] {
        let (status, resp) = app
            .post("/api/whatsapp/send-bulk-messages", bulk(extra.clone()))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{extra}: {resp}");
    }

    // A dry run takes the same names.
    let (status, body) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[0].to_string(),
                   "message": "Hi {name}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], true, "{body}");
    assert_eq!(body["data"]["preview"], "Hi Person 0");
}

#[tokio::test]
async fn templates_carry_their_text_as_content_and_a_category() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/whatsapp/templates").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let templates = body["data"]["templates"].as_array().unwrap();
    for t in templates {
        assert_eq!(t["content"], t["text"], "{t}");
    }
    let category = |id: &str| {
        templates
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["category"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(category("welcome"), "greeting");
    assert_eq!(category("welcome_ar"), "greeting");
    assert_eq!(category("promotion"), "marketing");
    assert_eq!(category("promotion_ar"), "marketing");
    assert_eq!(category("reminder"), "reminder");
    assert_eq!(category("thank_you"), "greeting");
}

#[tokio::test]
async fn every_messaging_post_takes_a_form_body_like_its_json() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;

    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/send-message",
            FORM,
            format!(
                "user_id=1&place_id=2&contact_id={}&message={}&variables[offer]={}",
                ids[0],
                enc("Hello {name}: {offer}"),
                enc("20% off")
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["text"], "Hello Person 0: 20% off");
    assert!(body["data"]["message_id"].is_string(), "{body}");
    let single = body["data"]["id"].as_i64().unwrap();

    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/send-bulk-messages",
            FORM,
            format!(
                "user_id=1&place_id=2&text={}&variables[code]=A1&delay_seconds=0\
                 &recipients[0][phone_number]={}&recipients[0][name]=Sara\
                 &recipients[0][variables][code]=B2&recipients[1][contact_id]={}",
                enc("Hi {name} {code}"),
                enc("+966551234567"),
                ids[1]
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 2);
    job_completed(&app, body["data"]["job_id"].as_i64().unwrap()).await;
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/send-bulk-messages",
            FORM,
            format!(
                "user_id=1&place_id=2&text=x&contacts[]={}&contacts[]={}&delay=0",
                enc("+966551234568"),
                enc("+966551234569")
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 2);
    job_completed(&app, body["data"]["job_id"].as_i64().unwrap()).await;

    let everyone = app.group_id(1, 2, "جميع الارقام").await;
    let (status, body) = app
        .send_raw(
            Method::POST,
            &format!("/api/whatsapp/groups/{everyone}/send-message"),
            FORM,
            "user_id=1&place_id=2&template_id=welcome",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    job_completed(&app, body["data"]["job_id"].as_i64().unwrap()).await;
    let texts: Vec<String> = sim_outbox(&app, 1, 2)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts[1..3], ["Hi Sara B2", "Hi Person 1 A1"]);
    assert!(texts[5].starts_with("Hello Person"), "{texts:?}");

    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/validate-message",
            FORM,
            format!(
                "user_id=1&place_id=2&contact_id={}&text={}",
                ids[1],
                enc("Hi {first_name}")
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["preview"], "Hi Person", "{body}");

    let images = image_server().await;
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/test-image-url",
            FORM,
            format!("image_url={}", enc(&format!("{images}/img.png"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], true, "{body}");
    assert_eq!(body["data"]["content_type"], "image/png");

    settled(&app, 1, 2, single).await;
    let (status, body) = app
        .send_raw(
            Method::POST,
            &format!("/api/whatsapp/messages/{single}/retry"),
            FORM,
            "user_id=1&place_id=2",
        )
        .await;
    assert!(
        assert_error(status, &body, 400).contains("Only failed messages"),
        "{body}"
    );

    // A form field in the wrong shape is named like its JSON twin.
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/whatsapp/send-message",
            FORM,
            "user_id=1&place_id=2&contact_id=twelve&text=x",
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("contact_id"));
}
