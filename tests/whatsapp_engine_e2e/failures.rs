//! What WhatsApp or the network refuse, and the status each refusal leaves.

use std::time::Duration;

use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_ends_in_error_with_its_expiry() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    s.fake.fail_logins(PHONE, 402, Some(2 * 3600 + 15 * 60));
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("error").await;
    let msg = error_message(&st);
    assert!(msg.contains("temporarily banned"), "{st}");
    assert!(msg.contains("2 h 15 min"), "the expiry is told: {st}");
    assert_eq!(st["client_ready"], false);
    // No busy reconnect loop against a ban.
    let opened = s.fake.connections_opened();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.fake.connections_opened(), opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_client_ends_in_error() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    s.fake.fail_logins(PHONE, 405, None);
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("error").await;
    assert!(error_message(&st).contains("outdated"), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_stream_ends_in_error_and_restart_takes_it_back() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    s.fake.replaced(PHONE).await;
    let st = s.wait_status("error").await;
    assert!(error_message(&st).contains("replaced"), "{st}");
    // Still linked: restart reconnects the same session without a QR.
    let (code, body) = s.session_post("restart").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], ready["session_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_401_and_516_log_out() {
    for code in [401, 516] {
        let s = Server::start(FakeWhatsApp::new()).await;
        let ready = s.link().await;
        s.fake.stream_error(PHONE, code).await;
        s.wait_status("logged_out").await;
        let id = ready["session_id"].as_str().unwrap();
        s.wait_forgotten(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_gives_a_clear_status_then_recovers() {
    let fake = FakeWhatsApp::new();
    fake.set_offline(true);
    let s = Server::start(fake).await;
    s.init().await;
    let st = s.wait_status("disconnected").await;
    assert!(
        error_message(&st).contains("cannot reach WhatsApp servers"),
        "{st}"
    );
    // The API stays responsive and the contract's errors apply.
    let (code, _) = s.get("/api/health").await;
    assert_eq!(code, StatusCode::OK);
    // Retries back off: a few seconds bring a handful of attempts, not hundreds.
    let before = s.fake.refused_connections();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = s.fake.refused_connections() - before;
    assert!(during <= 4, "{during} attempts in 3 s");
    // The network comes back: the library's own retry reaches the QR stage.
    s.fake.set_offline(false);
    let st = s.wait_status("qr_ready").await;
    assert_eq!(st["error_message"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_validation_and_state_checks() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    s.link().await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "already linked: {body}");
    for bad in [json!("abc"), json!("+1"), json!(true), json!("")] {
        let (code, body) = s
            .post(
                "/api/whatsapp/pair-code",
                json!({"user_id": 1, "place_id": 2, "phone_number": bad}),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains("phone_number"));
    }
}
