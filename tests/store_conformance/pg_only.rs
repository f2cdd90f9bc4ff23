//! Where PostgreSQL needs more than the shared suite reaches: SQLite's single writer puts
//! every write in a line, PostgreSQL runs them side by side, so each promise that came for
//! free is tested here under concurrency from several pools; and where a statement over
//! arrays must leave exactly what SQLite's row-by-row upsert leaves, the two backends are
//! run side by side and compared.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use sqlx::Connection;
use testkit::db::TestBackend;
use whatsapp_manager::store::{
    CachedContact, ContactPatch, ContactQuery, DatabaseOptions, GroupChange, ImportContact,
    JobKind, MessageKind, MessageStatus, NewJob, NewMessage, RetryOutcome, WebhookRecord,
};

use crate::groups::{contact, import};
use crate::{Db, Fixture, pair, session_id, user};

async fn postgres() -> Fixture {
    Fixture::open(TestBackend::Postgres).await
}

/// Every contact of the pair in id order, as the API shows it (ids themselves differ by
/// backend: PostgreSQL's identity skips the values an upsert's conflicts consumed).
async fn contacts(db: &Db, p: whatsapp_manager::domain::Pair) -> Vec<String> {
    let q = ContactQuery {
        page: 1,
        limit: 1_000,
        ..Default::default()
    };
    let (mut list, _) = db.search_contacts(p, None, &q, 0).await.unwrap();
    list.sort_by_key(|c| c.id);
    list.into_iter()
        .map(|c| {
            format!(
                "{} {:?} {:?} {} {:?}",
                c.phone_number, c.name, c.push_name, c.is_business, c.last_message_at
            )
        })
        .collect()
}

fn named(phone: &str, at: Option<i64>, name: Option<&str>, push: Option<&str>) -> ImportContact {
    ImportContact {
        push_name: push.map(str::to_string),
        ..contact(phone, at, name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_naming_a_number_twice_ends_as_sqlite_leaves_it() {
    let batches = [
        vec![
            named("+966500000001", Some(100), Some("Ali"), None),
            named("+966500000002", None, None, Some("Sara")),
            named("+966500000001", Some(50), None, Some("Ali P")),
            ImportContact {
                is_business: true,
                ..named("+966500000001", None, Some("Ali B"), None)
            },
        ],
        // Against rows that exist, with the repeats before and after a new number.
        vec![
            named("+966500000002", Some(10), Some("S"), None),
            named("+966500000003", Some(5), None, None),
            named("+966500000002", Some(7), None, Some("Sara 2")),
            named("+966500000001", None, None, None),
        ],
    ];
    let mut seen = Vec::new();
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let f = Fixture::open(backend).await;
        let p = pair(1, 2);
        for batch in &batches {
            import(&f.db, p, batch).await;
        }
        seen.push(contacts(&f.db, p).await);
    }
    assert_eq!(seen[0].len(), 3, "{:?}", seen[0]);
    assert_eq!(seen[1], seen[0], "postgres against sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_facts_and_mappings_repeated_in_one_write_end_as_sqlite_leaves_them() {
    let fact =
        |jid: &str, name: Option<&str>, at: Option<i64>, business: Option<bool>| CachedContact {
            jid: jid.into(),
            name: name.map(str::to_string),
            last_message_at: at,
            is_business: business,
            ..Default::default()
        };
    let lid = "111122223333444@lid";
    let facts = [
        fact("966501@s.whatsapp.net", Some("Ali"), Some(10), None),
        fact(lid, None, Some(3), Some(true)),
        fact("966501@s.whatsapp.net", Some(" "), Some(5), Some(true)),
        CachedContact {
            push_name: Some("Ali P".into()),
            ..fact("966501@s.whatsapp.net", None, Some(20), None)
        },
    ];
    let mappings = [
        (lid.to_string(), "966509@s.whatsapp.net".to_string()),
        (lid.to_string(), "966501@s.whatsapp.net".to_string()),
    ];
    let mut seen = Vec::new();
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let f = Fixture::open(backend).await;
        let id = session_id(pair(1, 2), 1);
        f.db.cache_contacts(&id, &facts, 1).await.unwrap();
        f.db.cache_contacts(&id, &facts[..2], 2).await.unwrap();
        f.db.cache_lid_mappings(&id, &mappings).await.unwrap();
        seen.push(format!("{:?}", f.db.cached_contacts(&id).await.unwrap()));
    }
    assert_eq!(seen[1], seen[0], "postgres against sqlite");
    assert!(seen[0].contains("Ali P"), "{}", seen[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_with_no_messages_is_kept_on_both() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let f = Fixture::open(backend).await;
        let p = pair(1, 2);
        let (job, queued) =
            f.db.enqueue(p, Some(NewJob::new(JobKind::Bulk, None)), &[], 1)
                .await
                .unwrap();
        assert!(queued.is_empty());
        let job = f.db.job(p, job.unwrap()).await.unwrap();
        assert_eq!(job.map(|j| j.total), Some(0), "{backend:?}");
    }
}

/// A name WhatsApp sent with a NUL in it: SQLite keeps it, PostgreSQL's text cannot hold
/// it; the batch must still be saved, the name without the NUL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_name_does_not_fail_the_fetch_batch() {
    let f = postgres().await;
    let p = pair(1, 2);
    import(
        &f.db,
        p,
        &[
            named("+966500000001", Some(1), Some("A\0li"), Some("\0")),
            named("+966500000002", Some(2), Some("Sara"), None),
        ],
    )
    .await;
    let got = contacts(&f.db, p).await;
    assert_eq!(
        got,
        vec![
            r#"+966500000001 Some("Ali") Some("") false Some(1)"#,
            r#"+966500000002 Some("Sara") None false Some(2)"#,
        ]
    );
}

/// Two servers on one database, each with many writers of one tenant: a listener that
/// polls with the last id it read misses nothing, and the webhook queue holds the events
/// in id order. Without the per-tenant lock an id can commit after a higher one was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_tenant_commit_in_id_order_across_servers() {
    let f = postgres().await;
    let other = f.second_server().await;
    f.db.set_webhook(&WebhookRecord {
        user_id: user(1),
        url: "https://example.com/hook".into(),
        secret: "s".into(),
        events: vec!["k".into()],
        created_at: 1,
        updated_at: 1,
    })
    .await
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let db = f.db.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (mut seen, mut after) = (Vec::new(), 0);
            loop {
                let last_round = done.load(Ordering::SeqCst);
                for e in db.events_after(user(1), None, after, 1_000).await.unwrap() {
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
    for i in 0..80i64 {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        writers.spawn(async move {
            let payload = |id: i64| format!(r#"{{"id":{id}}}"#);
            // Another tenant's events in between: they must not hold this one up, nor break
            // its order.
            let p = if i % 5 == 0 {
                pair(2, 1)
            } else {
                pair(1, 1 + i % 3)
            };
            let (e, _) = db.record_event(p, None, "k", &payload, i).await.unwrap();
            (p.user_id, e.id)
        });
    }
    let mut written = BTreeSet::new();
    while let Some(w) = writers.join_next().await {
        let (u, id) = w.unwrap();
        if u == user(1) {
            written.insert(id);
        }
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), written);
    let (list, total) = f.db.deliveries(user(1), None, 1, 100).await.unwrap();
    assert_eq!(total as usize, written.len());
    let order: Vec<i64> = list.iter().rev().map(|d| d.event.id).collect();
    assert_eq!(order, written.into_iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_patches_of_one_contact_lose_nothing() {
    let f = postgres().await;
    let other = f.second_server().await;
    let p = pair(1, 2);
    import(&f.db, p, &[contact("+966500000001", Some(1), Some("Ali"))]).await;
    let id = contacts_ids(&f.db, p).await[0];
    let mut patches = tokio::task::JoinSet::new();
    for i in 0..24 {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        patches.spawn(async move {
            let mut fields = serde_json::Map::new();
            fields.insert(format!("k{i}"), json!(i));
            let patch = ContactPatch {
                opted_out: None,
                tags: None,
                custom_fields: Some(fields),
            };
            db.update_contact(p, id, &patch, i).await.unwrap().unwrap();
        });
    }
    while let Some(done) = patches.join_next().await {
        done.unwrap();
    }
    let c = f.db.contact(p, id).await.unwrap().unwrap();
    assert_eq!(c.custom_fields.len(), 24, "{:?}", c.custom_fields);
}

async fn contacts_ids(db: &Db, p: whatsapp_manager::domain::Pair) -> Vec<i64> {
    let q = ContactQuery {
        page: 1,
        limit: 1_000,
        ..Default::default()
    };
    let (list, _) = db.search_contacts(p, None, &q, 0).await.unwrap();
    list.into_iter().map(|c| c.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_queue_a_failed_message_once() {
    let f = postgres().await;
    let other = f.second_server().await;
    let p = pair(1, 2);
    let message = NewMessage {
        contact_id: None,
        recipient: "+966500000001".into(),
        recipient_name: None,
        kind: MessageKind::Text,
        body: Some("hello".into()),
        image_url: None,
        template_id: None,
        wa_message_id: "3EB0".into(),
        min_gap_ms: 0,
        media: Default::default(),
    };
    let (_, queued) = f.db.enqueue(p, None, &[message], 1).await.unwrap();
    let id = queued[0].id;
    f.db.mark_failed(id, "boom", 2).await.unwrap();
    let mut retries = tokio::task::JoinSet::new();
    for i in 0..20 {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        retries.spawn(async move { db.retry_message(p, id, 3).await.unwrap() });
    }
    let (mut requeued, mut refused) = (0, 0);
    while let Some(out) = retries.join_next().await {
        match out.unwrap() {
            RetryOutcome::Queued(m) => {
                assert_eq!((m.status, m.error), (MessageStatus::Queued, None));
                requeued += 1;
            }
            RetryOutcome::NotFailed(MessageStatus::Queued) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((requeued, refused), (1, 19));
}

/// Replacing a group's members is whole: racing replacements leave one of the lists, never
/// a mix, and a delete racing them leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_member_replacements_leave_one_whole_list() {
    let f = postgres().await;
    let other = f.second_server().await;
    let p = pair(1, 2);
    let batch: Vec<_> = (0..40)
        .map(|i| contact(&format!("+9665000001{i:02}"), Some(i), None))
        .collect();
    import(&f.db, p, &batch).await;
    let ids = contacts_ids(&f.db, p).await;
    let GroupChange::Done(group) =
        f.db.create_manual_group(p, "G", None, &ids[..2], 1)
            .await
            .unwrap()
    else {
        panic!("no group");
    };
    let lists: Vec<Vec<i64>> = ids
        .chunks(4)
        .map(|c| {
            let mut list = c.to_vec();
            list.sort_unstable();
            list
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, list) in lists.iter().cloned().enumerate() {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move { db.replace_group_members(p, group, &list, 2).await.unwrap() });
    }
    while let Some(out) = tasks.join_next().await {
        assert_eq!(out.unwrap(), GroupChange::Done(group));
    }
    let g = f.db.group(p, group, 0).await.unwrap().unwrap();
    assert_eq!(g.contact_count, 4, "a mix of several lists");
    let (members, _) =
        f.db.search_contacts(
            p,
            Some(&g),
            &ContactQuery {
                page: 1,
                limit: 100,
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    let mut members: Vec<i64> = members.into_iter().map(|c| c.id).collect();
    members.sort_unstable();
    assert!(lists.contains(&members), "{members:?}");

    let (a, b) = tokio::join!(
        f.db.delete_manual_group(p, group),
        other.replace_group_members(p, group, &ids[..3], 3)
    );
    assert_eq!(a.unwrap(), GroupChange::Done(group));
    assert!(
        matches!(b.unwrap(), GroupChange::Done(_) | GroupChange::NotFound),
        "a replacement racing the delete either went first or found nothing"
    );
    assert_eq!(f.db.group(p, group, 0).await.unwrap(), None);
}

/// Servers started together on an empty database: sqlx's migration lock lets one create
/// the tables while the others wait, and every one of them starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_starting_together_on_an_empty_database_all_start() {
    let database = TestBackend::Postgres.database().await;
    let options = DatabaseOptions {
        max_connections: 2,
        ..DatabaseOptions::default()
    };
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, options) = (database.url.clone(), options.clone());
        starts.spawn(async move { whatsapp_manager::store::open(&url, &options).await });
    }
    while let Some(started) = starts.join_next().await {
        let db = started.unwrap().expect("every server starts");
        assert_eq!(db.kind(), "postgres");
        db.ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_names_itself_to_the_server() {
    let f = postgres().await;
    f.db.ping().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&f.database.url).await.unwrap();
    let ours: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'whatsapp-manager'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ours >= 1, "no connection of ours in pg_stat_activity");
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_named_without_its_password() {
    let url = "postgres://wam:sekrit-pw@localhost/wam?host=/nonexistent-wam-socket-dir";
    let Err(e) = whatsapp_manager::store::open(url, &DatabaseOptions::default()).await else {
        panic!("opened a database that is not there");
    };
    let text = format!("{e:#} {e:?}");
    assert!(!text.contains("sekrit-pw"), "{text}");
    assert!(
        text.contains("postgres://wam:*****@localhost/wam"),
        "{text}"
    );
}

/// A connection is replaced only when its node lives: a node whose heartbeat ran out is
/// dead, and its connection lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_connection_of_a_live_node_is_replaced_and_of_a_dead_one_lost() {
    use whatsapp_manager::store::traits::{JoinOutcome, NodeJoin, SimCloseReason};
    let f = postgres().await;
    let cluster = f.db.cluster().expect("PostgreSQL has a cluster store");
    for (node, lease_ms) in [("alive", 600_000), ("dying", 1)] {
        let join = NodeJoin {
            node_id: node,
            advertise_url: "http://127.0.0.1:1",
            incarnation: node,
            lease_ms,
            force: false,
        };
        assert_eq!(cluster.join(&join).await.unwrap(), JoinOutcome::Joined);
    }
    let p = pair(1, 1);
    let s = session_id(p, 1);
    let on_alive = f.db.open_sim_connection(p, &s, "alive", 1).await.unwrap();
    let mine = f.db.open_sim_connection(p, &s, "me", 2).await.unwrap();
    assert_eq!(
        mine.closed,
        [(on_alive.id, "alive".to_string(), SimCloseReason::Replaced)]
    );
    let q = pair(1, 2);
    let t = session_id(q, 1);
    let on_dying = f.db.open_sim_connection(q, &t, "dying", 1).await.unwrap();
    // Its 1 ms lease is over by the next statement, but the clock is the database's.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mine = f.db.open_sim_connection(q, &t, "me", 2).await.unwrap();
    assert_eq!(
        mine.closed,
        [(
            on_dying.id,
            "dying".to_string(),
            SimCloseReason::ConnectionLost
        )]
    );
}
