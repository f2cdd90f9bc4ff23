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

pub async fn the_networks_list_is_kept_apart_from_every_pairs_book(f: Fixture) {
    let p = pair(1, 2);
    assert_eq!(f.db.sim_network().await.unwrap(), None);
    f.db.set_sim_phonebook(p, b"the pair's book", 1)
        .await
        .unwrap();
    f.db.set_sim_network(b"first list", 1).await.unwrap();
    f.db.set_sim_network(b"second list", 2).await.unwrap();
    assert_eq!(
        f.db.sim_network().await.unwrap().as_deref(),
        Some(&b"second list"[..]),
        "replaced"
    );
    assert_eq!(
        f.db.sim_phonebook(p).await.unwrap().as_deref(),
        Some(&b"the pair's book"[..]),
        "no pair's book is the network's"
    );
    let mut all = f.db.all_sim_phonebooks().await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![b"second list".to_vec(), b"the pair's book".to_vec()]
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

pub async fn a_second_connection_of_a_device_replaces_the_first_unless_its_node_is_dead(
    f: Fixture,
) {
    use whatsapp_manager::store::traits::SimCloseReason::*;
    let (p, q) = (pair(1, 2), pair(1, 3));
    let (s, other) = (session_id(p, 1), session_id(q, 1));
    let first = f.db.open_sim_connection(p, &s, "a", 10).await.unwrap();
    assert!(first.closed.is_empty());
    let elsewhere = f.db.open_sim_connection(q, &other, "a", 11).await.unwrap();
    assert!(elsewhere.closed.is_empty(), "another device is not touched");
    // The same node is alive, whatever the backend: its earlier connection is replaced.
    let second = f.db.open_sim_connection(p, &s, "a", 20).await.unwrap();
    assert_eq!(second.closed, [(first.id, "a".to_string(), Replaced)]);
    // "a" never joined a cluster (PostgreSQL) or is not this node (SQLite): it is dead, and
    // WhatsApp drops a dead node's connection rather than replace it.
    let third = f.db.open_sim_connection(p, &s, "b", 30).await.unwrap();
    assert_eq!(third.closed, [(second.id, "a".to_string(), ConnectionLost)]);
    assert_eq!(
        f.db.open_sim_connections_of("a").await.unwrap(),
        [elsewhere.id]
    );
    assert_eq!(f.db.open_sim_connections_of("b").await.unwrap(), [third.id]);

    assert!(
        f.db.close_sim_connection(third.id, Closed, 40)
            .await
            .unwrap()
    );
    assert!(
        !f.db
            .close_sim_connection(third.id, LoggedOut, 41)
            .await
            .unwrap(),
        "closed once, its reason kept"
    );
    let all = f.db.sim_connections(p).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|c| {
            (
                c.id,
                c.node_id.as_str(),
                c.opened_at,
                c.closed_at,
                c.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (first.id, "a", 10, Some(20), Some("replaced")),
            (second.id, "a", 20, Some(30), Some("connection_lost")),
            (third.id, "b", 30, Some(40), Some("closed")),
        ]
    );
    assert!(
        all.iter()
            .all(|c| c.pair == p && c.session_id == s.as_str())
    );
    assert_eq!(
        f.db.sim_connection(second.id).await.unwrap().as_ref(),
        Some(&all[1])
    );
    assert_eq!(f.db.sim_connection(i64::MAX).await.unwrap(), None);

    // A node's start closes what its earlier process left open, and only that.
    assert_eq!(
        f.db.close_sim_connections_of("a", ConnectionLost, 50)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.db.close_sim_connections_of("a", ConnectionLost, 51)
            .await
            .unwrap(),
        0
    );
    let left = f.db.sim_connections(q).await.unwrap();
    assert_eq!(left[0].reason.as_deref(), Some("connection_lost"));
    assert_eq!(left[0].closed_at, Some(50));
}

/// Two servers opening the same device at once: one connection stays open, never two.
pub async fn racing_connections_of_one_device_leave_exactly_one_open(f: Fixture) {
    let p = pair(4, 4);
    let s = session_id(p, 1);
    let other = f.second_server().await;
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            db.open_sim_connection(p, &s, "a", i).await.unwrap()
        }));
    }
    let mut closed = 0;
    for t in tasks {
        closed += t.await.unwrap().closed.len();
    }
    let all = f.db.sim_connections(p).await.unwrap();
    assert_eq!(all.len(), 16);
    let open: Vec<_> = all.iter().filter(|c| c.closed_at.is_none()).collect();
    assert_eq!(open.len(), 1, "{all:?}");
    assert_eq!(closed, 15, "each open closed the one before it");
    assert!(
        all.iter()
            .filter(|c| c.closed_at.is_some())
            .all(|c| c.reason.as_deref() == Some("replaced"))
    );
}
