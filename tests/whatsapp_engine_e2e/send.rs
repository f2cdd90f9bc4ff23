//! One engine client driven below the HTTP API: what goes on the wire when it sends, and
//! what it reports when people write.

use std::time::Duration;

use fake_whatsapp::{FakeWhatsApp, History};
use testkit::wa::*;
use whatsapp_manager::domain::PhoneNumber;
use whatsapp_manager::engine::{EngineError, EngineEvent, OutgoingMedia, OutgoingMessage};
use whatsapp_manager::store::MessageKind;

fn outgoing(id: &str, to: &str, text: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: id.to_string(),
        to: PhoneNumber::parse_international(to).expect("a valid number"),
        text: Some(text.to_string()),
        media: None,
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

fn image(bytes: std::sync::Arc<Vec<u8>>, mime: String) -> OutgoingMedia {
    OutgoingMedia {
        kind: MessageKind::Image,
        bytes,
        mime,
        file_name: None,
        voice_note: false,
        thumbnail: None,
        width: None,
        height: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_through_the_media_server_with_its_caption() {
    let s = EngineSession::linked(FakeWhatsApp::new()).await;
    // Not a real JPEG: WhatsApp's servers never look inside, only the recipient's phone does.
    let picture: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = "3EB0IMAGE00000000001";
    let mut message = outgoing(id, "966500000077", "today's menu");
    message.media = Some(image(
        std::sync::Arc::new(picture.clone()),
        "image/jpeg".into(),
    ));
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
    message.media = Some(image(
        std::sync::Arc::new(vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4]),
        "image/jpeg".into(),
    ));
    let err = s.client.send(&message).await.expect_err("no media server");
    match err {
        EngineError::Failed(reason) => assert!(reason.contains("upload"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }

    message.media = Some(image(
        std::sync::Arc::new(b"%PDF-1.4".to_vec()),
        "application/pdf".into(),
    ));
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
