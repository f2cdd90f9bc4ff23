//! Number checks over HTTP on the real engine: WhatsApp's own answer (the fake server's
//! `usync` contact query) says which numbers have an account and which are businesses; one
//! query per request, none for numbers asked today; a bulk send can leave out the rest.

use std::collections::BTreeSet;

use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::json;
use testkit::wa::{Server, WAIT};

const ON: &str = "966500000010";
const OFF: &str = "966500000011";
const BUSINESS: &str = "966500000012";

async fn check(s: &Server, numbers: serde_json::Value) -> serde_json::Value {
    let (code, body) = s
        .post(
            "/api/whatsapp/check-numbers",
            json!({"user_id": 1, "place_id": 2, "numbers": numbers}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_answers_number_checks_in_one_query_and_a_bulk_send_skips_the_unregistered() {
    let fake = FakeWhatsApp::new();
    fake.set_not_on_whatsapp(OFF);
    fake.set_business(BUSINESS);
    let s = Server::start(fake).await;
    s.link().await;

    let before = s.fake.number_checks().len();
    let body = check(
        &s,
        json!([format!("+{ON}"), format!("+{OFF}"), format!("+{BUSINESS}")]),
    )
    .await;
    let r = body["data"]["results"].as_array().unwrap();
    assert_eq!(r.len(), 3, "{body}");
    assert_eq!(r[0]["phone_number"], format!("+{ON}"), "{body}");
    assert_eq!(
        (&r[0]["on_whatsapp"], &r[0]["is_business"]),
        (&json!(true), &json!(false)),
        "{body}"
    );
    assert_eq!(
        (&r[1]["on_whatsapp"], &r[1]["is_business"]),
        (&json!(false), &json!(false)),
        "{body}"
    );
    assert_eq!(
        (&r[2]["on_whatsapp"], &r[2]["is_business"]),
        (&json!(true), &json!(true)),
        "{body}"
    );
    let queries = s.fake.number_checks();
    assert_eq!(queries.len(), before + 1, "one usync query: {queries:?}");
    let asked: BTreeSet<&str> = queries[before].iter().map(String::as_str).collect();
    assert_eq!(asked, BTreeSet::from([ON, OFF, BUSINESS]), "{queries:?}");

    // Asked today: answered from the cache, WhatsApp is not asked again.
    let body = check(&s, json!([format!("+{OFF}"), format!("+{BUSINESS}")])).await;
    assert_eq!(body["data"]["results"][0]["on_whatsapp"], false, "{body}");
    assert_eq!(body["data"]["results"][1]["is_business"], true, "{body}");
    assert_eq!(
        s.fake.number_checks().len(),
        before + 1,
        "a repeat asks nothing"
    );

    let (code, body) = s
        .post(
            "/api/whatsapp/send-bulk-messages",
            json!({"user_id": 1, "place_id": 2, "text": "Our new menu", "skip_not_on_whatsapp": true,
                   "recipients": [format!("+{ON}"), format!("+{OFF}")]}),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["total"], 1, "{body}");
    assert_eq!(body["data"]["not_on_whatsapp_skipped"], 1, "{body}");
    assert_eq!(
        body["data"]["not_on_whatsapp_numbers"],
        json!([format!("+{OFF}")]),
        "{body}"
    );
    let to_on = testkit::poll(WAIT, "the bulk message on the wire", || async {
        let sent = s.fake.sent_messages();
        sent.iter()
            .find(|m| m.to.starts_with(ON))
            .cloned()
            .ok_or_else(|| format!("{} sent", sent.len()))
    })
    .await;
    assert!(!to_on.id.is_empty());
    assert!(
        !s.fake.sent_messages().iter().any(|m| m.to.starts_with(OFF)),
        "nothing to the number without WhatsApp"
    );
}
