//! Opt-outs on the sending side: contacts show and filter them, PATCH sets and clears them,
//! a single send is refused, group and bulk sends skip and count them (and, when asked,
//! numbers not on WhatsApp).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts};

async fn patch(app: &TestApp, id: i64, body: Value) -> (StatusCode, Value) {
    app.request(
        reqwest::Method::PATCH,
        &format!("/api/whatsapp/contacts/{id}"),
        Some(body),
    )
    .await
}

async fn count(app: &TestApp, filter: &str) -> i64 {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/search?user_id=1&place_id=2&{filter}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["pagination"]["total"].as_i64().unwrap()
}

#[tokio::test]
async fn an_opted_out_contact_is_refused_alone_and_skipped_in_groups_and_bulk() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 3).await;
    let (status, body) = patch(
        &app,
        ids[0],
        json!({"user_id": 1, "place_id": 2, "opted_out": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["opted_out"], true, "{body}");
    assert!(body["data"]["opted_out_at"].is_string(), "{body}");
    let phone = body["data"]["phone_number"].as_str().unwrap().to_owned();
    let (status, _) = patch(
        &app,
        ids[0],
        json!({"user_id": 1, "place_id": 2, "opted_out": "yes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Another tenant's pair does not see the contact.
    let (status, _) = patch(
        &app,
        ids[0],
        json!({"user_id": 1, "place_id": 3, "opted_out": false}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(count(&app, "opted_out=true").await, 1);
    assert_eq!(count(&app, "opted_out=false").await, 2);
    let (status, _) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&opted_out=maybe")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Alone: refused by contact and by number; a dry run warns.
    for target in [
        json!({"contact_id": ids[0]}),
        json!({"phone_number": phone}),
    ] {
        let mut body = json!({"user_id": 1, "place_id": 2, "text": "Hi"});
        body.as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        let (status, resp) = app.post("/api/whatsapp/send-message", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
        assert!(
            resp["message"].as_str().unwrap().contains("opted out"),
            "{resp}"
        );
        let (status, resp) = app.post("/api/whatsapp/validate-message", body).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        let warnings = resp["data"]["warnings"].to_string();
        assert!(warnings.contains("opted out"), "{resp}");
    }

    // A group: the opted-out member is skipped and counted.
    let (_, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": &ids}),
        )
        .await;
    let group = body["data"]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/whatsapp/groups/{group}/send-message"),
            json!({"user_id": 1, "place_id": 2, "text": "Hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 2, "{body}");
    assert_eq!(body["data"]["opted_out_skipped"], 1, "{body}");
    assert_eq!(body["data"]["not_on_whatsapp_skipped"], 0, "{body}");
    let job = body["data"]["job_id"].as_i64().unwrap();
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/messages/jobs/{job}?user_id=1&place_id=2"
        ))
        .await;
    assert_eq!(body["data"]["opted_out_skipped"], 1, "{body}");

    // Bulk with skip_not_on_whatsapp: the opted-out number and one without an account left out.
    let (_, c1) = app
        .get(&format!(
            "/api/whatsapp/contacts/{}?user_id=1&place_id=2",
            ids[1]
        ))
        .await;
    let on = c1["data"]["phone_number"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Hi", "skip_not_on_whatsapp": true,
                   "recipients": [on, "+966551234567", phone]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 1, "{body}");
    assert_eq!(body["data"]["opted_out_numbers"], json!([phone]), "{body}");
    assert_eq!(
        body["data"]["not_on_whatsapp_numbers"],
        json!(["+966551234567"]),
        "{body}"
    );
    assert_eq!(body["data"]["not_on_whatsapp_skipped"], 1, "{body}");
    let job = body["data"]["job_id"].as_i64().unwrap();
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/messages/jobs/{job}?user_id=1&place_id=2"
        ))
        .await;
    assert_eq!(body["data"]["not_on_whatsapp_skipped"], 1, "{body}");
    assert_eq!(body["data"]["opted_out_skipped"], 1, "{body}");

    // Without the flag the number without an account is queued; a bad flag is refused.
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Hi", "recipients": ["+966551234567"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Hi", "skip_not_on_whatsapp": "yes", "recipients": [on]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Everyone left out: refused, as an empty group is.
    let (status, body) = app
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Hi", "recipients": [phone]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Cleared: sent again.
    let (status, body) = patch(
        &app,
        ids[0],
        json!({"user_id": 1, "place_id": 2, "opted_out": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["opted_out_at"], Value::Null);
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[0], "text": "Hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
