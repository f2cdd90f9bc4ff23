//! The earlier service's README showed a Laravel client, and back offices run it today. Its
//! calls, replayed the way Laravel's `Http` facade makes them — ids as the strings PHP's request
//! input gives, JSON by default, `asForm()` where the example posts a form — and what it reads
//! from each answer.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::{fast, sim_outbox};

const ME: &str = "966500000077@s.whatsapp.net";
const BASE: &str = "/api/whatsapp";

/// What the sim's phone received, by WhatsApp message id, once `n` messages are there.
async fn delivered(app: &TestApp, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let out = sim_outbox(app, 1, 1).await;
        if out.len() >= n {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} messages reached WhatsApp: {:?}",
        sim_outbox(app, 1, 1).await
    );
}

/// `Http::asForm()->post(...)`: PHP's `http_build_query` of the same array.
async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    app.send_raw(
        Method::POST,
        path,
        "application/x-www-form-urlencoded",
        body,
    )
    .await
}

#[tokio::test]
async fn the_laravel_client_of_the_earlier_service_works_unchanged() {
    let app = spawn_app_with(fast).await;
    let now = chrono::Utc::now().timestamp();
    app.set_phonebook(
        1,
        1,
        ME,
        json!([
            person("966501110001", Some("John Smith"), Some(now - 60)),
            person("966501110002", Some("Johnny Appleseed"), Some(now - 120)),
            person("966501110003", Some("Sara Ali"), Some(now - 180)),
            person("966501110004", Some("Mona"), Some(now - 240)),
        ]),
    )
    .await;
    app.ready_session(1, 1).await;
    app.fetch_and_wait(1, 1).await;

    // $status = Http::get("$base/status", ['user_id' => $u, 'place_id' => $p])
    //     ->json()['data']['status'];
    let (s, v) = app
        .get(&format!("{BASE}/status?user_id=1&place_id=1"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["status"], "ready", "{v}");

    // $response = Http::post("$base/send-message", ['user_id' => '1', 'place_id' => '1',
    //     'phone_number' => $phone, 'message' => $text]);
    // $id = $response->json()['data']['message_id'];
    let (s, v) = app
        .post(
            &format!("{BASE}/send-message"),
            json!({"user_id": "1", "place_id": "1", "phone_number": "+966501110003",
                   "message": "Your order is ready"}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let message_id = v["data"]["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.message_id: {v}"))
        .to_owned();
    assert!(!message_id.is_empty());
    // The id it stores is WhatsApp's own: the one the phone receives.
    let out = delivered(&app, 1).await;
    assert_eq!(out[0]["id"], message_id.as_str(), "{out:?}");
    assert_eq!(out[0]["to"], "+966501110003");
    assert_eq!(out[0]["text"], "Your order is ready");

    // $contacts = Http::get("$base/contacts/search", ['user_id' => $u, 'place_id' => $p,
    //     'q' => 'john'])->json()['data']['contacts'];
    let (s, v) = app
        .get(&format!(
            "{BASE}/contacts/search?user_id=1&place_id=1&q=john"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: BTreeSet<&str> = v["data"]["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["John Smith", "Johnny Appleseed"]),
        "{v}"
    );
    let john_id = v["data"]["contacts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "John Smith"))
        .map(|c| c["id"].to_string())
        .expect("John's id");

    // Http::post("$base/send-bulk-messages", ['user_id' => '1', 'place_id' => '1',
    //     'recipients' => [['phone_number' => ..., 'name' => ...], ['contact_id' => '12']],
    //     'message' => 'Hello {name}', 'delay_seconds' => '1']);
    let (s, v) = app
        .post(
            &format!("{BASE}/send-bulk-messages"),
            json!({"user_id": "1", "place_id": "1",
                   "recipients": [{"phone_number": "+966501110004", "name": "Mona"},
                                  {"contact_id": john_id}],
                   "message": "Hello {name}", "delay_seconds": "1"}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let ids = v["data"]["message_ids"].as_array().expect("message_ids");
    assert_eq!(ids.len(), 2, "{v}");
    let out = delivered(&app, 3).await;
    let texts: BTreeSet<&str> = out[1..].iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(
        texts,
        BTreeSet::from(["Hello John Smith", "Hello Mona"]),
        "{out:?}"
    );

    // The same two calls with `asForm()`.
    let (s, v) = post_form(
        &app,
        &format!("{BASE}/send-message"),
        &[
            ("user_id", "1"),
            ("place_id", "1"),
            ("contact_id", &john_id),
            ("message", "Form hello"),
        ],
    )
    .await;
    assert!(s.is_success(), "{s} {v}");
    let form_id = v["data"]["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();
    let (s, v) = post_form(
        &app,
        &format!("{BASE}/send-bulk-messages"),
        &[
            ("user_id", "1"),
            ("place_id", "1"),
            ("recipients[0][phone_number]", "+966501110003"),
            ("recipients[0][name]", "Sara"),
            ("recipients[1][contact_id]", &john_id),
            ("message", "Bulk {name}"),
            ("delay_seconds", "1"),
        ],
    )
    .await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(
        v["data"]["message_ids"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    let out = delivered(&app, 6).await;
    assert!(
        out.iter()
            .any(|m| m["id"] == form_id.as_str() && m["text"] == "Form hello"),
        "{out:?}"
    );
    let texts: BTreeSet<&str> = out.iter().filter_map(|m| m["text"].as_str()).collect();
    let want = [
        "Your order is ready",
        "Hello John Smith",
        "Hello Mona",
        "Form hello",
        "Bulk John Smith",
        "Bulk Sara",
    ];
    assert_eq!(texts, BTreeSet::from(want), "{out:?}");
    assert_eq!(out.len(), want.len(), "each sent exactly once: {out:?}");
}
