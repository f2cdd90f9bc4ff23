//! Secrets stay out of the logs: the logs of a whole flow over the real protocol — keys,
//! QR code, pairing code, link, fetch, logout — are captured with the binary's own filter
//! (and our crate at debug) and searched for every secret the flow handled.
//!
//! Its own test binary: it installs the process-wide log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::*;
use whatsapp_manager::logging::EmojiPrefix;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> Captured {
    let sink = Captured::default();
    let writer = sink.clone();
    // The fake server is the test's fixture, not the product: its lines are not ours.
    let filter = whatsapp_manager::logging::filter()
        .add_directive("whatsapp_manager=debug".parse().unwrap())
        .add_directive("fake_whatsapp=off".parse().unwrap());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .event_format(EmojiPrefix(
            tracing_subscriber::fmt::format().with_target(true),
        ))
        .init();
    sink
}

async fn send(
    s: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.base))
        .header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let code = res.status();
    (code, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_flow_leaves_no_key_qr_code_pairing_code_or_credential_path_in_the_logs() {
    let logs = capture_logs();
    let s = Server::start(FakeWhatsApp::new()).await;
    let mut secrets: Vec<(String, &str)> = vec![(ADMIN_KEY.to_string(), "the admin key")];

    // A tenant key, used for the whole flow.
    let (code, body) = s
        .post(
            "/api/admin/keys",
            json!({"user_id": 1, "name": "back office"}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_string();
    let prefix = body["data"]["prefix"].as_str().unwrap();
    secrets.push((key[prefix.len()..].to_string(), "a tenant key's secret"));
    let pair = json!({"user_id": 1, "place_id": 2});
    let (code, body) = send(
        &s,
        &key,
        reqwest::Method::POST,
        "/api/whatsapp/init",
        Some(pair.clone()),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let session_id = body["data"]["session_id"].as_str().unwrap().to_string();
    // A wrong key is refused, and its text is not logged either.
    let wrong = "wam_0123456789ab_this-is-a-guess-that-must-not-be-logged";
    let (code, _) = send(
        &s,
        wrong,
        reqwest::Method::GET,
        "/api/whatsapp/status?user_id=1&place_id=2",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    secrets.push((wrong.to_string(), "a presented wrong key"));

    // The QR code and its parts, then a pairing code, and the link by that code.
    s.wait_status("qr_ready").await;
    let qr = s.qr_raw().await;
    for part in qr.split(',').filter(|p| p.len() >= 12) {
        secrets.push((part.to_string(), "a part of the QR payload"));
    }
    let status = s.status().await;
    let data_url = status["qr_code"].as_str().unwrap_or_default();
    if let Some(b64) = data_url.strip_prefix("data:image/png;base64,") {
        secrets.push((b64[..40.min(b64.len())].to_string(), "the QR image"));
    }
    let (code, body) = send(
        &s,
        &key,
        reqwest::Method::POST,
        "/api/whatsapp/pair-code",
        Some(json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let pairing = body["data"]["code"].as_str().unwrap().to_string();
    secrets.push((pairing.clone(), "the pairing code"));
    s.fake
        .enter_pair_code(PHONE, &pairing, "Shop")
        .await
        .expect("the code links");
    s.wait_status("ready").await;

    let (code, body) = send(
        &s,
        &key,
        reqwest::Method::POST,
        "/api/whatsapp/start-contact-fetch",
        Some(pair.clone()),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    s.wait_for("fetched", |st| {
        st["contacts_fetch_completed"] == true || !st["contacts_fetch_error"].is_null()
    })
    .await;
    let creds = s.credentials_dir(&session_id);
    s.assert_credentials_in_database(&session_id).await;
    let (code, body) = send(
        &s,
        &key,
        reqwest::Method::POST,
        "/api/whatsapp/logout",
        Some(pair),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    secrets.push((creds.display().to_string(), "the credentials folder"));
    secrets.push((
        s.dir.path().join("data").display().to_string(),
        "the data folder",
    ));

    let text = logs.text();
    // The flow was logged: the search below looked at real lines.
    assert!(
        text.contains(&format!("✅ Session ready: {session_id}")),
        "{text}"
    );
    assert!(text.contains("API key 1 created for user 1"), "{text}");
    for (secret, what) in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} reached the logs:\n{text}"
        );
    }
    assert!(
        !text.contains("device.db"),
        "a credentials file is named:\n{text}"
    );
}
