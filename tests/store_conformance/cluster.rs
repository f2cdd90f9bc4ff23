//! The leases several nodes share (PostgreSQL only): who may take a session, who must wait,
//! and that a node that lost a lease can tell.

use std::collections::HashSet;

use testkit::db::TestBackend;
use whatsapp_manager::domain::SessionStatus;
use whatsapp_manager::store::SessionRecord;
use whatsapp_manager::store::traits::{
    ClusterStore, JoinOutcome, Lease, LeaseHolder, NodeJoin, NodeState,
};

use crate::{Fixture, pair, session_id};

const LEASE_MS: i64 = 60_000;

async fn cluster() -> (Fixture, std::sync::Arc<dyn ClusterStore>) {
    let f = Fixture::open(TestBackend::Postgres).await;
    let c = f.db.cluster().expect("PostgreSQL has leases");
    (f, c)
}

async fn join(c: &dyn ClusterStore, node: &str, lease_ms: i64) {
    let url = format!("http://{node}.test:1");
    let outcome = c
        .join(&NodeJoin {
            node_id: node,
            advertise_url: &url,
            incarnation: &format!("{node}-1"),
            lease_ms,
            force: false,
        })
        .await
        .unwrap();
    assert_eq!(outcome, JoinOutcome::Joined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_is_held_and_a_renewal_by_an_old_process_finds_nothing() {
    let (_f, c) = cluster().await;
    join(c.as_ref(), "a", LEASE_MS).await;
    let second = NodeJoin {
        node_id: "a",
        advertise_url: "http://elsewhere.test:2",
        incarnation: "a-2",
        lease_ms: LEASE_MS,
        force: false,
    };
    assert_eq!(
        c.join(&second).await.unwrap(),
        JoinOutcome::Held {
            advertise_url: "http://a.test:1".into()
        }
    );
    assert!(c.renew("a", "a-1", LEASE_MS).await.unwrap().is_some());
    c.join(&NodeJoin {
        force: true,
        ..second
    })
    .await
    .unwrap();
    assert!(
        c.renew("a", "a-1", LEASE_MS).await.unwrap().is_none(),
        "the first process must learn it lost the id"
    );
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].advertise_url, "http://elsewhere.test:2");
    assert_eq!(nodes[0].state, NodeState::Alive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_a_live_node_cannot_be_taken_and_a_run_out_one_moves_with_a_new_epoch() {
    let (_f, c) = cluster().await;
    join(c.as_ref(), "a", LEASE_MS).await;
    join(c.as_ref(), "b", LEASE_MS).await;
    let p = pair(1, 1);
    let e1 = c.acquire(p, "a", LEASE_MS).await.unwrap().expect("free");
    assert_eq!(
        c.acquire(p, "a", LEASE_MS).await.unwrap(),
        Some(e1),
        "same holder"
    );
    assert_eq!(
        c.acquire(p, "b", LEASE_MS).await.unwrap(),
        None,
        "held by a"
    );
    assert!(matches!(
        c.holder(p).await.unwrap(),
        LeaseHolder::Node { node_id, .. } if node_id == "a"
    ));
    // a stops renewing: its lease runs out (1 ms lease).
    c.renew("a", "a-1", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(c.holder(p).await.unwrap(), LeaseHolder::Orphaned);
    let e2 = c.acquire(p, "b", LEASE_MS).await.unwrap().expect("run out");
    assert!(e2 > e1);
    assert!(!c.holds(Lease { pair: p, epoch: e1 }, "a").await.unwrap());
    assert!(c.holds(Lease { pair: p, epoch: e2 }, "b").await.unwrap());
    let renewed = c.renew("a", "a-1", LEASE_MS).await.unwrap().unwrap();
    assert!(renewed.held.is_empty(), "a renews nothing of b's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_share_the_orphans_without_overlap() {
    let (f, c) = cluster().await;
    let other = f.second_server().await.cluster().unwrap();
    for n in ["a", "b", "gone"] {
        join(c.as_ref(), n, LEASE_MS).await;
    }
    for u in 1..=40 {
        c.acquire(pair(u, 1), "gone", 1).await.unwrap().unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(c.census("a").await.unwrap().claimable, 40);
    let (x, y) = tokio::join!(c.claim("a", LEASE_MS, 25), other.claim("b", LEASE_MS, 25));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 40, "{} + {}", x.len(), y.len());
    let pairs: HashSet<_> = x.iter().chain(&y).map(|l| l.pair).collect();
    assert_eq!(pairs.len(), 40, "a session was claimed twice");
    let census = c.census("a").await.unwrap();
    assert_eq!(
        (census.total, census.mine, census.claimable),
        (40, x.len() as i64, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_goes_to_a_live_asker_only_and_a_leaving_node_releases_everything() {
    let (f, c) = cluster().await;
    join(c.as_ref(), "a", LEASE_MS).await;
    join(c.as_ref(), "b", LEASE_MS).await;
    let mut leases = Vec::new();
    for u in 1..=6 {
        let p = pair(u, 1);
        let mut rec = SessionRecord::new(session_id(p, 1_000), p, 1_000);
        rec.status = SessionStatus::Ready;
        f.db.save_session(&rec).await.unwrap();
        let epoch = c.acquire(p, "a", LEASE_MS).await.unwrap().unwrap();
        leases.push(Lease { pair: p, epoch });
    }
    // Share 3: b may ask for 3 of a's 6.
    assert_eq!(c.ask_handover("b", 3, 10).await.unwrap(), 3);
    let asked = c.renew("a", "a-1", LEASE_MS).await.unwrap().unwrap().asked;
    assert_eq!(asked.len(), 3);
    assert!(asked.iter().all(|(_, to)| to == "b"));
    assert_eq!(c.census("b").await.unwrap().incoming, 3);
    let (first, _) = asked[0];
    assert_eq!(
        c.hand_over(first, "a", "b", LEASE_MS)
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert!(!c.holds(first, "a").await.unwrap(), "the epoch moved on");
    // b leaves: the asks it made are dropped, its session is released.
    assert_eq!(c.release_all("b").await.unwrap(), 1);
    let (second, _) = asked[1];
    assert_eq!(c.hand_over(second, "a", "b", LEASE_MS).await.unwrap(), None);
    let renewal = c.renew("a", "a-1", LEASE_MS).await.unwrap().unwrap();
    assert!(renewal.asked.is_empty(), "{:?}", renewal.asked);
    assert_eq!(renewal.held.len(), 5);
    assert_eq!(c.census("a").await.unwrap().claimable, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_gives_leases_to_sessions_that_should_run_only() {
    let (f, c) = cluster().await;
    for (u, status) in [
        (1, SessionStatus::Ready),
        (2, SessionStatus::Disconnected),
        (3, SessionStatus::LoggedOut),
        (4, SessionStatus::Error),
    ] {
        let p = pair(u, 1);
        let mut rec = SessionRecord::new(session_id(p, 1_000), p, 1_000);
        rec.status = status;
        f.db.save_session(&rec).await.unwrap();
    }
    assert_eq!(c.seed_leases().await.unwrap(), 2);
    assert_eq!(c.seed_leases().await.unwrap(), 0, "once");
    assert_eq!(c.holder(pair(1, 1)).await.unwrap(), LeaseHolder::Orphaned);
    assert_eq!(c.holder(pair(3, 1)).await.unwrap(), LeaseHolder::Nobody);
}
