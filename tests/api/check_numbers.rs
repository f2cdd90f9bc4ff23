//! `POST /check-numbers` on the sim: answers in order, invalid entries, limits, the day's
//! cache (the sim counts what it was asked), and the sim's network list.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts};

async fn check(app: &TestApp, numbers: Value) -> (StatusCode, Value) {
    app.post(
        "/api/whatsapp/check-numbers",
        json!({"user_id": 1, "place_id": 2, "numbers": numbers}),
    )
    .await
}

async fn asked(app: &TestApp) -> u64 {
    let (status, body) = app.get("/api/sim/network").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["numbers_checked"].as_u64().unwrap()
}

#[tokio::test]
async fn numbers_are_answered_in_order_and_asked_once_a_day() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 2).await;
    // The phone book's first contact is on WhatsApp; this number is in no book.
    let (status, body) = check(
        &app,
        json!([
            "+966 51 000 1000",
            "not a number",
            "+966551234567",
            966510001000u64,
            "+966510001000"
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = body["data"]["results"].as_array().unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(r[0]["input"], "+966 51 000 1000");
    assert_eq!(r[0]["phone_number"], "+966510001000");
    assert_eq!(r[0]["valid"], true);
    assert_eq!(r[0]["on_whatsapp"], true);
    assert_eq!(r[0]["is_business"], false);
    assert_eq!(r[1]["valid"], false);
    assert_eq!(r[1]["phone_number"], Value::Null);
    assert_eq!(r[1]["on_whatsapp"], false);
    assert_eq!(r[2]["on_whatsapp"], false);
    assert_eq!(r[2]["valid"], true);
    assert_eq!(r[3]["input"], "966510001000");
    assert_eq!(r[3]["on_whatsapp"], true);
    // Two distinct valid numbers, each asked once.
    assert_eq!(asked(&app).await, 2);

    // Cached: asking again asks the engine nothing, even after the world changed.
    app.put(
        "/api/sim/phonebook",
        json!({"user_id": 9, "place_id": 9, "entries": [{"jid": "966551234567@s.whatsapp.net", "is_business": true}]}),
    )
    .await;
    // Setting a phone book forgets the cache: the change is seen.
    let (_, body) = check(&app, json!(["+966551234567", "+966510001000"])).await;
    assert_eq!(body["data"]["results"][0]["on_whatsapp"], true, "{body}");
    assert_eq!(body["data"]["results"][0]["is_business"], true, "{body}");
    assert_eq!(asked(&app).await, 4);
    let (_, body) = check(&app, json!(["+966551234567"])).await;
    assert_eq!(body["data"]["results"][0]["on_whatsapp"], true);
    assert_eq!(asked(&app).await, 4, "a repeat comes from the cache");
}

#[tokio::test]
async fn the_network_list_puts_numbers_on_whatsapp_and_clears_the_cache() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let (_, body) = check(&app, json!(["+966557654321"])).await;
    assert_eq!(body["data"]["results"][0]["on_whatsapp"], false);
    let (status, body) = app
        .put(
            "/api/sim/network",
            json!({"numbers": ["+966 55 765 4321", "+966557654321"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["numbers"], json!(["+966557654321"]));
    let (_, body) = check(&app, json!(["+966557654321"])).await;
    assert_eq!(body["data"]["results"][0]["on_whatsapp"], true, "{body}");
    let (_, body) = app.get("/api/sim/network").await;
    assert_eq!(body["data"]["numbers"], json!(["+966557654321"]));
    let (status, _) = app
        .put("/api/sim/network", json!({"numbers": ["nope"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_requests_are_refused_and_a_session_must_be_ready() {
    let app = spawn_app_with(fast).await;
    // No session.
    let (status, _) = check(&app, json!(["+966551234567"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.init(1, 2).await;
    let (status, body) = check(&app, json!(["+966551234567"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not ready"),
        "{body}"
    );
    pair_with_contacts(&app, 1, 2, 1).await;
    for bad in [
        json!([]),
        json!("+966551234567"),
        json!([true]),
        json!([null]),
        json!([{"n": 1}]),
    ] {
        let (status, body) = check(&app, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let many: Vec<String> = (0..101).map(|i| format!("+9665510{i:05}")).collect();
    let (status, _) = check(&app, json!(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = check(&app, json!(many[..100])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["results"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn the_phone_a_book_belongs_to_is_on_whatsapp() {
    let app = spawn_app_with(fast).await;
    // This pair's phone is +966500000009; another pair's book belongs to +966500000123.
    pair_with_contacts(&app, 1, 2, 1).await;
    app.set_phonebook(3, 4, "966500000123@s.whatsapp.net", json!([]))
        .await;
    let (status, body) = check(&app, json!(["+966500000009", "+966500000123"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = &body["data"]["results"];
    assert_eq!(r[0]["on_whatsapp"], true, "{body}");
    assert_eq!(r[1]["on_whatsapp"], true, "{body}");
    assert_eq!(r[1]["is_business"], false, "{body}");
}
