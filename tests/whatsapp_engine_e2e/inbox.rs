//! The inbox over HTTP on the real engine: a contact's phone (the fake server) writes a text
//! and sends files; they land in the conversations and the contact's messages, the files
//! download byte-equal through our API (fetched from the media server and decrypted by the
//! client), reading the conversation sends WhatsApp read receipts, and "STOP" opts out.

use std::collections::BTreeSet;

use fake_whatsapp::{FakeWhatsApp, PhoneMedia, PhoneMediaKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::{PHONE, Server, WAIT};

const SARA: &str = "966500000003";

fn sara_jid() -> String {
    format!("{SARA}@s.whatsapp.net")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1_700_000_000)
}

/// The incoming message that matches, once the session has kept it.
async fn kept(s: &Server, what: &str, hit: impl Fn(&Value) -> bool) -> Value {
    testkit::poll(WAIT, what, || async {
        let (code, body) = s
            .get("/api/whatsapp/messages?user_id=1&place_id=2&direction=in&limit=100")
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body["data"]["messages"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| hit(m)).cloned())
            .ok_or_else(|| body.to_string())
    })
    .await
}

async fn by_wa_id(s: &Server, wa_id: &str) -> Value {
    kept(s, &format!("message {wa_id} kept"), |m| {
        m["whatsapp_message_id"] == wa_id
    })
    .await
}

/// The file as our API hands it over, with its content type.
async fn download(s: &Server, id: i64) -> (StatusCode, String, Vec<u8>) {
    let res = s
        .http
        .get(format!(
            "{}/api/whatsapp/messages/{id}/media?user_id=1&place_id=2",
            s.base
        ))
        .send()
        .await
        .expect("GET media");
    let code = res.status();
    let mime = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (code, mime, res.bytes().await.expect("body").to_vec())
}

/// Bytes no two files share, long enough to span several AES blocks and 64 KiB chunks.
fn file_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_text_and_files_land_in_the_inbox_download_and_get_read_receipts() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;

    s.fake
        .send_message(PHONE, &sara_jid(), "Sara", "Is the shop open today?", now())
        .await
        .expect("text delivered");
    let text = kept(&s, "Sara's text kept", |m| {
        m["text"] == "Is the shop open today?"
    })
    .await;
    assert_eq!(text["type"], "text", "{text}");
    assert_eq!(text["direction"], "in", "{text}");
    assert_eq!(text["status"], "received", "{text}");
    assert!(text["media"].is_null(), "{text}");

    let pdf = file_bytes(7, 150_000);
    let mut doc = PhoneMedia::new(PhoneMediaKind::Document, pdf.clone(), "application/pdf");
    doc.file_name = Some("facture é.pdf".into());
    doc.caption = Some("my order".into());
    let doc_wa = s
        .fake
        .send_media(PHONE, &sara_jid(), "Sara", doc, now())
        .await
        .expect("document delivered");
    let jpeg = file_bytes(99, 20_000);
    let mut image = PhoneMedia::new(PhoneMediaKind::Image, jpeg.clone(), "image/jpeg");
    image.caption = Some("this one".into());
    let image_wa = s
        .fake
        .send_media(PHONE, &sara_jid(), "Sara", image, now())
        .await
        .expect("image delivered");
    let ogg = file_bytes(3, 5_000);
    let mut voice = PhoneMedia::new(PhoneMediaKind::Audio, ogg.clone(), "audio/ogg; codecs=opus");
    voice.voice_note = true;
    let voice_wa = s
        .fake
        .send_media(PHONE, &sara_jid(), "Sara", voice, now())
        .await
        .expect("voice note delivered");

    let d = by_wa_id(&s, &doc_wa).await;
    assert_eq!(d["type"], "document", "{d}");
    assert_eq!(d["text"], "my order", "{d}");
    assert_eq!(d["media"]["mime_type"], "application/pdf", "{d}");
    assert_eq!(d["media"]["size_bytes"], pdf.len(), "{d}");
    assert_eq!(d["media"]["file_name"], "facture é.pdf", "{d}");
    let i = by_wa_id(&s, &image_wa).await;
    assert_eq!(i["type"], "image", "{i}");
    assert_eq!(i["text"], "this one", "{i}");
    assert_eq!(i["media"]["mime_type"], "image/jpeg", "{i}");
    let v = by_wa_id(&s, &voice_wa).await;
    assert_eq!(v["type"], "audio", "{v}");
    assert_eq!(v["media"]["voice_note"], true, "{v}");

    // One conversation with Sara, everything unread; her messages, newest first.
    let (code, body) = s
        .get("/api/whatsapp/conversations?user_id=1&place_id=2")
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["pagination"]["total"], 1, "{body}");
    let c = &body["data"]["conversations"][0];
    assert_eq!(c["contact"]["phone_number"], format!("+{SARA}"), "{c}");
    assert_eq!(c["unread_count"], 4, "{c}");
    let contact_id = c["contact"]["id"].as_i64().unwrap();
    assert_eq!(d["contact_id"], contact_id, "{d}");
    let (code, body) = s
        .get(&format!(
            "/api/whatsapp/contacts/{contact_id}/messages?user_id=1&place_id=2"
        ))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let listed: BTreeSet<String> = body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["whatsapp_message_id"].as_str().unwrap().to_owned())
        .collect();
    let text_wa = text["whatsapp_message_id"].as_str().unwrap().to_owned();
    let all: BTreeSet<String> = [&text_wa, &doc_wa, &image_wa, &voice_wa]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(listed, all, "{body}");

    // Each file comes back as the phone sent it.
    for (m, bytes, mime) in [
        (&d, &pdf, "application/pdf"),
        (&i, &jpeg, "image/jpeg"),
        (&v, &ogg, "audio/ogg; codecs=opus"),
    ] {
        let (code, got_mime, got) = download(&s, m["id"].as_i64().unwrap()).await;
        assert_eq!(code, StatusCode::OK, "{m}");
        assert_eq!(got_mime, mime);
        assert!(got == *bytes, "{mime}: {} bytes back", got.len());
    }
    // A text has no file.
    let (code, body) = s
        .get(&format!(
            "/api/whatsapp/messages/{}/media?user_id=1&place_id=2",
            text["id"]
        ))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");

    // Reading the conversation tells Sara's phone: one read receipt for all four.
    let (code, body) = s
        .post(
            &format!("/api/whatsapp/contacts/{contact_id}/read"),
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["marked_read"], 4, "{body}");
    assert_eq!(body["data"]["receipts_sent"], true, "{body}");
    let receipts = testkit::poll(WAIT, "read receipts on the wire", || async {
        let r = s.fake.read_receipts();
        if r.is_empty() {
            Err(format!("{:?}", s.fake.client_receipts()))
        } else {
            Ok(r)
        }
    })
    .await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0].account, PHONE);
    assert_eq!(receipts[0].to, sara_jid());
    let ids: BTreeSet<String> = receipts[0].ids.iter().cloned().collect();
    assert_eq!(ids, all);
    let (_, body) = s
        .get("/api/whatsapp/conversations?user_id=1&place_id=2")
        .await;
    assert_eq!(
        body["data"]["conversations"][0]["unread_count"], 0,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_writing_stop_is_opted_out_and_a_send_to_it_is_refused() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    s.fake
        .send_message(PHONE, &sara_jid(), "Sara", " Stop ", now())
        .await
        .expect("delivered");
    let m = kept(&s, "Sara's STOP kept", |m| m["text"] == " Stop ").await;
    let contact_id = m["contact_id"].as_i64().unwrap();
    testkit::poll(WAIT, "Sara opted out", || async {
        let (code, body) = s
            .get(&format!(
                "/api/whatsapp/contacts/{contact_id}?user_id=1&place_id=2"
            ))
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["data"]["opted_out"] == true && body["data"]["opted_out_at"].is_string() {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    let sent_before = s.fake.sent_messages().len();
    let (code, body) = s
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": format!("+{SARA}"), "text": "Sale!"}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(
        s.fake.sent_messages().len(),
        sent_before,
        "nothing went out"
    );
}
