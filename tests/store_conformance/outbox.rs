//! The outbox: messages queued in order, claimed oldest first, sent under the id they were
//! queued with, and counted for the cap.

use whatsapp_manager::store::{
    Direction, JobKind, JobSkips, MediaFields, MessageCounts, MessageFilter, MessageKind,
    MessageRecord, MessageStatus, NewJob, NewMessage, RetryOutcome,
};

use crate::{Db, Fixture, pair};

fn text(recipient: &str, wa_id: &str) -> NewMessage {
    NewMessage {
        contact_id: None,
        recipient: recipient.into(),
        recipient_name: None,
        kind: MessageKind::Text,
        body: Some(format!("hello {recipient}")),
        image_url: None,
        template_id: None,
        wa_message_id: wa_id.into(),
        min_gap_ms: 0,
        media: Default::default(),
    }
}

fn image(recipient: &str, wa_id: &str) -> NewMessage {
    NewMessage {
        kind: MessageKind::Image,
        body: None,
        image_url: Some("https://example.com/a.png".into()),
        ..text(recipient, wa_id)
    }
}

async fn queue(
    db: &Db,
    p: whatsapp_manager::domain::Pair,
    msgs: &[NewMessage],
    now: i64,
) -> Vec<MessageRecord> {
    db.enqueue(p, None, msgs, now).await.unwrap().1
}

pub async fn enqueue_keeps_the_order_and_makes_the_job(f: Fixture) {
    let p = pair(1, 2);
    let msgs: Vec<NewMessage> = (0..2_500)
        .map(|i| NewMessage {
            contact_id: Some(i),
            recipient_name: Some(format!("n{i}")),
            template_id: Some("t1".into()),
            min_gap_ms: 1_500,
            ..text(&format!("+9665{i:08}"), &format!("WA{i}"))
        })
        .collect();
    let (job, queued) =
        f.db.enqueue(p, Some(NewJob::new(JobKind::Group, Some(42))), &msgs, 100)
            .await
            .unwrap();
    let job = job.expect("a job");
    assert_eq!(queued.len(), msgs.len());
    assert!(queued.windows(2).all(|w| w[0].id < w[1].id), "ids in order");
    for (m, rec) in msgs.iter().zip(&queued) {
        assert_eq!(rec.recipient, m.recipient);
        assert_eq!(rec.wa_message_id, m.wa_message_id);
        assert_eq!(rec.contact_id, m.contact_id);
        assert_eq!(rec.recipient_name, m.recipient_name);
        assert_eq!(rec.body, m.body);
        assert_eq!(rec.template_id, m.template_id);
        assert_eq!(rec.min_gap_ms, 1_500);
        assert_eq!(rec.job_id, Some(job));
        assert_eq!(rec.pair, p);
        assert_eq!(rec.status, MessageStatus::Queued);
        assert_eq!(
            (rec.attempts, rec.created_at, rec.updated_at),
            (0, 100, 100)
        );
        assert_eq!(
            (rec.sent_at, rec.failed_at, rec.error.clone()),
            (None, None, None)
        );
    }
    assert_eq!(
        f.db.message(p, queued[7].id).await.unwrap().as_ref(),
        Some(&queued[7])
    );
    let j = f.db.job(p, job).await.unwrap().unwrap();
    assert_eq!(
        (j.kind, j.group_id, j.total, j.created_at),
        (JobKind::Group, Some(42), 2_500, 100)
    );
    assert_eq!(j.counts.queued, 2_500);
    assert_eq!(f.db.job(pair(1, 3), job).await.unwrap(), None);
    // Without a job: none made.
    let (none, one) =
        f.db.enqueue(p, None, &[image("+201000000001", "WAX")], 101)
            .await
            .unwrap();
    assert_eq!(none, None);
    assert_eq!(one[0].kind, MessageKind::Image);
    assert_eq!(one[0].job_id, None);
    assert!(one[0].id > queued.last().unwrap().id);
    let bulk =
        f.db.enqueue(
            p,
            Some(NewJob::new(JobKind::Bulk, None)),
            &[text("+1", "WAY")],
            102,
        )
        .await
        .unwrap()
        .0
        .unwrap();
    let j = f.db.job(p, bulk).await.unwrap().unwrap();
    assert_eq!((j.kind, j.group_id, j.total), (JobKind::Bulk, None, 1));
}

pub async fn the_oldest_queued_or_sending_message_is_claimed_first(f: Fixture) {
    let p = pair(1, 2);
    assert_eq!(f.db.next_pending(p).await.unwrap(), None);
    let q = queue(
        &f.db,
        p,
        &[text("+1", "A"), text("+2", "B"), text("+3", "C")],
        1,
    )
    .await;
    queue(&f.db, pair(1, 3), &[text("+9", "Z")], 0).await;
    assert_eq!(f.db.next_pending(p).await.unwrap().unwrap().id, q[0].id);
    // Caught mid-send by a stop: still the head.
    f.db.mark_sending(q[0].id, 2).await.unwrap();
    let head = f.db.next_pending(p).await.unwrap().unwrap();
    assert_eq!((head.id, head.status), (q[0].id, MessageStatus::Sending));
    f.db.mark_sent(q[0].id, "A", 3).await.unwrap();
    f.db.mark_failed(q[1].id, "no", 3).await.unwrap();
    assert_eq!(f.db.next_pending(p).await.unwrap().unwrap().id, q[2].id);
    f.db.mark_sent(q[2].id, "C", 4).await.unwrap();
    assert_eq!(f.db.next_pending(p).await.unwrap(), None);
    // A failed message retried goes back into line by its id.
    f.db.retry_message(p, q[1].id, 5).await.unwrap();
    assert_eq!(f.db.next_pending(p).await.unwrap().unwrap().id, q[1].id);
}

pub async fn marking_counts_attempts_and_a_resend_keeps_the_whatsapp_id(f: Fixture) {
    let p = pair(1, 2);
    let m = queue(&f.db, p, &[text("+1", "3EB0AAAA")], 1)
        .await
        .remove(0);
    f.db.mark_sending(m.id, 2).await.unwrap();
    // Never reached WhatsApp: back in the queue, the attempt counted.
    f.db.requeue(m.id, 3).await.unwrap();
    let back = f.db.message(p, m.id).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.attempts, back.updated_at),
        (MessageStatus::Queued, 1, 3)
    );
    assert_eq!(back.wa_message_id, "3EB0AAAA", "a resend uses the same id");
    f.db.mark_sending(m.id, 4).await.unwrap();
    f.db.mark_sent(m.id, "3EB0AAAA", 5).await.unwrap();
    let sent = f.db.message(p, m.id).await.unwrap().unwrap();
    assert_eq!(
        (sent.status, sent.attempts, sent.sent_at, sent.updated_at),
        (MessageStatus::Sent, 2, Some(5), 5)
    );
    assert_eq!(sent.wa_message_id, "3EB0AAAA");
    assert_eq!(sent.error, None);

    let n = queue(&f.db, p, &[text("+2", "3EB0BBBB")], 6)
        .await
        .remove(0);
    f.db.mark_sending(n.id, 7).await.unwrap();
    f.db.mark_failed(n.id, "not on WhatsApp", 8).await.unwrap();
    let failed = f.db.message(p, n.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.failed_at, failed.error.as_deref()),
        (MessageStatus::Failed, Some(8), Some("not on WhatsApp"))
    );
    assert_eq!(failed.sent_at, None);
}

pub async fn retry_queues_only_a_failed_message_of_the_pair(f: Fixture) {
    let p = pair(1, 2);
    let q = queue(&f.db, p, &[text("+1", "A"), text("+2", "B")], 1).await;
    f.db.mark_failed(q[0].id, "boom", 2).await.unwrap();
    let RetryOutcome::Queued(m) = f.db.retry_message(p, q[0].id, 3).await.unwrap() else {
        panic!("not queued");
    };
    assert_eq!(m.id, q[0].id);
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!((m.error, m.failed_at, m.updated_at), (None, None, 3));
    assert_eq!(m.wa_message_id, "A");
    assert_eq!(
        f.db.retry_message(p, q[0].id, 4).await.unwrap(),
        RetryOutcome::NotFailed(MessageStatus::Queued)
    );
    f.db.mark_sent(q[1].id, "B", 4).await.unwrap();
    assert_eq!(
        f.db.retry_message(p, q[1].id, 5).await.unwrap(),
        RetryOutcome::NotFailed(MessageStatus::Sent)
    );
    f.db.mark_failed(q[0].id, "again", 6).await.unwrap();
    assert_eq!(
        f.db.retry_message(pair(1, 3), q[0].id, 7).await.unwrap(),
        RetryOutcome::NotFound,
        "another pair's message"
    );
    assert_eq!(
        f.db.retry_message(p, 999_999, 7).await.unwrap(),
        RetryOutcome::NotFound
    );
    assert_eq!(f.db.message(pair(1, 3), q[0].id).await.unwrap(), None);
}

pub async fn the_cap_window_counts_sent_messages_and_knows_the_oldest(f: Fixture) {
    let p = pair(1, 2);
    assert_eq!(f.db.sent_since(p, 0).await.unwrap(), (0, None));
    assert_eq!(f.db.last_sent_at(p).await.unwrap(), None);
    let q = queue(
        &f.db,
        p,
        &[
            text("+1", "A"),
            text("+2", "B"),
            text("+3", "C"),
            text("+4", "D"),
        ],
        1,
    )
    .await;
    f.db.mark_sent(q[0].id, "A", 1_000).await.unwrap();
    f.db.mark_sent(q[1].id, "B", 2_000).await.unwrap();
    f.db.mark_sent(q[2].id, "C", 3_000).await.unwrap();
    f.db.mark_failed(q[3].id, "x", 4_000).await.unwrap();
    let other = queue(&f.db, pair(2, 2), &[text("+5", "E")], 1).await;
    f.db.mark_sent(other[0].id, "E", 5_000).await.unwrap();
    assert_eq!(f.db.sent_since(p, 0).await.unwrap(), (3, Some(1_000)));
    assert_eq!(f.db.sent_since(p, 2_000).await.unwrap(), (2, Some(2_000)));
    assert_eq!(f.db.sent_since(p, 3_001).await.unwrap(), (0, None));
    assert_eq!(f.db.last_sent_at(p).await.unwrap(), Some(3_000));
    assert_eq!(f.db.last_sent_at(pair(2, 2)).await.unwrap(), Some(5_000));
}

pub async fn message_filters_narrow_and_a_foreign_group_matches_nothing(f: Fixture) {
    let p = pair(1, 2);
    let (job, grouped) =
        f.db.enqueue(
            p,
            Some(NewJob::new(JobKind::Group, Some(7))),
            &[text("+966500000001", "A"), image("+966500000002", "B")],
            100,
        )
        .await
        .unwrap();
    let loose = queue(&f.db, p, &[text("+201000000003", "C")], 200).await;
    f.db.mark_sent(grouped[0].id, "A", 300).await.unwrap();
    // Another tenant's group send to a group of the same id.
    f.db.enqueue(
        pair(5, 5),
        Some(NewJob::new(JobKind::Group, Some(7))),
        &[text("+1", "Z")],
        100,
    )
    .await
    .unwrap();
    let ids = |list: Vec<MessageRecord>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let list = |filter: MessageFilter| {
        let db = f.db.clone();
        async move {
            let (l, total) = db.list_messages(p, &filter, 1, 100).await.unwrap();
            assert_eq!(total, l.len() as i64);
            ids(l)
        }
    };
    // Newest first.
    assert_eq!(
        list(MessageFilter::default()).await,
        vec![loose[0].id, grouped[1].id, grouped[0].id]
    );
    let by = |f: fn(&mut MessageFilter)| {
        let mut filter = MessageFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        list(by(|f| f.status = Some(MessageStatus::Sent))).await,
        vec![grouped[0].id]
    );
    assert_eq!(
        list(by(|f| f.kind = Some(MessageKind::Image))).await,
        vec![grouped[1].id]
    );
    assert_eq!(list(by(|f| f.from_ms = Some(200))).await, vec![loose[0].id]);
    assert_eq!(
        list(by(|f| f.to_ms = Some(200))).await,
        vec![grouped[1].id, grouped[0].id]
    );
    assert_eq!(
        list(by(|f| f.recipient = Some("2010".into()))).await,
        vec![loose[0].id]
    );
    assert!(
        list(by(|f| f.recipient = Some("%".into())))
            .await
            .is_empty()
    );
    let of_job = MessageFilter {
        job_id: job,
        ..Default::default()
    };
    assert_eq!(list(of_job).await, vec![grouped[1].id, grouped[0].id]);
    assert_eq!(
        list(by(|f| f.group_id = Some(7))).await,
        vec![grouped[1].id, grouped[0].id]
    );
    assert!(list(by(|f| f.group_id = Some(8))).await.is_empty());
    // The other tenant's listing under the same group id holds only its own message.
    let (theirs, _) =
        f.db.list_messages(pair(5, 5), &by(|f| f.group_id = Some(7)), 1, 100)
            .await
            .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].wa_message_id, "Z");
    // Paging, and counts under the same filters.
    let (page2, total) =
        f.db.list_messages(p, &MessageFilter::default(), 2, 2)
            .await
            .unwrap();
    assert_eq!((ids(page2), total), (vec![grouped[0].id], 3));
    let counts =
        f.db.message_counts(p, &MessageFilter::default())
            .await
            .unwrap();
    assert_eq!(
        counts,
        MessageCounts {
            queued: 2,
            sending: 0,
            sent: 1,
            delivered: 0,
            read: 0,
            played: 0,
            failed: 0,
            text: 2,
            image: 1,
            ..MessageCounts::default()
        }
    );
    assert_eq!(counts.total(), 3);
    let counts =
        f.db.message_counts(p, &by(|f| f.kind = Some(MessageKind::Text)))
            .await
            .unwrap();
    assert_eq!((counts.queued, counts.sent, counts.image), (1, 1, 0));
    assert_eq!(
        f.db.message_counts(pair(9, 9), &MessageFilter::default())
            .await
            .unwrap(),
        MessageCounts::default()
    );
}

pub async fn jobs_count_their_messages_by_status(f: Fixture) {
    let p = pair(1, 2);
    let (job, q) =
        f.db.enqueue(
            p,
            Some(NewJob::new(JobKind::Bulk, None)),
            &[
                text("+1", "A"),
                text("+2", "B"),
                image("+3", "C"),
                text("+4", "D"),
            ],
            1,
        )
        .await
        .unwrap();
    let job = job.unwrap();
    queue(&f.db, p, &[text("+5", "E")], 1).await;
    f.db.mark_sent(q[0].id, "A", 2).await.unwrap();
    f.db.mark_failed(q[1].id, "x", 2).await.unwrap();
    f.db.mark_sending(q[2].id, 2).await.unwrap();
    let j = f.db.job(p, job).await.unwrap().unwrap();
    assert_eq!(j.id, job);
    assert_eq!(j.pair, p);
    assert_eq!(
        j.counts,
        MessageCounts {
            queued: 1,
            sending: 1,
            sent: 1,
            delivered: 0,
            read: 0,
            played: 0,
            failed: 1,
            text: 3,
            image: 1,
            ..MessageCounts::default()
        }
    );
    assert_eq!(f.db.job(p, 999_999).await.unwrap(), None);
}

pub async fn pairs_with_pending_lists_each_pair_once(f: Fixture) {
    assert!(f.db.pairs_with_pending().await.unwrap().is_empty());
    let a = queue(&f.db, pair(1, 1), &[text("+1", "A"), text("+2", "B")], 1).await;
    let b = queue(&f.db, pair(1, 2), &[text("+1", "C")], 1).await;
    let c = queue(&f.db, pair(2, 1), &[text("+1", "D")], 1).await;
    f.db.mark_sending(b[0].id, 2).await.unwrap();
    f.db.mark_sent(c[0].id, "D", 2).await.unwrap();
    let mut pending = f.db.pairs_with_pending().await.unwrap();
    pending.sort_by_key(|p| (p.user_id.get(), p.place_id.get()));
    assert_eq!(pending, vec![pair(1, 1), pair(1, 2)]);
    for m in &a {
        f.db.mark_failed(m.id, "x", 3).await.unwrap();
    }
    assert_eq!(f.db.pairs_with_pending().await.unwrap(), vec![pair(1, 2)]);
}

pub async fn media_of_every_kind_is_kept_with_its_file_details(f: Fixture) {
    let p = pair(1, 2);
    let kinds = [
        (MessageKind::Document, Some("invoice.pdf"), false),
        (MessageKind::Video, None, false),
        (MessageKind::Audio, None, true),
    ];
    let msgs: Vec<NewMessage> = kinds
        .iter()
        .enumerate()
        .map(|(i, (kind, name, voice))| NewMessage {
            kind: *kind,
            body: None,
            media: MediaFields {
                url: (i == 0).then(|| "https://example.com/invoice.pdf".into()),
                media_id: (i > 0).then(|| format!("upload{i}")),
                mime: Some(format!("application/x-{i}")),
                size: Some(1_000 + i as i64),
                file_name: name.map(str::to_owned),
                voice_note: *voice,
            },
            ..text(&format!("+96650000000{i}"), &format!("WAM{i}"))
        })
        .collect();
    let queued = queue(&f.db, p, &msgs, 5).await;
    for (m, rec) in msgs.iter().zip(&queued) {
        assert_eq!(rec.kind, m.kind);
        assert_eq!(rec.media, m.media);
        assert_eq!(rec.direction, Direction::Out);
        assert_eq!(
            (rec.delivered_at, rec.read_at, rec.played_at),
            (None, None, None)
        );
        let again = f.db.message(p, rec.id).await.unwrap().expect("stored");
        assert_eq!(&again, rec);
    }
}

pub async fn a_download_fills_in_the_file_and_kinds_are_counted(f: Fixture) {
    let p = pair(1, 2);
    let doc = NewMessage {
        kind: MessageKind::Document,
        body: None,
        media: MediaFields {
            url: Some("https://example.com/x".into()),
            file_name: Some("given.pdf".into()),
            ..MediaFields::default()
        },
        ..text("+1", "D1")
    };
    let video = NewMessage {
        kind: MessageKind::Video,
        ..doc.clone()
    };
    let audio = NewMessage {
        kind: MessageKind::Audio,
        ..doc.clone()
    };
    let q = queue(&f.db, p, &[doc, video, audio, text("+2", "T")], 1).await;
    f.db.set_message_media(q[0].id, "application/pdf", 1234, None)
        .await
        .unwrap();
    f.db.set_message_media(q[1].id, "video/mp4", 99, Some("clip.mp4"))
        .await
        .unwrap();
    let d = f.db.message(p, q[0].id).await.unwrap().unwrap();
    assert_eq!(d.media.mime.as_deref(), Some("application/pdf"));
    assert_eq!(d.media.size, Some(1234));
    assert_eq!(
        d.media.file_name.as_deref(),
        Some("given.pdf"),
        "a download without a name keeps the one the message had"
    );
    let v = f.db.message(p, q[1].id).await.unwrap().unwrap();
    assert_eq!(v.media.file_name.as_deref(), Some("clip.mp4"));
    let counts =
        f.db.message_counts(p, &MessageFilter::default())
            .await
            .unwrap();
    assert_eq!(
        (
            counts.text,
            counts.image,
            counts.document,
            counts.video,
            counts.audio
        ),
        (1, 0, 1, 1, 1)
    );
    let docs =
        f.db.message_counts(
            p,
            &MessageFilter {
                kind: Some(MessageKind::Document),
                ..MessageFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((docs.queued, docs.document, docs.video), (1, 1, 0));
}

pub async fn a_job_is_made_with_what_its_send_left_out(f: Fixture) {
    let p = pair(1, 2);
    let skipped = JobSkips {
        opted_out: 3,
        not_on_whatsapp: 2,
    };
    let (job, _) =
        f.db.enqueue(
            p,
            Some(NewJob {
                skipped,
                ..NewJob::new(JobKind::Bulk, None)
            }),
            &[text("+1", "A")],
            1,
        )
        .await
        .unwrap();
    let j = f.db.job(p, job.unwrap()).await.unwrap().unwrap();
    assert_eq!(j.skipped, skipped);
    assert_eq!(j.total, 1, "skips are not messages");
    let (plain, _) =
        f.db.enqueue(
            p,
            Some(NewJob::new(JobKind::Group, Some(7))),
            &[text("+2", "B")],
            2,
        )
        .await
        .unwrap();
    let j = f.db.job(p, plain.unwrap()).await.unwrap().unwrap();
    assert_eq!(j.skipped, JobSkips::default());
    assert_eq!(j.group_id, Some(7));
}
