//! Checking a message before it goes: images probed for their type and size without
//! sending (`test-image-url`), images refused before anything is queued, and the dry run
//! (`validate-message`) reporting problems and a preview.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts, settled, sim_outbox};

/// A local web server for images: an image, a page, a huge image, a redirect to a private
/// address, a missing file.
pub async fn image_server() -> String {
    use axum::http::header;
    use axum::routing::get;
    let png: &'static [u8] = b"\x89PNG\r\n\x1a\n fake but typed as png";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // Another loopback address than the server's: tests allow only 127.0.0.1.
    let redirect_to = format!(
        "http://127.0.0.2:{}/img.png",
        listener.local_addr().unwrap().port()
    );
    let app = axum::Router::new()
        .route(
            "/img.png",
            get(move || async move { ([(header::CONTENT_TYPE, "image/png")], png) }),
        )
        .route(
            "/page",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html></html>") }),
        )
        .route(
            "/big.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0u8; 10 * 1024 * 1024 + 1],
                )
            }),
        )
        .route(
            "/redirect",
            get(move || {
                let to = redirect_to.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, to)]) }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[tokio::test]
async fn images_are_checked_sent_with_their_type_and_probed_without_sending() {
    let app = spawn_app_with(fast).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let img = image_server().await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567",
                   "text": "Our menu", "image_url": format!("{img}/img.png")}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["type"], "image");
    let m = settled(&app, 1, 2, body["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(m["status"], "sent", "{m}");
    let out = sim_outbox(&app, 1, 2).await;
    assert_eq!(out[0]["image_mime"], "image/png");
    assert_eq!(out[0]["image_bytes"], 30);
    assert_eq!(out[0]["text"], "Our menu");

    for (path, needle) in [
        ("/page", "not point to an image"),
        ("/big.png", "10 MB"),
        ("/redirect", "loopback"),
        ("/missing", "404"),
    ] {
        let url = format!("{img}{path}");
        let (status, body) = app
            .post(
                "/api/whatsapp/send-message",
                json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567",
                       "text": "x", "image_url": url}),
            )
            .await;
        assert!(
            assert_error(status, &body, 400).contains(needle),
            "{path}: {body}"
        );
        let (status, body) = app
            .post("/api/whatsapp/test-image-url", json!({"image_url": url}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["valid"], false);
        assert!(
            body["data"]["error"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    let (status, body) = app
        .post(
            "/api/whatsapp/test-image-url",
            json!({"image_url": format!("{img}/img.png")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["valid"], true, "{body}");
    assert_eq!(body["data"]["content_type"], "image/png");
    let (status, body) = app
        .post(
            "/api/whatsapp/test-image-url",
            json!({"image_url": "file:///etc/passwd"}),
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("http"));
    let (status, body) = app.post("/api/whatsapp/test-image-url", json!({})).await;
    assert!(assert_error(status, &body, 400).contains("image_url"));
}

#[tokio::test]
async fn validate_message_reports_problems_and_a_preview_without_queueing() {
    let app = spawn_app_with(fast).await;
    let ids = pair_with_contacts(&app, 1, 2, 1).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[0], "template_id": "welcome"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = &body["data"];
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(
        v["preview"],
        "Hello Person 0, welcome! We're glad to have you with us."
    );
    assert_eq!(v["variables"], json!(["name"]));

    let (status, body) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966551234567", "text": "Hi {coupon}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["valid"], false);
    assert!(
        body["data"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("{coupon}"),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"user_id": 1, "place_id": 2, "text": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["valid"], false);
    let (status, body) = app
        .post(
            "/api/whatsapp/validate-message",
            json!({"place_id": 2, "text": "x"}),
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("user_id"));

    let (status, body) = app.get("/api/whatsapp/templates").await;
    assert_eq!(status, StatusCode::OK);
    let t = body["data"]["templates"].as_array().unwrap();
    assert!(t.iter().any(
        |t| t["id"] == "promotion" && t["variables"] == json!(["name", "offer", "valid_until"])
    ));
    let (_, body) = app
        .get("/api/whatsapp/messages/stats?user_id=1&place_id=2")
        .await;
    assert_eq!(body["data"]["total"], 0, "a dry run queues nothing");
}
