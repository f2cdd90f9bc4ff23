//! Receipts over HTTP on the real engine: messages sent through our API, the recipient's
//! phone (the fake server) reports them delivered, read and played, and the log and the
//! event stream follow, never backwards.

use fake_whatsapp::{FakeWhatsApp, ReceiptKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::{PHONE, Server, WAIT};

const TO: &str = "966500000002";

async fn send(s: &Server, text: &str) -> i64 {
    let (code, body) = s
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": format!("+{TO}"), "text": text}),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

async fn message(s: &Server, id: i64) -> Value {
    let (code, body) = s
        .get("/api/whatsapp/messages?user_id=1&place_id=2&limit=100")
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn reaches(s: &Server, id: i64, status: &str) -> Value {
    testkit::poll(WAIT, &format!("message {id} {status}"), || async {
        let m = message(s, id).await;
        if m["status"] == status {
            Ok(m)
        } else {
            Err(m.to_string())
        }
    })
    .await
}

/// Sent, and seen by the fake server under the id the log shows.
async fn sent(s: &Server, id: i64) -> String {
    let m = reaches(s, id, "sent").await;
    let wa = m["whatsapp_message_id"].as_str().unwrap().to_owned();
    assert!(
        s.fake.wait_sent(&wa, WAIT).await.is_some(),
        "{wa} on the wire"
    );
    wa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipients_receipts_move_sent_messages_on_over_http_and_never_back() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    let mut stream = s
        .http
        .get(format!("{}/api/whatsapp/events?user_id=1", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (a, b) = (
        send(&s, "Your invoice").await,
        send(&s, "Your voice note").await,
    );
    let (wa_a, wa_b) = (sent(&s, a).await, sent(&s, b).await);

    // One receipt for both, as WhatsApp batches them (`<list>`).
    s.fake
        .send_receipt(PHONE, TO, &[&wa_a, &wa_b], ReceiptKind::Delivered)
        .unwrap();
    let ma = reaches(&s, a, "delivered").await;
    reaches(&s, b, "delivered").await;
    assert!(ma["delivered_at"].is_string(), "{ma}");

    s.fake
        .send_receipt(PHONE, TO, &[&wa_a], ReceiptKind::Read)
        .unwrap();
    s.fake
        .send_receipt(PHONE, TO, &[&wa_b], ReceiptKind::Played)
        .unwrap();
    let ma2 = reaches(&s, a, "read").await;
    assert!(ma2["read_at"].is_string(), "{ma2}");
    assert_eq!(ma2["delivered_at"], ma["delivered_at"], "stamped once");
    let mb = reaches(&s, b, "played").await;
    assert!(
        mb["played_at"].is_string() && mb["read_at"].is_string(),
        "{mb}"
    );

    // A late delivered receipt for a, then one for a third message: the connection keeps
    // their order, so once the third moved, a's late one was handled, and a stayed read.
    s.fake
        .send_receipt(PHONE, TO, &[&wa_a], ReceiptKind::Delivered)
        .unwrap();
    let c = send(&s, "Thanks").await;
    let wa_c = sent(&s, c).await;
    s.fake
        .send_receipt(PHONE, TO, &[&wa_c], ReceiptKind::Delivered)
        .unwrap();
    reaches(&s, c, "delivered").await;
    let now_a = message(&s, a).await;
    assert_eq!(now_a["status"], "read", "{now_a}");
    assert_eq!(now_a["read_at"], ma2["read_at"]);

    let seen = testkit::read_until(&mut stream, "\"played\"").await;
    for want in [
        "event: message.delivered",
        "event: message.read",
        wa_a.as_str(),
    ] {
        assert!(seen.contains(want), "{want} in {seen}");
    }
}
