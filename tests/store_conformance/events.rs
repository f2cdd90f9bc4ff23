//! Events and webhooks: the event log a reconnecting listener reads from, and the webhook
//! queue that delivers one tenant's events strictly in order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use whatsapp_manager::domain::SessionId;
use whatsapp_manager::store::{AttemptResult, DeliveryStatus, EventRecord, WebhookRecord};

use crate::{Db, Fixture, pair, place, user};

fn hook(u: i64, events: &[&str], now: i64) -> WebhookRecord {
    WebhookRecord {
        user_id: user(u),
        url: format!("https://example.com/hook/{u}"),
        secret: format!("secret-{u}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        created_at: now,
        updated_at: now,
    }
}

async fn record(db: &Db, u: i64, pl: i64, kind: &str, now: i64) -> (EventRecord, bool) {
    let payload = |id: i64| format!(r#"{{"id":{id},"kind":"k"}}"#);
    db.record_event(pair(u, pl), None, kind, &payload, now)
        .await
        .unwrap()
}

pub async fn an_event_payload_carries_its_id_and_a_delivery_needs_a_subscription(f: Fixture) {
    let p = pair(1, 2);
    let sid = SessionId::new(p, 5);
    let payload = |id: i64| format!(r#"{{"event_id":{id},"text":"مرحبا"}}"#);
    let (ev, queued) =
        f.db.record_event(p, Some(&sid), "session.ready", &payload, 10)
            .await
            .unwrap();
    assert!(!queued, "no webhook, no delivery");
    assert_eq!(
        ev.payload,
        format!(r#"{{"event_id":{},"text":"مرحبا"}}"#, ev.id)
    );
    assert_eq!(
        (
            ev.pair,
            ev.session_id.clone(),
            ev.kind.as_str(),
            ev.created_at
        ),
        (p, Some(sid), "session.ready", 10)
    );
    let stored = f.db.events_after(user(1), None, 0, 10).await.unwrap();
    assert_eq!(stored, vec![ev]);

    assert_eq!(f.db.webhook(user(1)).await.unwrap(), None);
    let set =
        f.db.set_webhook(&hook(1, &["session.ready", "message.sent"], 20))
            .await
            .unwrap();
    assert_eq!(set, hook(1, &["session.ready", "message.sent"], 20));
    // Setting it again changes it but keeps when it was made.
    let mut changed = hook(1, &["session.ready"], 30);
    changed.url = "https://example.com/other".into();
    let set = f.db.set_webhook(&changed).await.unwrap();
    assert_eq!(set.created_at, 20);
    assert_eq!(
        (set.updated_at, set.url.as_str()),
        (30, "https://example.com/other")
    );
    assert_eq!(set.events, vec!["session.ready"]);
    assert_eq!(f.db.webhook(user(1)).await.unwrap(), Some(set));

    let (ready, queued) = record(&f.db, 1, 2, "session.ready", 40).await;
    assert!(queued);
    let (_, queued) = record(&f.db, 1, 2, "message.sent", 41).await;
    assert!(!queued, "not subscribed any more");
    // A kind that merely contains a subscribed one is not subscribed.
    let (_, queued) = record(&f.db, 1, 2, "session", 42).await;
    assert!(!queued);
    let (_, queued) = record(&f.db, 2, 2, "session.ready", 43).await;
    assert!(!queued, "another tenant's webhook");
    let (list, total) = f.db.deliveries(user(1), None, 1, 10).await.unwrap();
    assert_eq!(total, 1);
    let d = &list[0];
    assert_eq!(d.event, ready);
    assert_eq!(
        (d.user_id, d.status, d.attempts),
        (user(1), DeliveryStatus::Pending, 0)
    );
    assert_eq!(
        (d.next_attempt_at, d.created_at, d.delivered_at),
        (40, 40, None)
    );
    assert_eq!((d.last_status_code, d.last_error.clone()), (None, None));
}

pub async fn events_after_reads_per_user_and_place_with_a_limit(f: Fixture) {
    let mut mine = Vec::new();
    for i in 0..6 {
        let pl = 1 + i % 2;
        mine.push(record(&f.db, 1, pl, "k", i).await.0);
        record(&f.db, 2, pl, "k", i).await;
    }
    let ids = |l: Vec<EventRecord>| l.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let all: Vec<i64> = mine.iter().map(|e| e.id).collect();
    assert_eq!(
        ids(f.db.events_after(user(1), None, 0, 100).await.unwrap()),
        all
    );
    assert_eq!(
        ids(f.db.events_after(user(1), None, all[2], 2).await.unwrap()),
        all[3..5].to_vec()
    );
    let place2: Vec<i64> = mine
        .iter()
        .filter(|e| e.pair.place_id == place(2))
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids(f
            .db
            .events_after(user(1), Some(place(2)), 0, 100)
            .await
            .unwrap()),
        place2
    );
    assert!(
        f.db.events_after(user(1), None, *all.last().unwrap(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.db.events_after(user(3), None, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn deleting_the_webhook_fails_its_pending_deliveries(f: Fixture) {
    f.db.set_webhook(&hook(1, &["k"], 1)).await.unwrap();
    f.db.set_webhook(&hook(2, &["k"], 1)).await.unwrap();
    record(&f.db, 1, 1, "k", 2).await;
    record(&f.db, 1, 1, "k", 3).await;
    record(&f.db, 2, 1, "k", 3).await;
    let heads = f.db.pending_heads().await.unwrap();
    let first = heads.iter().find(|d| d.user_id == user(1)).unwrap().id;
    f.db.record_attempt(first, &AttemptResult::Delivered { status_code: 200 }, 4)
        .await
        .unwrap();
    assert!(f.db.delete_webhook(user(1), 5).await.unwrap());
    assert!(
        !f.db.delete_webhook(user(1), 6).await.unwrap(),
        "already gone"
    );
    assert_eq!(f.db.webhook(user(1)).await.unwrap(), None);
    let (list, _) = f.db.deliveries(user(1), None, 1, 10).await.unwrap();
    let statuses: Vec<_> = list.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        vec![DeliveryStatus::Failed, DeliveryStatus::Delivered]
    );
    assert!(
        list[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("removed")
    );
    // The other tenant's queue is untouched.
    let heads = f.db.pending_heads().await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].user_id, user(2));
    // No new deliveries without a webhook.
    assert!(!record(&f.db, 1, 1, "k", 7).await.1);
}

pub async fn only_the_head_of_each_tenants_queue_is_pending(f: Fixture) {
    assert!(f.db.pending_heads().await.unwrap().is_empty());
    for u in [1, 2] {
        f.db.set_webhook(&hook(u, &["k"], 1)).await.unwrap();
    }
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(record(&f.db, 1, 1 + i, "k", 10 + i).await.0);
        record(&f.db, 2, 1, "k", 10 + i).await;
    }
    let heads = f.db.pending_heads().await.unwrap();
    assert_eq!(heads.len(), 2);
    assert!(heads.windows(2).all(|w| w[0].id < w[1].id));
    let head = heads.iter().find(|d| d.user_id == user(1)).unwrap();
    assert_eq!(head.event, events[0]);
    // A failure with a retry keeps the head; delivering it moves the head on, in order.
    let retry = AttemptResult::Failed {
        status_code: Some(500),
        error: "server error".into(),
        retry_at: Some(99),
    };
    f.db.record_attempt(head.id, &retry, 20).await.unwrap();
    let again = f.db.pending_heads().await.unwrap();
    let same = again.iter().find(|d| d.user_id == user(1)).unwrap();
    assert_eq!(
        (same.id, same.attempts, same.next_attempt_at),
        (head.id, 1, 99)
    );
    assert_eq!(same.last_status_code, Some(500));
    assert_eq!(same.last_error.as_deref(), Some("server error"));
    for want in &events {
        let heads = f.db.pending_heads().await.unwrap();
        let head = heads.iter().find(|d| d.user_id == user(1)).unwrap();
        assert_eq!(&head.event, want);
        f.db.record_attempt(head.id, &AttemptResult::Delivered { status_code: 204 }, 30)
            .await
            .unwrap();
    }
    let heads = f.db.pending_heads().await.unwrap();
    assert_eq!(
        heads.iter().map(|d| d.user_id).collect::<Vec<_>>(),
        vec![user(2)]
    );
}

pub async fn attempts_are_recorded_and_deliveries_listed_newest_first(f: Fixture) {
    f.db.set_webhook(&hook(1, &["k"], 1)).await.unwrap();
    for i in 0..5 {
        record(&f.db, 1, 1, "k", i).await;
    }
    let (all, total) = f.db.deliveries(user(1), None, 1, 10).await.unwrap();
    assert_eq!(total, 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let oldest = all[4].id;
    let gave_up = AttemptResult::Failed {
        status_code: None,
        error: "connection refused".into(),
        retry_at: None,
    };
    f.db.record_attempt(oldest, &gave_up, 50).await.unwrap();
    f.db.record_attempt(
        all[3].id,
        &AttemptResult::Delivered { status_code: 200 },
        60,
    )
    .await
    .unwrap();
    let (failed, total) =
        f.db.deliveries(user(1), Some(DeliveryStatus::Failed), 1, 10)
            .await
            .unwrap();
    assert_eq!(total, 1);
    let d = &failed[0];
    assert_eq!((d.id, d.attempts, d.last_status_code), (oldest, 1, None));
    assert_eq!(d.last_error.as_deref(), Some("connection refused"));
    assert_eq!(d.delivered_at, None);
    let (delivered, _) =
        f.db.deliveries(user(1), Some(DeliveryStatus::Delivered), 1, 10)
            .await
            .unwrap();
    let d = &delivered[0];
    assert_eq!(
        (d.id, d.attempts, d.last_status_code, d.delivered_at),
        (all[3].id, 1, Some(200), Some(60))
    );
    assert_eq!(d.last_error, None);
    let (pending, total) =
        f.db.deliveries(user(1), Some(DeliveryStatus::Pending), 2, 2)
            .await
            .unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![all[2].id]
    );
    assert_eq!(f.db.deliveries(user(2), None, 1, 10).await.unwrap().1, 0);
}

/// Ids need not commit in order on every backend: a listener polling `events_after` with
/// the last id it read must still miss nothing, and the webhook queue must hold the events
/// in the order of their ids.
pub async fn a_reader_never_sees_an_id_below_one_it_already_read(f: Fixture) {
    f.db.set_webhook(&hook(1, &["k"], 1)).await.unwrap();
    let writers_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let db = f.db.clone();
        let done = writers_done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                // Read whether the writers were done before polling: the last poll then
                // comes after every commit.
                let last_round = done.load(Ordering::SeqCst);
                let page = db.events_after(user(1), None, after, 1_000).await.unwrap();
                for e in page {
                    assert!(e.id > after, "id {} after {after}", e.id);
                    after = e.id;
                    seen.push(e.id);
                }
                if last_round {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..50 {
        let db = f.db.clone();
        writers.spawn(async move { record(&db, 1, 1 + i % 3, "k", i).await.0.id });
    }
    let mut written = BTreeSet::new();
    while let Some(id) = writers.join_next().await {
        written.insert(id.unwrap());
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>(),
        written,
        "the reader missed an event"
    );
    assert_eq!(seen.len(), 50);
    // The deliveries are queued in the order of their events.
    let (list, total) = f.db.deliveries(user(1), None, 1, 100).await.unwrap();
    assert_eq!(total, 50);
    let event_ids: Vec<i64> = list.iter().rev().map(|d| d.event.id).collect();
    assert_eq!(event_ids, written.into_iter().collect::<Vec<_>>());
}

pub async fn every_tenants_events_follow_one_id_and_the_last_id_is_known(f: Fixture) {
    assert_eq!(f.db.last_event_id().await.unwrap(), 0, "no event yet");
    let a = record(&f.db, 1, 1, "k", 1).await.0.id;
    let b = record(&f.db, 2, 1, "k", 2).await.0.id;
    let c = record(&f.db, 1, 2, "k", 3).await.0.id;
    assert_eq!(f.db.last_event_id().await.unwrap(), c);
    let ids = |es: Vec<EventRecord>| es.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(f.db.events_since(0, 100).await.unwrap()), [a, b, c]);
    assert_eq!(ids(f.db.events_since(a, 1).await.unwrap()), [b]);
    assert!(f.db.events_since(c, 100).await.unwrap().is_empty());
    let second = &f.db.events_since(a, 1).await.unwrap()[0];
    assert_eq!((second.pair, second.kind.as_str()), (pair(2, 1), "k"));
}

pub async fn a_delivery_is_claimed_by_one_dispatcher_until_due_again_or_released(f: Fixture) {
    f.db.set_webhook(&hook(1, &["k"], 1)).await.unwrap();
    record(&f.db, 1, 1, "k", 2).await;
    let head = f.db.pending_heads().await.unwrap()[0].id;
    assert!(f.db.claim_delivery(head, 5, 100).await.unwrap());
    assert!(
        !f.db.claim_delivery(head, 50, 150).await.unwrap(),
        "claimed by another until 100"
    );
    assert_eq!(f.db.pending_heads().await.unwrap()[0].next_attempt_at, 100);
    f.db.release_delivery(head, 100, 5).await.unwrap();
    assert_eq!(f.db.pending_heads().await.unwrap()[0].next_attempt_at, 5);
    assert!(f.db.claim_delivery(head, 6, 200).await.unwrap());
    f.db.release_delivery(head, 100, 5).await.unwrap();
    assert_eq!(
        f.db.pending_heads().await.unwrap()[0].next_attempt_at,
        200,
        "a release of an older claim leaves the newer one"
    );
    // A dispatcher that died with it: the claim runs out and another takes it.
    assert!(f.db.claim_delivery(head, 200, 300).await.unwrap());
    f.db.record_attempt(head, &AttemptResult::Delivered { status_code: 200 }, 210)
        .await
        .unwrap();
    assert!(
        !f.db.claim_delivery(head, 400, 500).await.unwrap(),
        "delivered"
    );
    f.db.release_delivery(head, 300, 5).await.unwrap();
    let (list, _) = f.db.deliveries(user(1), None, 1, 10).await.unwrap();
    assert_eq!(list[0].status, DeliveryStatus::Delivered);
}
