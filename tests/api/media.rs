//! Media of every kind through HTTP on the sim: by URL (each kind's content type and size
//! cap), by upload (`POST /api/whatsapp/media`, whose `media_id` only its user may send, for
//! 24 hours), the request's rules, a dry run, and what the log and the sim's outbox show.

use std::time::Duration;

use axum::body::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts, settled, sim_outbox};

const MB: usize = 1024 * 1024;

/// A PNG's signature and header: 3 × 2 pixels, as far as anyone reading the header knows.
fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend(3u32.to_be_bytes());
    b.extend(2u32.to_be_bytes());
    b.extend(b"\x08\x02\0\0\0 and the rest");
    b
}

/// A file server on loopback: each kind, a wrong type, and large files served from one
/// shared buffer (no copy per request).
async fn file_server() -> String {
    use axum::http::header;
    use axum::routing::get;
    let big = Bytes::from(vec![0u8; 20 * MB]);
    let big_video = big.slice(..17 * MB);
    let png = Bytes::from(png());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let typed = |mime: &'static str, body: Bytes| {
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, mime)], body) }
        })
    };
    let app = axum::Router::new()
        .route("/pic.png", typed("image/png", png))
        .route(
            "/files/Invoice%2042.pdf",
            typed(
                "application/pdf",
                Bytes::from_static(b"%PDF-1.7 an invoice"),
            ),
        )
        .route(
            "/clip.mp4",
            typed("video/mp4", Bytes::from_static(b"....ftypmp42")),
        )
        .route(
            "/note.ogg",
            typed("audio/ogg; codecs=opus", Bytes::from_static(b"OggS voice")),
        )
        .route(
            "/page",
            typed("text/html", Bytes::from_static(b"<html></html>")),
        )
        .route("/big.mp4", typed("video/mp4", big_video))
        .route("/big.bin", typed("application/octet-stream", big));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// One part of a multipart body: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body and its content type.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----media-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file, mime, bytes) in parts {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes(),
        );
        if let Some(f) = file {
            body.extend(format!("; filename=\"{f}\"").bytes());
        }
        body.extend(b"\r\n");
        if let Some(m) = mime {
            body.extend(format!("Content-Type: {m}\r\n").bytes());
        }
        body.extend(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &TestApp, key: Option<&str>, parts: &[Part<'_>]) -> (StatusCode, Value) {
    let (ct, body) = multipart(parts);
    let mut req = app
        .client
        .post(format!("{}/api/whatsapp/media", app.base))
        .header("content-type", ct);
    if let Some(k) = key.or(app.api_key.as_deref()) {
        req = req.header("x-api-key", k);
    }
    let res = req.body(body).send().await.expect("request");
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}")),
    )
}

async fn send(app: &TestApp, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    app.request_as(
        key.or(app.api_key.as_deref()),
        reqwest::Method::POST,
        "/api/whatsapp/send-message",
        Some(body),
    )
    .await
}

fn sent_to<'a>(out: &'a [Value], id: &str) -> &'a Value {
    out.iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the sim's outbox: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_goes_by_url_and_the_log_and_the_sim_show_its_file() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let files = file_server().await;
    let cases = [
        (
            json!({"type": "image", "url": format!("{files}/pic.png"), "caption": "Hi {name}"}),
            "image",
            "image/png",
            None,
            false,
        ),
        (
            json!({"type": "document", "url": format!("{files}/files/Invoice%2042.pdf")}),
            "document",
            "application/pdf",
            Some("Invoice 42.pdf"),
            false,
        ),
        (
            json!({"type": "video", "url": format!("{files}/clip.mp4")}),
            "video",
            "video/mp4",
            None,
            false,
        ),
        (
            json!({"type": "audio", "url": format!("{files}/note.ogg"), "voice_note": true}),
            "audio",
            "audio/ogg",
            None,
            true,
        ),
    ];
    for (media, kind, mime, name, voice) in cases {
        let (status, body) = send(
            &app,
            None,
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "media": media}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["data"]["type"], kind);
        let m = settled(&app, 1, 2, body["data"]["id"].as_i64().unwrap()).await;
        assert_eq!(m["status"], "sent", "{m}");
        assert_eq!(m["type"], kind);
        assert_eq!(m["media"]["type"], kind, "{m}");
        assert_eq!(m["media"]["mime_type"], mime, "{m}");
        assert!(m["media"]["size_bytes"].as_i64().unwrap() > 0, "{m}");
        assert_eq!(m["media"]["file_name"].as_str(), name, "{m}");
        assert_eq!(m["media"]["voice_note"], voice, "{m}");
        assert!(m["media"]["url"].as_str().unwrap().starts_with(&files));
        let out = sim_outbox(&app, 1, 2).await;
        let s = sent_to(&out, m["whatsapp_message_id"].as_str().unwrap());
        assert_eq!(s["media_type"], kind, "{s}");
        assert_eq!(s["media_mime"], mime, "{s}");
        assert_eq!(s["media_bytes"], m["media"]["size_bytes"], "{s}");
        assert_eq!(s["file_name"].as_str(), name, "{s}");
        assert_eq!(s["voice_note"], voice, "{s}");
        if kind == "image" {
            assert_eq!(s["text"], "Hi ", "a caption's placeholders are filled: {s}");
            assert_eq!(
                (s["width"].as_u64(), s["height"].as_u64()),
                (Some(3), Some(2))
            );
        }
    }
    let (_, docs) = app
        .get("/api/whatsapp/messages?user_id=1&place_id=2&type=document")
        .await;
    let docs = docs["data"]["messages"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["type"], "document");
    let (_, stats) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    let by = &stats["data"]["by_type"];
    assert_eq!(
        (
            &by["image"],
            &by["document"],
            &by["video"],
            &by["audio"],
            &by["text"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_has_its_cap_and_content_type() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let files = file_server().await;
    let to = |media: Value| json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "media": media});
    let (status, body) = send(
        &app,
        None,
        to(json!({"type": "video", "url": format!("{files}/big.mp4")})),
    )
    .await;
    let msg = assert_error(status, &body, 400);
    assert!(msg.contains("media.url") && msg.contains("16 MB"), "{msg}");
    let (status, body) = send(
        &app,
        None,
        to(json!({"type": "video", "url": format!("{files}/page")})),
    )
    .await;
    let msg = assert_error(status, &body, 400);
    assert!(
        msg.contains("does not point to a video") && msg.contains("text/html"),
        "{msg}"
    );
    // 20 MB is over every other kind's cap, well under a document's.
    let (status, body) = send(
        &app,
        None,
        to(json!({"type": "document", "url": format!("{files}/big.bin"), "file_name": "data.bin"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let m = settled(&app, 1, 2, body["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["media"]["size_bytes"], 20 * MB, "{m}");
    assert_eq!(m["media"]["file_name"], "data.bin", "{m}");

    // The same caps on an upload, as 413 naming the cap.
    let big = vec![0u8; 16 * MB + 1];
    let (status, body) = upload(
        &app,
        None,
        &[("file", Some("a.png"), Some("image/png"), &big)],
    )
    .await;
    let msg = assert_error(status, &body, 413);
    assert!(msg.contains("16 MB") && msg.contains("image"), "{msg}");
    let (status, body) = upload(
        &app,
        None,
        &[
            ("type", None, None, b"document"),
            ("file", Some("a.png"), Some("image/png"), &big),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "as a document it fits: {body}");
    assert_eq!(body["data"]["type"], "document");
    let (status, body) = upload(&app, None, &[("type", None, None, b"image")]).await;
    assert!(assert_error(status, &body, 400).contains("file is required"));
    let (status, body) = upload(
        &app,
        None,
        &[
            ("type", None, None, b"video"),
            ("file", Some("x.pdf"), Some("application/pdf"), b"%PDF"),
        ],
    )
    .await;
    assert!(
        assert_error(status, &body, 400).contains("type is video but the file is application/pdf")
    );
    let (status, body) = upload(&app, None, &[("type", None, None, b"sticker")]).await;
    assert!(assert_error(status, &body, 400).contains("image, document, video, audio"));
    let (status, body) = app
        .post("/api/whatsapp/media", json!({"file": "not multipart"}))
        .await;
    assert!(assert_error(status, &body, 400).contains("multipart/form-data"));
    // A form built like every other request, with its place, is taken; a bad place or a
    // field uploads do not have is refused.
    let pdf: Part = ("file", Some("x.pdf"), Some("application/pdf"), b"%PDF");
    let (status, body) = upload(
        &app,
        None,
        &[
            ("user_id", None, None, b"1"),
            ("place_id", None, None, b"2"),
            pdf,
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = upload(&app, None, &[("place_id", None, None, b"two"), pdf]).await;
    assert!(assert_error(status, &body, 400).contains("place_id must be a positive integer"));
    let (status, body) = upload(&app, None, &[("caption", None, None, b"hi"), pdf]).await;
    assert!(assert_error(status, &body, 400).contains("\"caption\" is not a field"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_sent_by_its_users_sends_only_and_for_a_day() {
    let app = spawn_app_with_admin_key_and(fast).await;
    pair_with_contacts(&app, 1, 2, 2).await;
    pair_with_contacts(&app, 3, 4, 1).await;
    let (one, _) = app.create_key(json!({"user_id": 1, "name": "one"})).await;
    let (three, _) = app.create_key(json!({"user_id": 3, "name": "three"})).await;
    let pdf = b"%PDF-1.7 the invoice".to_vec();
    let (status, body) = upload(
        &app,
        Some(&one),
        &[(
            "file",
            Some("dir/Invoice.pdf"),
            Some("application/pdf"),
            &pdf,
        )],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let up = body["data"].clone();
    assert_eq!(up["type"], "document");
    assert_eq!(up["mime_type"], "application/pdf");
    assert_eq!(up["size_bytes"], pdf.len());
    assert_eq!(up["file_name"], "Invoice.pdf");
    assert!(up["expires_at"].is_string());
    let id = up["media_id"].as_str().unwrap();
    let media = json!({"type": "document", "media_id": id, "caption": "Your invoice"});

    // Another tenant's send does not see it.
    let (status, body) = send(
        &app,
        Some(&three),
        json!({"user_id": 3, "place_id": 4, "phone_number": "+966551234567", "media": media}),
    )
    .await;
    assert!(assert_error(status, &body, 404).contains("media.media_id"));
    // A tenant cannot upload for another user.
    let (status, body) = upload(
        &app,
        Some(&one),
        &[
            ("user_id", None, None, b"3"),
            ("file", Some("a.pdf"), Some("application/pdf"), &pdf),
        ],
    )
    .await;
    assert_error(status, &body, 403);

    // Its own user's bulk send: the file is known at once, the name is the upload's.
    let (status, body) = app
        .request_as(
            Some(&one),
            reqwest::Method::POST,
            "/api/whatsapp/send-bulk-messages",
            Some(json!({"user_id": 1, "place_id": 2,
                        "recipients": ["+966551234567", "+966551234568"], "media": media})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids = body["data"]["message_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2, "{body}");
    for id in ids.iter().map(|m| m.as_i64().unwrap()) {
        let m = settled(&app, 1, 2, id).await;
        assert_eq!(m["status"], "sent", "{m}");
        assert_eq!(m["media"]["media_id"], up["media_id"], "{m}");
        assert_eq!(m["media"]["mime_type"], "application/pdf");
        assert_eq!(m["media"]["size_bytes"], pdf.len());
        assert_eq!(m["media"]["file_name"], "Invoice.pdf");
        assert_eq!(m["text"], "Your invoice");
    }
    let out = sim_outbox(&app, 1, 2).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out.iter().all(|s| s["media_type"] == "document"
            && s["media_bytes"] == pdf.len()
            && s["file_name"] == "Invoice.pdf"),
        "{out:?}"
    );

    // The admin key's upload (no user) is any user's; a group send takes it too.
    let (status, body) = upload(
        &app,
        None,
        &[("file", Some("n.ogg"), Some("audio/ogg"), b"OggS")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["type"], "audio");
    let voice = body["data"]["media_id"].as_str().unwrap().to_owned();
    let group = app.group_id(3, 4, ALL_GROUP).await;
    let (status, body) = app
        .request_as(
            Some(&three),
            reqwest::Method::POST,
            &format!("/api/whatsapp/groups/{group}/send-message"),
            Some(json!({"user_id": 3, "place_id": 4,
                        "media": {"type": "audio", "media_id": voice, "voice_note": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let out = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let out = sim_outbox(&app, 3, 4).await;
            if !out.is_empty() {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the group's voice note goes out");
    assert_eq!(out[0]["media_type"], "audio", "{out:?}");
    assert_eq!(out[0]["voice_note"], true, "{out:?}");

    // A day later the upload is gone, and a send says so before queuing anything.
    app.clock.advance(chrono::Duration::hours(25));
    let (status, body) = send(
        &app,
        Some(&one),
        json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "media": media}),
    )
    .await;
    let msg = assert_error(status, &body, 404);
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rules_name_the_field_and_a_dry_run_reports_them() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let files = file_server().await;
    let doc = format!("{files}/files/Invoice%2042.pdf");
    let refused = [
        (
            json!({"image_url": format!("{files}/pic.png"), "media": {"type": "image", "url": format!("{files}/pic.png")}}),
            "Give image_url or media, not both",
        ),
        (
            json!({"text": "a", "media": {"type": "document", "url": doc, "caption": "b"}}),
            "Give text or media.caption, not both",
        ),
        (
            json!({"media": {"type": "audio", "url": doc, "voice_note": true, "caption": "b"}}),
            "A voice note has no caption",
        ),
        (
            json!({"media": {"type": "video", "url": doc, "voice_note": true}}),
            "media.voice_note is only for audio",
        ),
        (
            json!({"media": {"type": "gif", "url": doc}}),
            "media.type must be one of: image, document, video, audio",
        ),
        (
            json!({"media": {"type": "image"}}),
            "exactly one of media.url or media.media_id",
        ),
        (
            json!({"media": {"type": "image", "url": "ftp://x/y"}}),
            "media.url must be an http or https URL",
        ),
        (
            json!({"media": {"type": "audio", "url": format!("{files}/pic.png")}}),
            "does not point to an audio",
        ),
    ];
    for (content, want) in refused {
        let mut body = json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567"});
        body.as_object_mut()
            .unwrap()
            .extend(content.as_object().unwrap().clone());
        let (status, answer) = send(&app, None, body).await;
        let msg = assert_error(status, &answer, 400);
        assert!(msg.contains(want), "{want}: {msg}");
    }
    let (status, v) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "media": {"type": "document", "url": doc, "caption": "Hello"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["valid"], true, "{v}");
    assert_eq!(v["data"]["type"], "document");
    assert_eq!(v["data"]["preview"], "Hello");
    let (status, v) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "media": {"type": "image", "media_id": "nope"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["valid"], false, "{v}");
    assert!(
        v["data"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("media.media_id"),
        "{v}"
    );
    let (_, log) = app.get("/api/whatsapp/messages?user_id=1&place_id=2").await;
    assert_eq!(
        log["data"]["messages"].as_array().unwrap().len(),
        0,
        "nothing was queued"
    );
}
