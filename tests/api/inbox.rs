//! The inbox over HTTP on the sim: what people write is kept once, makes them contacts,
//! forms conversations; files download; reading sends receipts; opt-out words opt out.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SARA: &str = "+966501111111";
const OMAR: &str = "+966502222222";

async fn write(app: &TestApp, user: i64, from: &str, text: &str) -> String {
    let (s, v) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": user, "place_id": 1, "from": from, "text": text, "push_name": "Sara"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["id"].as_str().unwrap().to_owned()
}

/// The incoming message with this WhatsApp id, once the session has kept it.
async fn kept(app: &TestApp, user: i64, wa_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = app
            .get(&format!(
                "/api/whatsapp/messages?user_id={user}&place_id=1&direction=in&limit=100"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if let Some(m) = v["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["whatsapp_message_id"] == wa_id)
        {
            return m.clone();
        }
        assert!(Instant::now() < deadline, "message {wa_id} never kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn conversations(app: &TestApp, user: i64, query: &str) -> Value {
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/conversations?user_id={user}&place_id=1{query}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"].clone()
}

async fn contact(app: &TestApp, user: i64, id: i64) -> Value {
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/contacts/{id}?user_id={user}&place_id=1"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_writing_becomes_a_contact_and_a_conversation() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let id = write(&app, 1, SARA, "hello there").await;
    let m = kept(&app, 1, &id).await;
    assert_eq!(m["direction"], "in");
    assert_eq!(m["status"], "received");
    assert_eq!(m["text"], "hello there", "{m}");
    let data = conversations(&app, 1, "").await;
    assert_eq!(data["pagination"]["total"], 1, "{data}");
    let c = &data["conversations"][0];
    assert_eq!(c["contact"]["phone_number"], SARA);
    assert_eq!(c["contact"]["push_name"], "Sara");
    assert_eq!(c["unread_count"], 1);
    assert_eq!(c["last_message"]["id"], m["id"]);
    let contact_id = c["contact"]["id"].as_i64().unwrap();
    assert_eq!(m["contact_id"], contact_id, "{m}");
    assert!(contact(&app, 1, contact_id).await["last_interaction"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_order_by_newest_count_unread_and_page() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let a1 = write(&app, 1, SARA, "one").await;
    kept(&app, 1, &a1).await;
    let b1 = write(&app, 1, OMAR, "two").await;
    kept(&app, 1, &b1).await;
    let a2 = write(&app, 1, SARA, "three").await;
    kept(&app, 1, &a2).await;
    let data = conversations(&app, 1, "").await;
    let heads: Vec<(String, i64)> = data["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["contact"]["phone_number"].as_str().unwrap().to_owned(),
                c["unread_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(heads, [(SARA.to_owned(), 2), (OMAR.to_owned(), 1)]);

    // An answer to Omar's bare number puts Omar on top.
    let (s, v) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 1, "phone_number": OMAR, "text": "hi Omar"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let page1 = conversations(&app, 1, "&page=1&limit=1").await;
    assert_eq!(page1["pagination"]["total"], 2);
    assert_eq!(page1["conversations"][0]["contact"]["phone_number"], OMAR);
    assert_eq!(
        page1["conversations"][0]["last_message"]["direction"],
        "out"
    );
    let page2 = conversations(&app, 1, "&page=2&limit=1").await;
    assert_eq!(page2["conversations"][0]["contact"]["phone_number"], SARA);

    // Omar's messages, both ways, newest first.
    let omar = page1["conversations"][0]["contact"]["id"].as_i64().unwrap();
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/contacts/{omar}/messages?user_id=1&place_id=1"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dirs: Vec<&str> = v["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["out", "in"]);

    // The log tells the directions apart; the stats count only what was sent.
    let (_, v) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=1&direction=out")
        .await;
    assert_eq!(v["data"]["pagination"]["total"], 1, "{v}");
    let (_, v) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=1&direction=in")
        .await;
    assert_eq!(v["data"]["pagination"]["total"], 3, "{v}");
    let (s, v) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=1&direction=sideways")
        .await;
    assert!(assert_error(s, &v, 400).contains("direction"));
    let (_, v) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=1")
        .await;
    assert_eq!(v["data"]["total"], 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_alike_are_two_messages() {
    // The sim makes a new id per message; the same id twice is the store's promise, held
    // in the conformance suite. Here: two writes are two messages, each kept once.
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let a = write(&app, 1, SARA, "x").await;
    let b = write(&app, 1, SARA, "x").await;
    kept(&app, 1, &a).await;
    kept(&app, 1, &b).await;
    let (_, v) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=1&direction=in")
        .await;
    assert_eq!(v["data"]["pagination"]["total"], 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_downloads_byte_for_byte_and_reading_sends_receipts() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let pdf: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (s, v) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 1, "from": SARA, "text": "the invoice",
                   "media": {"type": "document", "mime_type": "application/pdf",
                             "file_name": "facture é.pdf",
                             "data_base64": base64::engine::general_purpose::STANDARD.encode(&pdf)}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let wa_id = v["data"]["id"].as_str().unwrap().to_owned();
    let m = kept(&app, 1, &wa_id).await;
    assert_eq!(m["type"], "document", "{m}");
    assert_eq!(m["media"]["mime_type"], "application/pdf", "{m}");
    assert_eq!(m["media"]["size_bytes"], pdf.len(), "{m}");
    assert_eq!(m["media"]["file_name"], "facture é.pdf", "{m}");
    let id = m["id"].as_i64().unwrap();

    let res = app
        .client
        .get(format!(
            "{}/api/whatsapp/messages/{id}/media?user_id=1&place_id=1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''facture%20%C3%A9.pdf"),
        "{disposition}"
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), pdf);

    // A text has no file; another pair's message is not found.
    let t = write(&app, 1, SARA, "just text").await;
    let text_id = kept(&app, 1, &t).await["id"].as_i64().unwrap();
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/messages/{text_id}/media?user_id=1&place_id=1"
        ))
        .await;
    assert_error(s, &v, 404);
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/messages/{id}/media?user_id=2&place_id=1"
        ))
        .await;
    assert_error(s, &v, 404);

    // Reading Sara's conversation marks both and tells her phone.
    let contact_id = m["contact_id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/whatsapp/contacts/{contact_id}/read"),
            json!({"user_id": 1, "place_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["marked_read"], 2, "{v}");
    assert_eq!(v["data"]["receipts_sent"], true, "{v}");
    let (_, v) = app.get("/api/sim/read-receipts?user_id=1&place_id=1").await;
    let receipts = v["data"]["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1, "{v}");
    assert_eq!(receipts[0]["chat"], SARA);
    let ids: Vec<&str> = receipts[0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(ids, [wa_id.as_str(), t.as_str()]);
    let data = conversations(&app, 1, "").await;
    assert_eq!(data["conversations"][0]["unread_count"], 0);
    assert!(kept(&app, 1, &wa_id).await["read_at"].is_string());

    // The other two routes say the same; nothing left to mark.
    for path in [
        format!("/api/whatsapp/contacts/{contact_id}/messages/read"),
        format!("/api/whatsapp/conversations/{contact_id}/read"),
    ] {
        let (s, v) = app.post(&path, json!({"user_id": 1, "place_id": 1})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["marked_read"], 0, "{v}");
    }
    let (s, v) = app
        .post(
            "/api/whatsapp/contacts/999999/read",
            json!({"user_id": 1, "place_id": 1}),
        )
        .await;
    assert_error(s, &v, 404);
    let (s, v) = app
        .get("/api/whatsapp/contacts/999999/messages?user_id=1&place_id=1")
        .await;
    assert_error(s, &v, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_sims_cap_or_badly_described_is_refused() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1024 * 1024 + 1]);
    let (s, v) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 1, "from": SARA,
                   "media": {"type": "image", "mime_type": "image/png", "data_base64": big}}),
        )
        .await;
    assert_error(s, &v, 413);
    let (s, v) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 1, "from": SARA,
                   "media": {"type": "hologram", "mime_type": "image/png", "data_base64": ""}}),
        )
        .await;
    assert!(assert_error(s, &v, 400).contains("media.type"));
}

async fn opted_out_after(app: &TestApp, user: i64, from: &str, text: &str) -> bool {
    let id = write(app, user, from, text).await;
    let m = kept(app, user, &id).await;
    // The opt-out is written right after the message: give it the same chance.
    let contact_id = m["contact_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if contact(app, user, contact_id).await["opted_out"] == true {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_default_word_opts_out_whatever_its_case_and_spaces_but_a_sentence_does_not() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let words = ["STOP", "  unsubscribe ", "إيقاف", " الغاء", "Stop"];
    for (i, w) in words.iter().enumerate() {
        let from = format!("+96650300000{i}");
        assert!(opted_out_after(&app, 1, &from, w).await, "{w:?}");
    }
    assert!(!opted_out_after(&app, 1, "+966504000000", "please STOP sending").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_replaces_the_words() {
    let app = spawn_app_with(|c| {
        c.opt_out_words = whatsapp_manager::inbox::OptOutWords::parse("BASTA");
    })
    .await;
    app.ready_session(1, 1).await;
    assert!(!opted_out_after(&app, 1, "+966503000001", "STOP").await);
    assert!(opted_out_after(&app, 1, "+966503000002", "basta").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_sees_only_its_own_inbox() {
    let app = spawn_app_with_admin_key().await;
    app.ready_session(1, 1).await;
    app.ready_session(2, 1).await;
    let a = write(&app, 1, SARA, "for one").await;
    let m = kept(&app, 1, &a).await;
    let (key, _) = app.create_key(json!({"name": "t2", "user_id": 2})).await;
    let (s, v) = app
        .request_as(
            Some(&key),
            reqwest::Method::GET,
            "/api/whatsapp/conversations?user_id=1&place_id=1",
            None,
        )
        .await;
    assert_error(s, &v, 403);
    let (s, v) = app
        .request_as(
            Some(&key),
            reqwest::Method::GET,
            "/api/whatsapp/conversations?user_id=2&place_id=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["pagination"]["total"], 0);
    let contact_id = m["contact_id"].as_i64().unwrap();
    let (s, v) = app
        .request_as(
            Some(&key),
            reqwest::Method::POST,
            &format!("/api/whatsapp/contacts/{contact_id}/read"),
            Some(json!({"user_id": 2, "place_id": 1})),
        )
        .await;
    assert_error(s, &v, 404);
}
