//! The client's timing and linking on paused time, against an in-memory store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::clock::SystemClock;
use crate::domain::{Pair, PlaceId, SessionId, UserId};
use crate::engine::{ClientStart, Engine, EngineClient, EngineError, EngineEvent};
use crate::store::StoreResult;
use crate::store::traits::{SimCloseReason, SimConnection, SimOpened, SimStore};

fn pair() -> Pair {
    Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2))
}

/// The simulated phones' store in memory: these tests run on paused time, where a real
/// pool's acquire timeout would fire at once. The store itself has its own suite.
#[derive(Default)]
pub(super) struct MemoryStore {
    devices: Mutex<HashMap<SessionId, String>>,
    books: Mutex<HashMap<Pair, Vec<u8>>>,
    network: Mutex<Option<Vec<u8>>>,
    sent: Mutex<Vec<(Pair, String)>>,
    connections: Mutex<Vec<SimConnection>>,
}

#[async_trait]
impl SimStore for MemoryStore {
    async fn sim_device(&self, s: &SessionId) -> StoreResult<Option<String>> {
        Ok(lock(&self.devices).get(s).cloned())
    }
    async fn save_sim_device(&self, s: &SessionId, d: &str, _: i64) -> StoreResult<()> {
        lock(&self.devices).insert(s.clone(), d.to_owned());
        Ok(())
    }
    async fn forget_sim_device(&self, s: &SessionId) -> StoreResult<bool> {
        Ok(lock(&self.devices).remove(s).is_some())
    }
    async fn sim_phonebook(&self, pair: Pair) -> StoreResult<Option<Vec<u8>>> {
        Ok(lock(&self.books).get(&pair).cloned())
    }
    async fn set_sim_phonebook(&self, pair: Pair, book: &[u8], _: i64) -> StoreResult<()> {
        lock(&self.books).insert(pair, book.to_vec());
        Ok(())
    }
    async fn sim_network(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(lock(&self.network).clone())
    }
    async fn set_sim_network(&self, book: &[u8], _: i64) -> StoreResult<()> {
        *lock(&self.network) = Some(book.to_vec());
        Ok(())
    }
    async fn all_sim_phonebooks(&self) -> StoreResult<Vec<Vec<u8>>> {
        let mut all: Vec<Vec<u8>> = lock(&self.books).values().cloned().collect();
        all.extend(lock(&self.network).clone());
        Ok(all)
    }
    async fn record_sim_sent(&self, pair: Pair, sent: &str, _: i64) -> StoreResult<()> {
        lock(&self.sent).push((pair, sent.to_owned()));
        Ok(())
    }
    async fn sim_outbox(&self, pair: Pair) -> StoreResult<Vec<String>> {
        let sent = lock(&self.sent);
        Ok(sent
            .iter()
            .filter(|(p, _)| *p == pair)
            .map(|(_, s)| s.clone())
            .collect())
    }
    async fn open_sim_connection(
        &self,
        pair: Pair,
        s: &SessionId,
        node: &str,
        now: i64,
    ) -> StoreResult<SimOpened> {
        let mut all = lock(&self.connections);
        let mut closed = Vec::new();
        for c in all.iter_mut() {
            if c.session_id == s.as_str() && c.closed_at.is_none() {
                // One node here: any other is gone.
                let reason = if c.node_id == node {
                    SimCloseReason::Replaced
                } else {
                    SimCloseReason::ConnectionLost
                };
                c.closed_at = Some(now);
                c.reason = Some(reason.as_str().into());
                closed.push((c.id, c.node_id.clone(), reason));
            }
        }
        let id = all.len() as i64 + 1;
        all.push(SimConnection {
            id,
            pair,
            session_id: s.as_str().into(),
            node_id: node.into(),
            opened_at: now,
            closed_at: None,
            reason: None,
        });
        Ok(SimOpened { id, closed })
    }
    async fn close_sim_connection(
        &self,
        id: i64,
        r: SimCloseReason,
        now: i64,
    ) -> StoreResult<bool> {
        let mut all = lock(&self.connections);
        let Some(c) = all.iter_mut().find(|c| c.id == id && c.closed_at.is_none()) else {
            return Ok(false);
        };
        c.closed_at = Some(now);
        c.reason = Some(r.as_str().into());
        Ok(true)
    }
    async fn close_sim_connections_of(
        &self,
        node: &str,
        r: SimCloseReason,
        now: i64,
    ) -> StoreResult<u64> {
        let mut n = 0;
        for c in lock(&self.connections).iter_mut() {
            if c.node_id == node && c.closed_at.is_none() {
                c.closed_at = Some(now);
                c.reason = Some(r.as_str().into());
                n += 1;
            }
        }
        Ok(n)
    }
    async fn sim_connection(&self, id: i64) -> StoreResult<Option<SimConnection>> {
        Ok(lock(&self.connections).iter().find(|c| c.id == id).cloned())
    }
    async fn open_sim_connections_of(&self, node: &str) -> StoreResult<Vec<i64>> {
        let all = lock(&self.connections);
        Ok(all
            .iter()
            .filter(|c| c.node_id == node && c.closed_at.is_none())
            .map(|c| c.id)
            .collect())
    }
    async fn sim_connections(&self, pair: Pair) -> StoreResult<Vec<SimConnection>> {
        let all = lock(&self.connections);
        Ok(all.iter().filter(|c| c.pair == pair).cloned().collect())
    }
}

async fn start(
    cfg: SimConfig,
) -> (
    SimNetwork,
    Arc<dyn EngineClient>,
    mpsc::Receiver<EngineEvent>,
    Arc<MemoryStore>,
) {
    let db = Arc::new(MemoryStore::default());
    let net = SimNetwork::new(cfg, db.clone(), Arc::new(SystemClock));
    let (tx, rx) = mpsc::channel(16);
    let client = net
        .start(ClientStart {
            session_id: SessionId::new(pair(), 1),
            pair: pair(),
            events: tx,
        })
        .await
        .unwrap();
    (net, client, rx, db)
}

#[tokio::test(start_paused = true)]
async fn qr_codes_rotate_on_the_interval_then_run_out() {
    let cfg = SimConfig {
        qr_interval: Duration::from_secs(20),
        qr_attempts: 6,
        ..SimConfig::default()
    };
    let (_net, client, mut rx, _dir) = start(cfg).await;
    let mut codes = Vec::new();
    let mut at = Vec::new();
    let failure = loop {
        match rx.recv().await.unwrap() {
            EngineEvent::Qr { code } => {
                codes.push(code);
                at.push(Instant::now());
            }
            EngineEvent::Failed { message } => break message,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(codes.len(), 6);
    assert_eq!(
        codes.iter().collect::<std::collections::HashSet<_>>().len(),
        6
    );
    for w in at.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(20));
    }
    assert!(failure.contains("QR code attempts ran out"), "{failure}");
    assert!(!client.is_alive());
}

#[tokio::test(start_paused = true)]
async fn auto_scan_links_after_its_delay() {
    let cfg = SimConfig {
        auto_scan: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    };
    let (_net, client, mut rx, _dir) = start(cfg).await;
    assert!(matches!(rx.recv().await, Some(EngineEvent::Qr { .. })));
    let t0 = Instant::now();
    assert_eq!(rx.recv().await, Some(EngineEvent::Authenticated));
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    match rx.recv().await {
        Some(EngineEvent::Ready { phone, .. }) => assert_eq!(phone, default_me_digits(pair())),
        other => panic!("{other:?}"),
    }
    assert!(client.is_alive());
}

#[tokio::test(start_paused = true)]
async fn linking_generates_no_phone_book_until_a_fetch_reads_it() {
    let cfg = SimConfig {
        auto_scan: Some(Duration::ZERO),
        contacts: 500,
        ..SimConfig::default()
    };
    let (net, client, mut rx, _dir) = start(cfg).await;
    let linked_as = loop {
        if let Some(EngineEvent::Ready { phone, push_name }) = rx.recv().await {
            break (phone, push_name);
        }
    };
    // A linked session's memory holds no contacts of its phone...
    assert!(lock(&net.inner.books).is_empty());
    // ...and the identity it linked as is the one the generated book then carries.
    let mut source = client.read_contacts().await.unwrap();
    assert_eq!(source.total(), Some(500));
    assert!(source.next_chunk().await.unwrap().is_some());
    let book = net.phonebook(pair()).await;
    assert_eq!(book.me, Some(format!("{}@s.whatsapp.net", linked_as.0)));
    assert_eq!(book.push_name, linked_as.1);
    assert_eq!(lock(&net.inner.books).len(), 1);
}

#[tokio::test]
async fn a_dropped_client_is_dead_without_any_event() {
    let (net, client, mut rx, _dir) = start(SimConfig::default()).await;
    assert!(matches!(rx.recv().await, Some(EngineEvent::Qr { .. })));
    net.scan(pair()).await.unwrap();
    assert_eq!(rx.recv().await, Some(EngineEvent::Authenticated));
    assert!(matches!(rx.recv().await, Some(EngineEvent::Ready { .. })));
    net.fault(pair(), Fault::DropClient).unwrap();
    assert!(!client.is_alive());
    assert!(matches!(
        client.read_contacts().await,
        Err(EngineError::ClientGone)
    ));
    let quiet = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
    assert!(
        quiet.is_err(),
        "a vanished client must not announce itself: {quiet:?}"
    );
}

/// A linked client of `session` on `net` under `key`, once it is ready.
async fn linked(
    net: &SimNetwork,
    key: Pair,
    session: &SessionId,
) -> (Arc<dyn EngineClient>, mpsc::Receiver<EngineEvent>) {
    let (tx, mut rx) = mpsc::channel(16);
    let client = net
        .start(ClientStart {
            session_id: session.clone(),
            pair: key,
            events: tx,
        })
        .await
        .unwrap();
    loop {
        match rx.recv().await {
            Some(EngineEvent::Ready { .. }) => return (client, rx),
            Some(_) => {}
            None => panic!("the client ended before it was ready"),
        }
    }
}

/// Why each connection of the store closed, oldest first, whatever its pair.
async fn reasons(db: &MemoryStore) -> Vec<Option<String>> {
    lock(&db.connections)
        .iter()
        .map(|c| c.reason.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_second_connection_of_the_device_replaces_the_first_at_once() {
    let cfg = SimConfig {
        auto_scan: Some(Duration::ZERO),
        ..SimConfig::default()
    };
    let (net, first, mut first_rx, db) = start(cfg).await;
    while !matches!(first_rx.recv().await, Some(EngineEvent::Ready { .. })) {}
    // The same device connecting again from a second client: WhatsApp keeps the newest.
    let other_key = Pair::new(UserId::new_unchecked(9), PlaceId::new_unchecked(9));
    let (second, _rx) = linked(&net, other_key, &SessionId::new(pair(), 1)).await;
    let told = tokio::time::timeout(Duration::from_secs(1), first_rx.recv()).await;
    match told {
        Ok(Some(EngineEvent::Failed { message })) => assert_eq!(message, client::REPLACED),
        other => panic!("the first client was not told: {other:?}"),
    }
    assert!(!first.is_alive());
    assert!(second.is_alive());
    assert_eq!(reasons(&db).await, [Some("replaced".to_string()), None]);
    // A stop closes what it holds, once.
    second.stop().await;
    assert_eq!(
        reasons(&db).await,
        [Some("replaced".to_string()), Some("closed".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_replaced_from_elsewhere_learns_it_from_its_rows() {
    let cfg = SimConfig {
        auto_scan: Some(Duration::ZERO),
        ..SimConfig::default()
    };
    let (here, _first, mut first_rx, db) = start(cfg.clone()).await;
    here.start_node().await.unwrap();
    while !matches!(first_rx.recv().await, Some(EngineEvent::Ready { .. })) {}
    // Another process of the same node on the same store, nothing in memory shared.
    let there = SimNetwork::new(cfg, db.clone(), Arc::new(SystemClock));
    let (_second, _rx) = linked(&there, pair(), &SessionId::new(pair(), 1)).await;
    let told = tokio::time::timeout(Duration::from_secs(30), first_rx.recv()).await;
    match told {
        Ok(Some(EngineEvent::Failed { message })) => assert_eq!(message, client::REPLACED),
        other => panic!("the first client was not told: {other:?}"),
    }
    assert_eq!(reasons(&db).await, [Some("replaced".to_string()), None]);
}
