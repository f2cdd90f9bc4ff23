//! The real engine end to end: our HTTP API, whatsapp-rust speaking the real protocol
//! (Noise, binary nodes, pairing crypto), and an in-process fake WhatsApp server
//! (`crates/fake-whatsapp`) injected through the application builder.
//!
//! `cargo test --test whatsapp_engine_e2e` runs exactly these.

use std::time::Duration;

use base64::Engine as _;
use fake_whatsapp::{FakeWhatsApp, History};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::*;
use whatsapp_manager::domain::PhoneNumber;
use whatsapp_manager::engine::{EngineError, EngineEvent, OutgoingImage, OutgoingMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_restore_reconnect_and_device_removal_over_the_real_protocol() {
    let mut s = Server::start(FakeWhatsApp::new()).await;

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

    // A server restart: the same session comes back ready with no scan.
    let logins = s.fake.login_count(PHONE);
    s.restart().await;
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id);
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert!(s.fake.login_count(PHONE) > logins, "it logged in again");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_the_credentials_and_logout_unlinks() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    let logins = s.fake.login_count(PHONE);

    let (code, body) = s.session_post("restart").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id, "same session, no new QR");
    assert!(s.fake.login_count(PHONE) > logins);
    s.assert_credentials_in_database(&session_id).await;

    let (code, body) = s.session_post("logout").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    s.wait_status("logged_out").await;
    s.wait_forgotten(&session_id).await;
    s.fake
        .wait_until(WAIT, |f| f.registered_devices(PHONE).is_empty())
        .await
        .then_some(())
        .expect("the phone no longer lists the device (remove-companion)");

    // After a logout, init means a new link.
    let again = s.init().await;
    assert_ne!(again["data"]["session_id"], session_id);
    s.wait_status("qr_ready").await;
}

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

fn outgoing(id: &str, to: &str, text: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: id.to_string(),
        to: PhoneNumber::parse_international(to).expect("a valid number"),
        text: Some(text.to_string()),
        image: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_puts_an_encrypted_message_under_our_id_on_the_wire() {
    let s = EngineSession::linked(FakeWhatsApp::new()).await;

    let id = "3EB0C0FFEE0000000001";
    let sent = s
        .client
        .send(&outgoing(id, "966500000077", "Your order is ready"))
        .await
        .expect("sent");
    assert_eq!(sent, id, "WhatsApp's id is the one we chose");

    let m = s.fake.wait_sent(id, WAIT).await.expect("the server got it");
    assert_eq!(m.to, "966500000077@s.whatsapp.net");
    assert_eq!(m.from_phone, PHONE);
    assert_eq!(m.msg_type, "text");
    assert!(m.encrypted, "{m:?}");
    assert!(
        m.participants
            .iter()
            .any(|p| p.starts_with("966500000077") && p.ends_with("@s.whatsapp.net")),
        "encrypted for the recipient's phone: {m:?}"
    );
    assert_eq!(
        m.text(),
        Some("Your order is ready"),
        "the recipient can read it: {:?}",
        m.decrypt_error
    );

    // The next message to the same person rides the same Signal session.
    let second = "3EB0C0FFEE0000000002";
    s.client
        .send(&outgoing(second, "+966500000077", "See you soon"))
        .await
        .expect("second send");
    let m = s
        .fake
        .wait_sent(second, WAIT)
        .await
        .expect("second on the wire");
    assert_eq!(m.text(), Some("See you soon"), "{:?}", m.decrypt_error);

    // A resend after a crash is the same message: same id on the wire again.
    s.client
        .send(&outgoing(id, "966500000077", "Your order is ready"))
        .await
        .expect("resend");
    let ids: Vec<String> = s.fake.sent_messages().into_iter().map(|m| m.id).collect();
    assert_eq!(ids.iter().filter(|i| *i == id).count(), 2, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_without_a_connection_or_a_client_fails_cleanly() {
    let mut s = EngineSession::linked(FakeWhatsApp::new()).await;

    s.fake.set_offline(true);
    s.next_event(|e| matches!(e, EngineEvent::Disconnected { .. }))
        .await;
    let err = s
        .client
        .send(&outgoing("3EB0OFFLINE000000001", "966500000077", "hi"))
        .await
        .expect_err("no connection");
    assert!(matches!(err, EngineError::NotConnected), "{err:?}");

    s.client.stop().await;
    let err = s
        .client
        .send(&outgoing("3EB0OFFLINE000000002", "966500000077", "hi"))
        .await
        .expect_err("no client");
    assert!(matches!(err, EngineError::ClientGone), "{err:?}");
    assert!(s.fake.sent_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_without_whatsapp_is_refused_and_nothing_goes_out() {
    let fake = FakeWhatsApp::new();
    fake.set_not_on_whatsapp("966500000066");
    let s = EngineSession::linked(fake).await;

    let err = s
        .client
        .send(&outgoing("3EB0NOWA000000000001", "966500000066", "hello?"))
        .await
        .expect_err("not on WhatsApp");
    match err {
        EngineError::Invalid(reason) => assert!(reason.contains("not on WhatsApp"), "{reason}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(s.fake.sent_messages().is_empty());

    // The client is still fine for everyone else.
    s.client
        .send(&outgoing("3EB0NOWA000000000002", "966500000077", "hello"))
        .await
        .expect("sent to a WhatsApp number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whatsapp_refuses_is_not_reported_as_sent() {
    let s = EngineSession::linked(FakeWhatsApp::new()).await;

    s.fake.nack_messages_to("966500000077", Some(503));
    let err = s
        .client
        .send(&outgoing("3EB0NACK000000000001", "966500000077", "hello"))
        .await
        .expect_err("nacked");
    match err {
        EngineError::Failed(reason) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }

    s.fake.nack_messages_to("966500000077", Some(404));
    let err = s
        .client
        .send(&outgoing("3EB0NACK000000000002", "966500000077", "hello"))
        .await
        .expect_err("nacked");
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");

    // Accepted again: the same id goes through.
    s.fake.nack_messages_to("966500000077", None);
    let sent = s
        .client
        .send(&outgoing("3EB0NACK000000000002", "966500000077", "hello"))
        .await
        .expect("acked");
    assert_eq!(sent, "3EB0NACK000000000002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_through_the_media_server_with_its_caption() {
    let s = EngineSession::linked(FakeWhatsApp::new()).await;
    // Not a real JPEG: WhatsApp's servers never look inside, only the recipient's phone does.
    let picture: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = "3EB0IMAGE00000000001";
    let mut message = outgoing(id, "966500000077", "today's menu");
    message.image = Some(OutgoingImage {
        bytes: std::sync::Arc::new(picture.clone()),
        mime: "image/jpeg".into(),
    });
    let sent = s.client.send(&message).await.expect("sent");
    assert_eq!(sent, id);

    let m = s.fake.wait_sent(id, WAIT).await.expect("on the wire");
    assert!(m.encrypted);
    let read = m.message.as_ref().expect("the recipient can read it");
    let image = read.image_message.as_option().expect("an image message");
    assert_eq!(image.caption.as_deref(), Some("today's menu"));
    assert_eq!(image.mimetype.as_deref(), Some("image/jpeg"));
    assert_eq!(image.file_length, Some(picture.len() as u64));
    assert_eq!(
        m.image.as_deref(),
        Some(picture.as_slice()),
        "the uploaded media opens with the key in the message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_uploaded_or_is_not_an_image_is_not_sent() {
    let s = EngineSession::linked(FakeWhatsApp::new()).await;
    s.fake.refuse_uploads(true);
    let mut message = outgoing("3EB0IMAGE00000000002", "966500000077", "the menu");
    message.image = Some(OutgoingImage {
        bytes: std::sync::Arc::new(vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4]),
        mime: "image/jpeg".into(),
    });
    let err = s.client.send(&message).await.expect_err("no media server");
    match err {
        EngineError::Failed(reason) => assert!(reason.contains("upload"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }

    message.image = Some(OutgoingImage {
        bytes: std::sync::Arc::new(b"%PDF-1.4".to_vec()),
        mime: "application/pdf".into(),
    });
    let err = s.client.send(&message).await.expect_err("not an image");
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
    assert!(s.fake.sent_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_people_write_are_reported_with_their_phone_number() {
    let fake = FakeWhatsApp::new();
    fake.set_history(
        PHONE,
        History {
            lid_pn: vec![(
                "111222333444555@lid".into(),
                "966500000005@s.whatsapp.net".into(),
            )],
            ..Default::default()
        },
    );
    let mut s = EngineSession::linked(fake).await;
    // The history (and its LID mapping) is handled before the contacts write.
    tokio::time::sleep(Duration::from_millis(500)).await;

    s.fake
        .send_message(
            PHONE,
            "966500000002@s.whatsapp.net",
            "Badr",
            "hello",
            1_700_000_123,
        )
        .await
        .expect("delivered");
    let got = s
        .next_event(|e| matches!(e, EngineEvent::MessageReceived(_)))
        .await;
    let EngineEvent::MessageReceived(m) = got else {
        unreachable!()
    };
    assert_eq!(m.from, "966500000002");
    assert_eq!(m.text.as_deref(), Some("hello"));
    assert_eq!(m.kind, "text");
    assert_eq!(m.push_name.as_deref(), Some("Badr"));
    assert_eq!(m.timestamp, 1_700_000_123);
    assert!(!m.id.is_empty());

    // A hidden number nobody mapped is not reported; one the phone mapped is, as a number.
    s.fake
        .send_message(PHONE, "999888777666555@lid", "Ghost", "boo", 1_700_000_200)
        .await
        .expect("delivered");
    s.fake
        .send_message(PHONE, "111222333444555@lid", "Sara", "hi", 1_700_000_300)
        .await
        .expect("delivered");
    let got = s
        .next_event(|e| matches!(e, EngineEvent::MessageReceived(_)))
        .await;
    let EngineEvent::MessageReceived(m) = got else {
        unreachable!()
    };
    assert_eq!(m.from, "966500000005", "{m:?}");
    assert_eq!(m.text.as_deref(), Some("hi"));
}
