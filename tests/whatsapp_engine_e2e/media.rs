//! Files sent over HTTP on the real engine: an image by URL to a contact, a document and a
//! voice note uploaded through `POST /api/whatsapp/media` to a bare number, a group send and
//! a bulk send of a video. Each reaches the fake server as the message WhatsApp expects
//! (ImageMessage, DocumentMessage, AudioMessage with `ptt`, VideoMessage) whose file, fetched
//! from the fake media server and opened with the message's key, is byte for byte the one
//! given, with its caption, name and type. And each of a text, an image, a document and a
//! voice note reaches a contact and a bare number.

use std::collections::BTreeSet;

use fake_whatsapp::{FakeWhatsApp, PhoneMediaKind, SentMessage};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::db::TestBackend;
use testkit::wa::{PHONE, Server, WAIT};
use whatsapp_manager::Config;

const SARA: &str = "966500000003";
const OMAR: &str = "966500000004";
const NUMBER: &str = "966500000005";
const LAYLA: &str = "966500000006";
const OTHER_NUMBER: &str = "966500000007";

/// A quick pace, and the test's file server on loopback reachable by URL.
fn tweak(c: &mut Config) {
    c.pacing.interval = std::time::Duration::from_millis(20);
    c.pacing.jitter = std::time::Duration::ZERO;
    c.outbound_allow = vec!["127.0.0.1/32".parse().expect("a network")];
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Bytes no two files share, long enough to span several AES blocks.
fn file_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

/// A real 64 × 48 JPEG, so the server can measure it and make its thumbnail.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode a JPEG");
    out.into_inner()
}

/// Serves `/photo.jpg` and `/clip.mp4` on loopback.
async fn file_server(photo: Vec<u8>, clip: Vec<u8>) -> String {
    use axum::http::header;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route(
            "/photo.jpg",
            get(move || async move { ([(header::CONTENT_TYPE, "image/jpeg")], photo) }),
        )
        .route(
            "/clip.mp4",
            get(move || async move { ([(header::CONTENT_TYPE, "video/mp4")], clip) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// `POST /api/whatsapp/media` with one file; the upload's id.
async fn upload(s: &Server, name: &str, mime: &str, bytes: &[u8]) -> String {
    let boundary = "----e2e-media-boundary-41c2";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let res = s
        .http
        .post(format!("{}/api/whatsapp/media", s.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("POST media");
    let code = res.status();
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body["data"]["media_id"]
        .as_str()
        .expect("a media_id")
        .to_owned()
}

async fn send(s: &Server, path: &str, body: Value) -> Value {
    let (code, answer) = s.post(path, body).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{answer}");
    answer["data"].clone()
}

/// What the fake server saw go to `number` carrying a file of `kind`.
async fn file_to(s: &Server, number: &str, kind: PhoneMediaKind) -> SentMessage {
    testkit::poll(WAIT, &format!("a {kind:?} to {number}"), || async {
        let sent = s.fake.sent_messages();
        sent.iter()
            .find(|m| {
                m.to_number() == Some(number) && m.file.as_ref().is_some_and(|f| f.kind == kind)
            })
            .cloned()
            .ok_or_else(|| {
                let seen: Vec<_> = sent
                    .iter()
                    .map(|m| (&m.to, m.decrypt_error.clone()))
                    .collect();
                format!("{seen:?}")
            })
    })
    .await
}

/// The contact a number became by writing to the linked number.
async fn contact_who_writes(s: &Server, number: &str, name: &str) -> i64 {
    s.fake
        .send_message(
            PHONE,
            &format!("{number}@s.whatsapp.net"),
            name,
            "Hello",
            now(),
        )
        .await
        .expect("text delivered");
    testkit::poll(WAIT, &format!("{name} a contact"), || async {
        let (code, body) = s
            .get(&format!(
                "/api/whatsapp/messages?user_id=1&place_id=2&direction=in&recipient={number}"
            ))
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body["data"]["messages"][0]["contact_id"]
            .as_i64()
            .ok_or_else(|| body.to_string())
    })
    .await
}

/// Every message of the pair reached `sent` with the file the log says it has.
async fn all_sent(s: &Server, expected: usize) -> Vec<Value> {
    testkit::poll(WAIT, "every message sent", || async {
        let (code, body) = s
            .get("/api/whatsapp/messages?user_id=1&place_id=2&direction=out&limit=100")
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let ms = body["data"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ms.len() == expected && ms.iter().all(|m| m["status"] == "sent") {
            Ok(ms)
        } else {
            Err(body.to_string())
        }
    })
    .await
}

/// A text, an image, a document and a voice note sent to `to` (a contact or a number) each
/// reach `number` as WhatsApp expects, the files byte for byte.
async fn every_kind_to(s: &Server, to: Value, number: &str, name: &str) {
    let post = |extra: Value| {
        let mut body = json!({"user_id": 1, "place_id": 2});
        for (k, v) in to
            .as_object()
            .into_iter()
            .flatten()
            .chain(extra.as_object().into_iter().flatten())
        {
            body[k] = v.clone();
        }
        body
    };
    send(
        s,
        "/api/whatsapp/send-message",
        post(json!({"text": "Hello {name}"})),
    )
    .await;
    let text = testkit::poll(WAIT, &format!("the text to {number}"), || async {
        let sent = s.fake.sent_messages();
        sent.iter()
            .find(|m| m.to_number() == Some(number) && m.file.is_none() && m.text().is_some())
            .cloned()
            .ok_or_else(|| format!("{} sent", sent.len()))
    })
    .await;
    assert_eq!(text.text(), Some(format!("Hello {name}").as_str()));

    let photo = jpeg();
    let kinds = [
        (
            PhoneMediaKind::Image,
            "image",
            "photo.jpg",
            "image/jpeg",
            photo,
            false,
        ),
        (
            PhoneMediaKind::Document,
            "document",
            "terms.pdf",
            "application/pdf",
            file_bytes(5, 40_000),
            false,
        ),
        (
            PhoneMediaKind::Audio,
            "audio",
            "hello.ogg",
            "audio/ogg; codecs=opus",
            file_bytes(9, 6_000),
            true,
        ),
    ];
    for (kind, kind_name, file_name, mime, bytes, voice_note) in kinds {
        let id = upload(s, file_name, mime, &bytes).await;
        let media = if voice_note {
            json!({"type": kind_name, "media_id": id, "voice_note": true})
        } else {
            json!({"type": kind_name, "media_id": id, "caption": "For {name}"})
        };
        send(
            s,
            "/api/whatsapp/send-message",
            post(json!({"media": media})),
        )
        .await;
        let m = file_to(s, number, kind).await;
        let f = m.file.as_ref().expect("the file");
        assert_eq!(f.bytes, bytes, "the {kind_name} to {number}, byte for byte");
        assert_eq!(f.mime, mime);
        assert_eq!(f.voice_note, voice_note, "{kind_name}");
        if kind == PhoneMediaKind::Document {
            assert_eq!(f.file_name.as_deref(), Some(file_name));
        }
        if !voice_note {
            assert_eq!(
                m.text(),
                Some(format!("For {name}").as_str()),
                "{kind_name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_image_document_and_voice_note_each_reach_a_contact_and_a_number() {
    let s = Server::start_with(FakeWhatsApp::new(), TestBackend::Sqlite, tweak).await;
    s.link().await;
    let layla = contact_who_writes(&s, LAYLA, "Layla").await;
    every_kind_to(&s, json!({"contact_id": layla}), LAYLA, "Layla").await;
    // A bare number has no name: `{name}` is left empty.
    every_kind_to(
        &s,
        json!({"phone_number": format!("+{OTHER_NUMBER}")}),
        OTHER_NUMBER,
        "",
    )
    .await;
    let log = all_sent(&s, 8).await;
    assert!(
        log.iter().all(|m| m["whatsapp_message_id"].is_string()),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_file_reaches_whatsapp_byte_for_byte_from_every_send() {
    let s = Server::start_with(FakeWhatsApp::new(), TestBackend::Sqlite, tweak).await;
    s.link().await;
    let photo = jpeg();
    let clip = file_bytes(11, 70_000);
    let files = file_server(photo.clone(), clip.clone()).await;
    let sara = contact_who_writes(&s, SARA, "Sara").await;
    let omar = contact_who_writes(&s, OMAR, "Omar").await;

    // An image by URL to a contact, its caption's placeholder filled.
    send(
        &s,
        "/api/whatsapp/send-message",
        json!({"user_id": 1, "place_id": 2, "contact_id": sara,
               "media": {"type": "image", "url": format!("{files}/photo.jpg"),
                         "caption": "Your table, {name}"}}),
    )
    .await;
    let m = file_to(&s, SARA, PhoneMediaKind::Image).await;
    let f = m.file.as_ref().expect("the image");
    assert_eq!(f.bytes, photo, "the image, byte for byte");
    assert_eq!(f.mime, "image/jpeg");
    assert_eq!(m.text(), Some("Your table, Sara"));
    let img = m
        .message
        .as_ref()
        .and_then(|m| m.image_message.as_option())
        .expect("an ImageMessage");
    assert_eq!((img.width, img.height), (Some(64), Some(48)));
    let thumb = img.jpeg_thumbnail.as_deref().expect("a thumbnail");
    let thumb = image::load_from_memory(thumb).expect("the thumbnail is an image");
    assert!(
        thumb.width() <= 72 && thumb.height() <= 72,
        "{}x{}",
        thumb.width(),
        thumb.height()
    );

    // A document uploaded, then sent to a bare number under the name it was uploaded with.
    let pdf = file_bytes(7, 150_000);
    let pdf_id = upload(&s, "facture é.pdf", "application/pdf", &pdf).await;
    send(
        &s,
        "/api/whatsapp/send-message",
        json!({"user_id": 1, "place_id": 2, "phone_number": format!("+{NUMBER}"),
               "media": {"type": "document", "media_id": pdf_id, "caption": "Your invoice"}}),
    )
    .await;
    let m = file_to(&s, NUMBER, PhoneMediaKind::Document).await;
    let f = m.file.as_ref().expect("the document");
    assert_eq!(f.bytes, pdf, "the document, byte for byte");
    assert_eq!(f.mime, "application/pdf");
    assert_eq!(f.file_name.as_deref(), Some("facture é.pdf"));
    assert_eq!(f.caption.as_deref(), Some("Your invoice"));

    // A voice note uploaded: an AudioMessage with `ptt`, and no caption.
    let ogg = file_bytes(3, 9_000);
    let ogg_id = upload(&s, "note.ogg", "audio/ogg; codecs=opus", &ogg).await;
    send(
        &s,
        "/api/whatsapp/send-message",
        json!({"user_id": 1, "place_id": 2, "phone_number": format!("+{NUMBER}"),
               "media": {"type": "audio", "media_id": ogg_id, "voice_note": true}}),
    )
    .await;
    let m = file_to(&s, NUMBER, PhoneMediaKind::Audio).await;
    let f = m.file.as_ref().expect("the voice note");
    assert_eq!(f.bytes, ogg, "the voice note, byte for byte");
    assert!(f.voice_note, "sent as a voice note (ptt)");
    assert_eq!(
        f.mime, "audio/ogg; codecs=opus",
        "what phones play a voice note as"
    );

    // A group send: each member gets the same document under their own name.
    let (code, body) = s
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "Regulars", "contact_ids": [sara, omar]}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let group = body["data"]["id"].as_i64().expect("a group id");
    let menu = file_bytes(42, 30_000);
    let menu_id = upload(&s, "menu.pdf", "application/pdf", &menu).await;
    let job = send(
        &s,
        &format!("/api/whatsapp/groups/{group}/send-message"),
        json!({"user_id": 1, "place_id": 2,
               "media": {"type": "document", "media_id": menu_id, "caption": "Our menu, {name}",
                         "file_name": "Menu.pdf"}}),
    )
    .await;
    assert_eq!(job["total"], 2, "{job}");
    for (number, name) in [(SARA, "Sara"), (OMAR, "Omar")] {
        let m = file_to(&s, number, PhoneMediaKind::Document).await;
        let f = m.file.as_ref().expect("the menu");
        assert_eq!(f.bytes, menu, "the menu to {name}, byte for byte");
        assert_eq!(f.file_name.as_deref(), Some("Menu.pdf"));
        assert_eq!(
            f.caption.as_deref(),
            Some(format!("Our menu, {name}").as_str())
        );
    }

    // A bulk send of a video by URL to two numbers.
    let job = send(
        &s,
        "/api/whatsapp/send-bulk-messages",
        json!({"user_id": 1, "place_id": 2, "recipients": [format!("+{NUMBER}"), format!("+{OMAR}")],
               "media": {"type": "video", "url": format!("{files}/clip.mp4"), "caption": "Opening day"}}),
    )
    .await;
    assert_eq!(job["total"], 2, "{job}");
    for number in [NUMBER, OMAR] {
        let m = file_to(&s, number, PhoneMediaKind::Video).await;
        let f = m.file.as_ref().expect("the video");
        assert_eq!(f.bytes, clip, "the video to {number}, byte for byte");
        assert_eq!(f.mime, "video/mp4");
        assert_eq!(f.caption.as_deref(), Some("Opening day"));
    }

    // The log shows each message sent, with the file it carried, under the id on the wire.
    let log = all_sent(&s, 7).await;
    let kinds: BTreeSet<&str> = log.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["audio", "document", "image", "video"]),
        "{log:?}"
    );
    let wire: BTreeSet<String> = s
        .fake
        .sent_messages()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    for m in &log {
        assert_eq!(m["media"]["type"], m["type"], "{m}");
        let wa = m["whatsapp_message_id"]
            .as_str()
            .expect("an id on the wire");
        assert!(wire.contains(wa), "{wa} went out");
    }
}
