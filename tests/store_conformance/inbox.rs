//! The inbox: what people write is kept once, makes them contacts, forms conversations with
//! what we sent them, and never counts as the outbox's.

use whatsapp_manager::domain::PhoneNumber;
use whatsapp_manager::store::inbox::NewIncoming;
use whatsapp_manager::store::{
    BatchProgress, Direction, ImportContact, MediaFields, MessageFilter, MessageKind,
    MessageStatus, RetryOutcome, SessionRecord,
};

use crate::receipts::text as outgoing;
use crate::{Fixture, pair, session_id};

fn phone(raw: &str) -> PhoneNumber {
    PhoneNumber::parse_international(raw).expect("a valid number")
}

fn incoming(from: &str, wa_id: &str, sent_at_ms: i64) -> NewIncoming {
    NewIncoming {
        from: phone(from),
        push_name: Some("Sara".into()),
        wa_message_id: wa_id.into(),
        kind: MessageKind::Text,
        body: Some(format!("hi from {from}")),
        media: MediaFields::default(),
        media_ref: None,
        sent_at_ms,
    }
}

pub async fn an_incoming_message_is_kept_once_and_makes_its_sender_a_contact(f: Fixture) {
    let p = pair(1, 2);
    let mut m = incoming("966501234567", "IN1", 5_000_000);
    m.kind = MessageKind::Document;
    m.body = Some("the invoice".into());
    m.media = MediaFields {
        mime: Some("application/pdf".into()),
        size: Some(1234),
        file_name: Some("invoice.pdf".into()),
        ..MediaFields::default()
    };
    m.media_ref = Some(r#"{"k":"v"}"#.into());
    let first = f.db.record_incoming(p, &m, 10_000_000).await.unwrap();
    assert!(first.fresh);
    let msg = &first.message;
    assert_eq!(msg.direction, Direction::In);
    assert_eq!(msg.status, MessageStatus::Received);
    assert_eq!(msg.recipient, "+966501234567");
    assert_eq!(msg.recipient_name.as_deref(), Some("Sara"));
    assert_eq!(msg.kind, MessageKind::Document);
    assert_eq!(msg.body.as_deref(), Some("the invoice"));
    assert_eq!(msg.sent_at, Some(5_000_000));
    assert_eq!(msg.media.mime.as_deref(), Some("application/pdf"));
    assert_eq!(msg.media.size, Some(1234));
    assert_eq!(msg.media.file_name.as_deref(), Some("invoice.pdf"));
    assert_eq!(msg.media_ref.as_deref(), Some(r#"{"k":"v"}"#));
    assert_eq!(msg.contact_id, Some(first.contact.id));
    assert_eq!(first.contact.phone_number, "+966501234567");
    assert_eq!(first.contact.push_name.as_deref(), Some("Sara"));
    assert_eq!(first.contact.name.as_deref(), Some("Sara"));
    assert_eq!(first.contact.last_message_at, Some(5_000));

    // WhatsApp hands it over again: the same row, nothing new.
    let again = f.db.record_incoming(p, &m, 10_000_500).await.unwrap();
    assert!(!again.fresh);
    assert_eq!(again.message.id, msg.id);
    let (list, total) =
        f.db.list_messages(p, &MessageFilter::default(), 1, 10)
            .await
            .unwrap();
    assert_eq!((list.len(), total), (1, 1));
    assert_eq!(f.db.pair_counts(p).await.unwrap().0, 1);

    // The same id in another pair is another message.
    let other = f.db.record_incoming(pair(1, 3), &m, 1).await.unwrap();
    assert!(other.fresh);
}

pub async fn a_known_contact_keeps_its_name_and_its_activity_moves_forward_only(f: Fixture) {
    let p = pair(1, 2);
    let contact = ImportContact {
        phone: phone("966501234567"),
        jid: "966501234567@s.whatsapp.net".into(),
        name: Some("Sara Ahmed".into()),
        push_name: None,
        is_business: false,
        last_message_at: Some(9_000),
    };
    let sid = session_id(p, 1);
    f.db.save_session(&SessionRecord::new(sid.clone(), p, 1))
        .await
        .unwrap();
    let progress = BatchProgress {
        session_id: &sid,
        processed: 1,
        total: 1,
        percent: 100,
    };
    f.db.import_contacts(p, &[contact], progress, 1)
        .await
        .unwrap();
    let older =
        f.db.record_incoming(p, &incoming("966501234567", "A", 5_000_000), 2)
            .await
            .unwrap();
    assert_eq!(older.contact.name.as_deref(), Some("Sara Ahmed"));
    assert_eq!(older.contact.push_name.as_deref(), Some("Sara"));
    assert_eq!(older.contact.last_message_at, Some(9_000));
    let newer =
        f.db.record_incoming(p, &incoming("966501234567", "B", 12_000_000), 3)
            .await
            .unwrap();
    assert_eq!(newer.contact.id, older.contact.id);
    assert_eq!(newer.contact.last_message_at, Some(12_000));
    assert_eq!(f.db.pair_counts(p).await.unwrap().0, 1);
}

pub async fn conversations_order_by_newest_message_and_count_unread(f: Fixture) {
    let p = pair(1, 2);
    let a = "+966501111111";
    let b = "+966502222222";
    f.db.record_incoming(p, &incoming(a, "A1", 1_000), 10)
        .await
        .unwrap();
    f.db.record_incoming(p, &incoming(b, "B1", 1_000), 11)
        .await
        .unwrap();
    f.db.record_incoming(p, &incoming(a, "A2", 2_000), 12)
        .await
        .unwrap();
    let (list, total) = f.db.conversations(p, 1, 10).await.unwrap();
    assert_eq!(total, 2);
    let heads: Vec<_> = list
        .iter()
        .map(|c| {
            (
                c.contact.phone_number.as_str(),
                c.last_message.wa_message_id.as_str(),
                c.unread_count,
            )
        })
        .collect();
    assert_eq!(heads, [(a, "A2", 2), (b, "B1", 1)]);

    // An answer sent to B's bare number moves B's conversation to the top.
    f.db.enqueue(p, None, &[outgoing(b, "OUT1")], 13)
        .await
        .unwrap();
    let (list, _) = f.db.conversations(p, 1, 1).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].contact.phone_number, b);
    assert_eq!(list[0].last_message.wa_message_id, "OUT1");
    assert_eq!(list[0].unread_count, 1);
    let (page2, total) = f.db.conversations(p, 2, 1).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page2[0].contact.phone_number, a);

    // A number we only sent to, never a contact, is no conversation.
    f.db.enqueue(p, None, &[outgoing("+966503333333", "OUT2")], 14)
        .await
        .unwrap();
    assert_eq!(f.db.conversations(p, 1, 10).await.unwrap().1, 2);

    // Reading A's marks its two, once.
    let read = f.db.mark_conversation_read(p, a, 20).await.unwrap();
    let ids: Vec<_> = read.iter().map(|m| m.wa_message_id.as_str()).collect();
    assert_eq!(ids, ["A1", "A2"]);
    assert!(
        read.iter()
            .all(|m| m.status == MessageStatus::Read && m.read_at == Some(20))
    );
    assert!(
        f.db.mark_conversation_read(p, a, 21)
            .await
            .unwrap()
            .is_empty()
    );
    let (list, _) = f.db.conversations(p, 1, 10).await.unwrap();
    let unread: Vec<_> = list.iter().map(|c| c.unread_count).collect();
    assert_eq!(unread, [1, 0]);

    // Another tenant sees none of it.
    assert_eq!(f.db.conversations(pair(2, 2), 1, 10).await.unwrap().1, 0);
    assert!(
        f.db.mark_conversation_read(pair(2, 2), b, 22)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_peers_messages_are_both_directions_newest_first(f: Fixture) {
    let p = pair(1, 2);
    let a = "+966501111111";
    f.db.record_incoming(p, &incoming(a, "A1", 1_000), 10)
        .await
        .unwrap();
    f.db.enqueue(
        p,
        None,
        &[outgoing(a, "OUT1"), outgoing("+966502222222", "X")],
        11,
    )
    .await
    .unwrap();
    f.db.record_incoming(p, &incoming(a, "A2", 2_000), 12)
        .await
        .unwrap();
    let (list, total) = f.db.peer_messages(p, a, 1, 2).await.unwrap();
    assert_eq!(total, 3);
    let ids: Vec<_> = list.iter().map(|m| m.wa_message_id.as_str()).collect();
    assert_eq!(ids, ["A2", "OUT1"]);
    let (list, _) = f.db.peer_messages(p, a, 2, 2).await.unwrap();
    assert_eq!(list[0].wa_message_id, "A1");
    assert_eq!(f.db.peer_messages(pair(9, 9), a, 1, 10).await.unwrap().1, 0);
}

pub async fn incoming_rows_change_nothing_the_outbox_reads(f: Fixture) {
    let p = pair(1, 2);
    let queued =
        f.db.enqueue(p, None, &[outgoing("+966501111111", "OUT1")], 100)
            .await
            .unwrap()
            .1;
    f.db.mark_sending(queued[0].id, 110).await.unwrap();
    f.db.mark_failed(queued[0].id, "boom", 120).await.unwrap();
    let before = (
        f.db.pending_count().await.unwrap(),
        f.db.pairs_with_pending().await.unwrap(),
        f.db.next_pending(p).await.unwrap(),
        f.db.sent_since(p, 0).await.unwrap(),
        f.db.last_sent_at(p).await.unwrap(),
        f.db.message_counts(p, &MessageFilter::default())
            .await
            .unwrap(),
    );
    // Stamped by the sender's phone inside the window the daily cap counts.
    let inc =
        f.db.record_incoming(p, &incoming("+966502222222", "IN1", 130), 130)
            .await
            .unwrap();
    f.db.mark_conversation_read(p, "+966502222222", 140)
        .await
        .unwrap();
    f.db.record_incoming(p, &incoming("+966502222222", "IN2", 150), 150)
        .await
        .unwrap();
    let after = (
        f.db.pending_count().await.unwrap(),
        f.db.pairs_with_pending().await.unwrap(),
        f.db.next_pending(p).await.unwrap(),
        f.db.sent_since(p, 0).await.unwrap(),
        f.db.last_sent_at(p).await.unwrap(),
        f.db.message_counts(p, &MessageFilter::default())
            .await
            .unwrap(),
    );
    assert_eq!(before, after);
    assert!(matches!(
        f.db.retry_message(p, inc.message.id, 200).await.unwrap(),
        RetryOutcome::NotFailed(MessageStatus::Read)
    ));

    // The log shows both, and the direction filter tells them apart.
    let by = |d| MessageFilter {
        direction: Some(d),
        ..MessageFilter::default()
    };
    assert_eq!(
        f.db.list_messages(p, &by(Direction::In), 1, 10)
            .await
            .unwrap()
            .1,
        2
    );
    let (out, n) =
        f.db.list_messages(p, &by(Direction::Out), 1, 10)
            .await
            .unwrap();
    assert_eq!((n, out[0].wa_message_id.as_str()), (1, "OUT1"));
    assert_eq!(
        f.db.list_messages(p, &MessageFilter::default(), 1, 10)
            .await
            .unwrap()
            .1,
        3
    );
}
