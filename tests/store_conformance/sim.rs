//! The simulated engine's phones: links, phone books and outboxes survive a restart in the
//! database, per session and per pair.

use crate::{Fixture, pair, session_id};

pub async fn a_sim_link_is_kept_replaced_and_forgotten_once(f: Fixture) {
    let p = pair(1, 2);
    let (a, b) = (session_id(p, 1), session_id(p, 2));
    assert_eq!(f.db.sim_device(&a).await.unwrap(), None);
    f.db.save_sim_device(&a, r#"{"me":"1"}"#, 1).await.unwrap();
    f.db.save_sim_device(&a, r#"{"me":"2"}"#, 2).await.unwrap();
    f.db.save_sim_device(&b, r#"{"me":"3"}"#, 2).await.unwrap();
    assert_eq!(
        f.db.sim_device(&a).await.unwrap().as_deref(),
        Some(r#"{"me":"2"}"#)
    );
    assert!(f.db.forget_sim_device(&a).await.unwrap());
    assert!(!f.db.forget_sim_device(&a).await.unwrap(), "forgotten once");
    assert_eq!(f.db.sim_device(&a).await.unwrap(), None);
    assert_eq!(
        f.db.sim_device(&b).await.unwrap().as_deref(),
        Some(r#"{"me":"3"}"#)
    );
}

pub async fn a_phone_book_is_kept_byte_for_byte_per_pair(f: Fixture) {
    let (p, q) = (pair(1, 2), pair(1, 3));
    assert_eq!(f.db.sim_phonebook(p).await.unwrap(), None);
    // Not valid UTF-8 on purpose: the store keeps bytes, whatever they are.
    let book: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    f.db.set_sim_phonebook(p, b"old", 1).await.unwrap();
    f.db.set_sim_phonebook(p, &book, 2).await.unwrap();
    f.db.set_sim_phonebook(q, b"other", 2).await.unwrap();
    assert_eq!(f.db.sim_phonebook(p).await.unwrap(), Some(book));
    assert_eq!(
        f.db.sim_phonebook(q).await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
}

pub async fn the_outbox_keeps_the_order_sent_per_pair(f: Fixture) {
    let (p, q) = (pair(1, 2), pair(2, 2));
    for i in 0..50 {
        let to = if i % 2 == 0 { p } else { q };
        f.db.record_sim_sent(to, &format!("{{\"n\":{i}}}"), i)
            .await
            .unwrap();
    }
    let sent = f.db.sim_outbox(p).await.unwrap();
    let expected: Vec<String> = (0..50)
        .step_by(2)
        .map(|i| format!("{{\"n\":{i}}}"))
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(f.db.sim_outbox(q).await.unwrap().len(), 25);
    assert!(f.db.sim_outbox(pair(9, 9)).await.unwrap().is_empty());
}
