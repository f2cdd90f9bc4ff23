//! Receipts: the recipient's phone moves an outgoing message on (delivered, read, played),
//! only forward, each time stamped once, and only the pair's own outgoing messages.

use sqlx::Connection;
use testkit::db::TestBackend;
use whatsapp_manager::store::{
    JobKind, MessageFilter, MessageKind, MessageRecord, MessageStatus, NewJob, NewMessage,
};

use crate::{Db, Fixture, pair};

/// A text to `recipient` under the WhatsApp id `wa_id` (also the inbox's outgoing rows).
pub fn text(recipient: &str, wa_id: &str) -> NewMessage {
    NewMessage {
        contact_id: None,
        recipient: recipient.into(),
        recipient_name: None,
        kind: MessageKind::Text,
        body: Some("hello".into()),
        image_url: None,
        template_id: None,
        wa_message_id: wa_id.into(),
        min_gap_ms: 0,
        media: Default::default(),
    }
}

async fn sent(db: &Db, p: whatsapp_manager::domain::Pair, wa_ids: &[&str]) -> Vec<MessageRecord> {
    let msgs: Vec<NewMessage> = wa_ids
        .iter()
        .enumerate()
        .map(|(i, id)| text(&format!("+96650000000{i}"), id))
        .collect();
    let (_, q) = db.enqueue(p, None, &msgs, 1).await.unwrap();
    for m in &q {
        db.mark_sending(m.id, 2).await.unwrap();
        db.mark_sent(m.id, &m.wa_message_id, 3).await.unwrap();
    }
    q
}

async fn receipt(
    db: &Db,
    p: whatsapp_manager::domain::Pair,
    ids: &[&str],
    to: MessageStatus,
    now: i64,
) -> Vec<MessageRecord> {
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    db.apply_receipt(p, &ids, to, now).await.unwrap()
}

async fn get(db: &Db, m: &MessageRecord) -> MessageRecord {
    db.message(m.pair, m.id).await.unwrap().expect("stored")
}

fn times(m: &MessageRecord) -> (Option<i64>, Option<i64>, Option<i64>) {
    (m.delivered_at, m.read_at, m.played_at)
}

pub async fn receipts_move_a_message_forward_only_and_stamp_each_time_once(f: Fixture) {
    let p = pair(1, 2);
    let q = sent(&f.db, p, &["A", "B"]).await;
    let moved = receipt(&f.db, p, &["A", "B"], MessageStatus::Delivered, 10).await;
    assert_eq!(moved.len(), 2, "one receipt may name several messages");
    for m in &moved {
        assert_eq!(m.status, MessageStatus::Delivered);
        assert_eq!(times(m), (Some(10), None, None));
        assert_eq!((m.sent_at, m.updated_at), (Some(3), 10));
    }
    // The same receipt again changes nothing and reports nothing.
    assert!(
        receipt(&f.db, p, &["A"], MessageStatus::Delivered, 11)
            .await
            .is_empty()
    );
    let moved = receipt(&f.db, p, &["A"], MessageStatus::Read, 20).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, q[0].id);
    assert_eq!(moved[0].status, MessageStatus::Read);
    assert_eq!(times(&moved[0]), (Some(10), Some(20), None));
    // Late receipts of lower rank never move it back, nor restamp.
    assert!(
        receipt(&f.db, p, &["A"], MessageStatus::Delivered, 30)
            .await
            .is_empty()
    );
    assert!(
        receipt(&f.db, p, &["A"], MessageStatus::Read, 31)
            .await
            .is_empty()
    );
    let a = get(&f.db, &q[0]).await;
    assert_eq!(a.status, MessageStatus::Read);
    assert_eq!(times(&a), (Some(10), Some(20), None));
    assert_eq!(a.updated_at, 20);
    let moved = receipt(&f.db, p, &["A"], MessageStatus::Played, 40).await;
    assert_eq!(moved[0].status, MessageStatus::Played);
    assert_eq!(times(&moved[0]), (Some(10), Some(20), Some(40)));
    assert!(
        receipt(&f.db, p, &["A"], MessageStatus::Read, 50)
            .await
            .is_empty()
    );
    assert_eq!(get(&f.db, &q[0]).await.status, MessageStatus::Played);
    // B still only delivered: receipts of A did not touch it.
    assert_eq!(get(&f.db, &q[1]).await.status, MessageStatus::Delivered);
    // Only receipt statuses move anything.
    for s in [
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Failed,
    ] {
        assert!(receipt(&f.db, p, &["B"], s, 60).await.is_empty(), "{s:?}");
    }
    assert!(
        receipt(&f.db, p, &[], MessageStatus::Read, 60)
            .await
            .is_empty()
    );
}

pub async fn a_read_first_stamps_delivered_too_and_a_receipt_before_the_send_is_recorded_holds(
    f: Fixture,
) {
    let p = pair(1, 2);
    let q = sent(&f.db, p, &["A"]).await;
    // Read before any delivered receipt (they arrive out of order): delivered is implied.
    let moved = receipt(&f.db, p, &["A"], MessageStatus::Read, 10).await;
    assert_eq!(times(&moved[0]), (Some(10), Some(10), None));
    assert!(
        receipt(&f.db, p, &["A"], MessageStatus::Delivered, 20)
            .await
            .is_empty()
    );
    assert_eq!(times(&get(&f.db, &q[0]).await), (Some(10), Some(10), None));
    // Played straight away stamps all three.
    let q = sent(&f.db, p, &["P"]).await;
    let moved = receipt(&f.db, p, &["P"], MessageStatus::Played, 30).await;
    assert_eq!(times(&moved[0]), (Some(30), Some(30), Some(30)));
    assert_eq!(get(&f.db, &q[0]).await.status, MessageStatus::Played);

    // The phone's receipt may come before the worker writes down that the send went out:
    // the message is `sending` then, and what the worker writes next never moves it back.
    let (_, q) =
        f.db.enqueue(
            p,
            None,
            &[text("+1", "S"), text("+2", "T"), text("+3", "U")],
            1,
        )
        .await
        .unwrap();
    for m in &q {
        f.db.mark_sending(m.id, 2).await.unwrap();
    }
    let moved = receipt(&f.db, p, &["S", "T", "U"], MessageStatus::Delivered, 5).await;
    assert_eq!(moved.len(), 3);
    f.db.mark_sent(q[0].id, "S", 6).await.unwrap();
    f.db.mark_failed(q[1].id, "timed out", 6).await.unwrap();
    f.db.requeue(q[2].id, 6).await.unwrap();
    f.db.mark_sending(q[2].id, 7).await.unwrap();
    let s = get(&f.db, &q[0]).await;
    assert_eq!(
        (s.status, s.sent_at, s.delivered_at),
        (MessageStatus::Delivered, Some(6), Some(5))
    );
    // The send counts against the daily cap all the same.
    assert_eq!(f.db.sent_since(p, 6).await.unwrap().0, 1);
    for m in &q[1..] {
        let m = get(&f.db, m).await;
        assert_eq!(m.status, MessageStatus::Delivered, "{}", m.wa_message_id);
        assert_eq!((m.error, m.failed_at), (None, None));
    }
    assert!(f.db.pairs_with_pending().await.unwrap().is_empty());
}

/// Turns a stored message into one the contact wrote (the inbox writes those).
async fn make_incoming(f: &Fixture, id: i64) {
    const SQL: &str = "UPDATE messages SET direction = 'in', status = 'received' WHERE id = $1";
    match f.backend {
        TestBackend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&f.database.url)
                .await
                .unwrap();
            sqlx::query(SQL).bind(id).execute(&mut c).await.unwrap();
        }
        TestBackend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&f.database.url).await.unwrap();
            sqlx::query(SQL).bind(id).execute(&mut c).await.unwrap();
        }
    }
}

pub async fn receipts_touch_only_the_pairs_outgoing_messages_from_sending_on(f: Fixture) {
    let (p, other) = (pair(1, 2), pair(1, 3));
    let mine = sent(&f.db, p, &["SAME"]).await;
    let theirs = sent(&f.db, other, &["SAME"]).await;
    let moved = receipt(&f.db, p, &["SAME"], MessageStatus::Read, 10).await;
    assert_eq!(
        moved.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![mine[0].id]
    );
    let t = get(&f.db, &theirs[0]).await;
    assert_eq!(
        (t.status, times(&t)),
        (MessageStatus::Sent, (None, None, None))
    );

    // An incoming message with the id is not ours to move.
    let (_, q) = f.db.enqueue(p, None, &[text("+1", "IN")], 1).await.unwrap();
    make_incoming(&f, q[0].id).await;
    assert!(
        receipt(&f.db, p, &["IN"], MessageStatus::Read, 20)
            .await
            .is_empty()
    );
    let m = get(&f.db, &q[0]).await;
    assert_eq!((m.status, m.read_at), (MessageStatus::Received, None));

    // Queued and failed messages stay as they are; unknown ids are ignored.
    let (_, q) =
        f.db.enqueue(p, None, &[text("+1", "Q"), text("+2", "F")], 1)
            .await
            .unwrap();
    f.db.mark_sending(q[1].id, 2).await.unwrap();
    f.db.mark_failed(q[1].id, "refused", 3).await.unwrap();
    assert!(
        receipt(&f.db, p, &["Q", "F", "NOPE"], MessageStatus::Delivered, 30)
            .await
            .is_empty()
    );
    assert_eq!(get(&f.db, &q[0]).await.status, MessageStatus::Queued);
    let failed = get(&f.db, &q[1]).await;
    assert_eq!(
        (failed.status, failed.delivered_at),
        (MessageStatus::Failed, None)
    );
}

pub async fn counts_follow_receipts_and_a_job_stays_done(f: Fixture) {
    let p = pair(1, 2);
    let msgs: Vec<NewMessage> = ["A", "B", "C", "D", "E"]
        .iter()
        .enumerate()
        .map(|(i, id)| text(&format!("+1{i}"), id))
        .collect();
    let (job, q) =
        f.db.enqueue(p, Some(NewJob::new(JobKind::Bulk, None)), &msgs, 1)
            .await
            .unwrap();
    let job = job.unwrap();
    for m in &q[..4] {
        f.db.mark_sending(m.id, 2).await.unwrap();
        f.db.mark_sent(m.id, &m.wa_message_id, 3).await.unwrap();
    }
    f.db.mark_sending(q[4].id, 2).await.unwrap();
    f.db.mark_failed(q[4].id, "refused", 3).await.unwrap();
    receipt(&f.db, p, &["A", "B", "C"], MessageStatus::Delivered, 5).await;
    receipt(&f.db, p, &["B"], MessageStatus::Read, 6).await;
    receipt(&f.db, p, &["C"], MessageStatus::Played, 6).await;
    let c = f.db.job(p, job).await.unwrap().unwrap().counts;
    // `sent` counts every message WhatsApp took, whatever its receipts since.
    assert_eq!(
        (
            c.queued,
            c.sending,
            c.sent,
            c.delivered,
            c.read,
            c.played,
            c.failed
        ),
        (0, 0, 4, 3, 2, 1, 1)
    );
    assert_eq!(c.total(), 5);
    let filter = |s| MessageFilter {
        status: Some(s),
        ..MessageFilter::default()
    };
    // A filter matches the status a message has now.
    for (s, want) in [
        (MessageStatus::Sent, vec!["D"]),
        (MessageStatus::Delivered, vec!["A"]),
        (MessageStatus::Read, vec!["B"]),
        (MessageStatus::Played, vec!["C"]),
    ] {
        let (list, total) = f.db.list_messages(p, &filter(s), 1, 50).await.unwrap();
        let ids: Vec<&str> = list.iter().map(|m| m.wa_message_id.as_str()).collect();
        assert_eq!((ids, total), (want.clone(), want.len() as i64), "{s:?}");
    }
    let stats =
        f.db.message_counts(p, &filter(MessageStatus::Read))
            .await
            .unwrap();
    assert_eq!(
        (stats.sent, stats.delivered, stats.read, stats.played),
        (1, 1, 1, 0)
    );
}
