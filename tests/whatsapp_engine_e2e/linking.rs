//! Linking a number and what keeps or ends the link: restarts, logouts, the phone removing
//! the device, QR codes that run out, pairing codes.

use std::time::Duration;

use base64::Engine as _;
use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::*;

crate::on_both!(
    link_restore_reconnect_and_device_removal_over_the_real_protocol,
    restart_reuses_the_credentials_and_logout_unlinks,
);

async fn link_restore_reconnect_and_device_removal_over_the_real_protocol(backend: TestBackend) {
    let mut s = Server::start_on(FakeWhatsApp::new(), backend).await;

    // init → qr_ready, with a PNG that decodes back to exactly the library's string.
    let first = s.init().await;
    assert_eq!(first["message"], "Client initialization started");
    let session_id = first["data"]["session_id"].as_str().unwrap().to_string();
    let st = s.wait_status("qr_ready").await;
    let raw = s.qr_raw().await;
    assert!(raw.contains(','), "a WhatsApp QR payload: ref,keys,…");
    assert_eq!(decode_qr_png(&s.qr_png().await), raw);
    let data_url = st["qr_code"].as_str().expect("qr_code while qr_ready");
    let b64 = data_url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let from_status = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // The status may already show the next rotation; either way it is a real QR code.
    let decoded = decode_qr_png(&from_status);
    assert!(decoded.contains(','), "{decoded}");

    // The phone scans → authenticated → ready with the number, the name, and the groups.
    s.fake.scan(&raw, PHONE, "Shop").await.expect("scan");
    let ready = s.wait_status("ready").await;
    assert_eq!(ready["session_id"], session_id);
    assert_eq!(ready["phone_number"], format!("+{PHONE}"));
    assert_eq!(ready["name"], "Shop");
    assert_eq!(ready["client_ready"], true);
    assert_eq!(ready["qr_code"], Value::Null);
    assert_eq!(s.group_names().await, default_groups());
    s.assert_credentials_in_database(&session_id).await;
    let (code, body) = s.get("/api/whatsapp/qr?user_id=1&place_id=2").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no QR once linked: {body}");

    // A server restart: the same session comes back ready with no scan, its keys read
    // back from the database (a Noise IK handshake needs the stored static key).
    let devices = s.fake.registered_devices(PHONE);
    assert_eq!(devices.len(), 1, "linked once");
    let logins = s.fake.login_count(PHONE);
    let ik = s.fake.ik_handshakes();
    s.restart().await;
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id);
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert!(s.fake.login_count(PHONE) > logins, "it logged in again");
    assert!(s.fake.ik_handshakes() > ik, "with its stored keys (IK)");
    assert_eq!(
        s.fake.registered_devices(PHONE),
        devices,
        "no new pairing: the phone lists the same device"
    );
    s.assert_credentials_in_database(&session_id).await;
    assert_eq!(
        s.group_names().await,
        default_groups(),
        "no second pair of groups"
    );

    // The connection drops: disconnected, then ready again by the library's reconnect.
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("disconnected").await;
    assert!(
        error_message(&st).contains("connection to WhatsApp lost"),
        "{st}"
    );
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id);

    // The phone removes the device: logged_out, credentials deleted.
    s.fake.device_removed(PHONE).await;
    let st = s.wait_status("logged_out").await;
    assert!(error_message(&st).contains("removed"), "{st}");
    s.wait_forgotten(&session_id).await;
    let (code, body) = s.session_post("start-contact-fetch").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");

    // A later init starts a new session with a new QR code.
    let again = s.init().await;
    let new_id = again["data"]["session_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, session_id);
    s.wait_status("qr_ready").await;
    let new_raw = s.qr_raw().await;
    assert_ne!(new_raw, raw);
}

/// The number of a second pair (place 3), linked beside the first so that a logout can be
/// seen to take exactly its own session's rows.
const OTHER_PHONE: &str = "966507654321";
const OTHER_PLACE: i64 = 3;

async fn restart_reuses_the_credentials_and_logout_unlinks(backend: TestBackend) {
    let s = Server::start_on(FakeWhatsApp::new(), backend).await;
    let ready = s.link().await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    let other = s.link_at(OTHER_PLACE, OTHER_PHONE).await;
    let other_id = other["session_id"].as_str().unwrap().to_string();
    assert_ne!(other_id, session_id);
    let logins = s.fake.login_count(PHONE);

    let (code, body) = s.session_post("restart").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id, "same session, no new QR");
    assert!(s.fake.login_count(PHONE) > logins);
    s.assert_credentials_in_database(&session_id).await;

    s.assert_credentials_in_database(&other_id).await;
    let before = s.device_rows(&other_id).await.expect("the other device");
    let (code, body) = s.session_post("logout").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    s.wait_status("logged_out").await;
    s.wait_forgotten(&session_id).await;
    s.fake
        .wait_until(WAIT, |f| f.registered_devices(PHONE).is_empty())
        .await
        .then_some(())
        .expect("the phone no longer lists the device (remove-companion)");

    // The other pair's session lost nothing: still linked, still connected, its keys kept.
    let after = s.device_rows(&other_id).await.expect("the other device");
    assert_eq!(after.linked_at, before.linked_at);
    assert!(after.device.is_some());
    // Counts only ever grow here: the live session may still be storing keys it was sent.
    assert!(!before.prekeys.is_empty() && after.prekeys.len() >= before.prekeys.len());
    assert!(after.identities.len() >= before.identities.len());
    assert!(after.signal_sessions.len() >= before.signal_sessions.len());
    assert!(after.app_state_keys.len() >= before.app_state_keys.len());
    assert_eq!(after.signed_prekeys, before.signed_prekeys);
    assert!(s.is_linked(&other_id).await);
    let st = s.status_at(OTHER_PLACE).await;
    assert_eq!(st["status"], "ready", "{st}");
    assert_eq!(st["session_id"], other_id);
    assert_eq!(s.fake.registered_devices(OTHER_PHONE).len(), 1);

    // After a logout, init means a new link.
    let again = s.init().await;
    assert_ne!(again["data"]["session_id"], session_id);
    s.wait_status("qr_ready").await;
}

/// The library shows the first code for 60 s and each further one for 20 s; with two codes
/// this test takes about 80 s, spent waiting in parallel with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_rotate_then_run_out_into_an_error() {
    let s = Server::start(FakeWhatsApp::new().with_qr_refs(2)).await;
    let started = s.init().await;
    let session_id = started["data"]["session_id"].as_str().unwrap().to_string();
    s.wait_status("qr_ready").await;
    let first = s.qr_raw().await;
    // A restart before any scan shows new codes on the same session.
    let (code, body) = s.session_post("restart").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("qr_ready").await;
    assert_eq!(st["session_id"], session_id);
    let first = {
        let now = s.qr_raw().await;
        assert_ne!(now, first, "a new client, a new QR code");
        now
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut second = None;
    let st = loop {
        let st = s.status().await;
        if st["status"] != "qr_ready" {
            break st;
        }
        // One request: the codes may run out between a check and a second read.
        if let Some(now) = s.try_qr_raw().await
            && now != first
        {
            second = Some(now);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ran out: {st}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(second.is_some(), "the code rotated before running out");
    assert_eq!(st["status"], "error", "{st}");
    assert!(error_message(&st).contains("QR code attempts"), "{st}");
    assert_eq!(st["qr_code"], Value::Null);
    let (code, _) = s.get("/api/whatsapp/qr?user_id=1&place_id=2").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Nothing was linked, so nothing of the device is kept.
    s.wait_forgotten(&session_id).await;
    // init gives a new QR code.
    s.init().await;
    s.wait_status("qr_ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_code_typed_on_the_phone_links_the_session() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let started = s.init().await;
    s.wait_status("qr_ready").await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966 50 123 4567"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["session_id"], started["data"]["session_id"]);
    assert_eq!(data["phone_number"], format!("+{PHONE}"));
    let pairing = data["code"].as_str().expect("a code").to_string();
    assert_eq!(pairing.len(), 8, "{pairing}");
    assert_eq!(data["pairing_code"], pairing);

    // One code at a time: a second request while it is valid is a conflict.
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already issued"),
        "{body}"
    );

    // A wrong code links nothing; the right one links the number.
    let wrong: String = pairing
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    assert!(s.fake.enter_pair_code(PHONE, &wrong, "Shop").await.is_err());
    assert_ne!(s.status().await["status"], "ready");
    s.fake
        .enter_pair_code(PHONE, &pairing, "Shop")
        .await
        .expect("the right code links");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], started["data"]["session_id"]);
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert_eq!(s.group_names().await, default_groups());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_a_connection_still_forgets_and_says_what_to_do_on_the_phone() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    let id = ready["session_id"].as_str().unwrap().to_string();
    s.fake.set_offline(true);
    s.wait_status("disconnected").await;
    let (code, body) = s.session_post("logout").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("logged_out").await;
    assert!(error_message(&st).contains("Linked devices"), "{st}");
    s.wait_forgotten(&id).await;
}
