//! The simulated network: the [`Engine`] of the sim, the phones' books and outboxes (in the
//! database), the clients it started, and the routes that scan, fault and write to them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};

use super::book::{Rng, generate, generated_identity};
use super::client::{ClientShared, Control, SimClient, run_client};
use super::{Fault, PhoneBook, SimConfig, SimError, SimIncoming, SimSent, legacy, lock};
use crate::clock::SharedClock;
use crate::domain::text::phone_name_opt;
use crate::domain::{Pair, SessionId};
use crate::engine::{ClientStart, Engine, EngineClient, EngineError, EngineEvent};
use crate::store::traits::{Signals, SimStore};

/// The node a network runs on: its connections carry its id, and it tells the others
/// through `signals` (PostgreSQL) when it closes theirs.
#[derive(Clone)]
pub struct SimNode {
    pub id: String,
    pub signals: Option<Arc<dyn Signals>>,
}

impl Default for SimNode {
    /// A network alone on its database.
    fn default() -> Self {
        Self {
            id: "local".into(),
            signals: None,
        }
    }
}

pub(super) struct Inner {
    pub(super) cfg: SimConfig,
    pub(super) store: Arc<dyn SimStore>,
    pub(super) clock: SharedClock,
    pub(super) node: SimNode,
    /// Generated books, and (alone on the database) the ones someone set; with other nodes
    /// on the database a set book is read from it every time, as any of them may change it.
    pub(super) books: Mutex<HashMap<Pair, Arc<PhoneBook>>>,
    /// The newest client started for each pair.
    pub(super) clients: Mutex<HashMap<Pair, Arc<ClientShared>>>,
    /// This node's open connections by id, to tell their clients when someone closes them.
    pub(super) open: Mutex<HashMap<i64, Arc<ClientShared>>>,
    pub(super) qr_counter: AtomicU64,
    pub(super) incoming_counter: AtomicU64,
    /// Numbers asked about since start ([`SimNetwork::numbers_checked`]).
    pub(super) numbers_checked: AtomicU64,
    /// Read receipts each pair's phone sent (in memory: what a test looks at).
    pub(super) reads: Mutex<HashMap<Pair, Vec<super::SimRead>>>,
    /// One phone-book upload read and parsed at a time: a large book costs several times its
    /// size in memory while parsed, and four at once must not add up.
    pub(super) uploads: tokio::sync::Semaphore,
}

#[derive(Clone)]
pub struct SimNetwork {
    pub(super) inner: Arc<Inner>,
}

impl SimNetwork {
    pub fn new(cfg: SimConfig, store: Arc<dyn SimStore>, clock: SharedClock) -> Self {
        Self::on_node(cfg, store, clock, SimNode::default())
    }

    pub fn on_node(
        cfg: SimConfig,
        store: Arc<dyn SimStore>,
        clock: SharedClock,
        node: SimNode,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                clock,
                node,
                books: Mutex::default(),
                clients: Mutex::default(),
                open: Mutex::default(),
                qr_counter: AtomicU64::new(0),
                incoming_counter: AtomicU64::new(0),
                numbers_checked: AtomicU64::new(0),
                reads: Mutex::default(),
                uploads: tokio::sync::Semaphore::new(1),
            }),
        }
    }

    /// Moves what an earlier version kept in files (`<data-dir>/sim/`) into the database,
    /// once: see [`legacy`].
    pub async fn import_files(&self, data_dir: &Path) -> anyhow::Result<()> {
        legacy::import(
            self.inner.store.as_ref(),
            data_dir,
            self.inner.clock.now_ms(),
        )
        .await
    }

    /// The largest phone-book body an upload may send.
    pub fn max_phonebook_bytes(&self) -> usize {
        self.inner.cfg.max_phonebook_bytes
    }

    /// A turn to read and parse one phone-book upload; held until the book is stored.
    pub async fn upload_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.inner.uploads.acquire().await.ok()
    }

    pub(super) async fn record_sent(&self, pair: Pair, sent: &SimSent) -> Result<(), EngineError> {
        let line = serde_json::to_string(sent)
            .map_err(|e| EngineError::Failed(format!("cannot encode the message: {e}")))?;
        self.inner
            .store
            .record_sim_sent(pair, &line, sent.at_ms)
            .await
            .map_err(|e| EngineError::Failed(format!("the simulated network is down: {e}")))
    }

    /// Everything the pair's phone sent, oldest first; a repeated id means a send was
    /// repeated under the same WhatsApp id (a node died between sending and recording it).
    pub async fn outbox(&self, pair: Pair) -> anyhow::Result<Vec<SimSent>> {
        self.inner
            .store
            .sim_outbox(pair)
            .await?
            .iter()
            .map(|l| serde_json::from_str(l).context("corrupt sim outbox row"))
            .collect()
    }

    /// Someone writes to the pair's number: the linked client reports it like WhatsApp would.
    pub async fn incoming(&self, pair: Pair, msg: SimIncoming) -> Result<String, SimError> {
        let client = self.live_client(pair).ok_or(SimError::NoClient(pair))?;
        if !client.connected.load(Ordering::SeqCst) {
            return Err(SimError::NotConnected(pair));
        }
        let n = self.inner.incoming_counter.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "SIMIN{:016X}",
            (self.inner.clock.now_ms() as u64) ^ n.rotate_left(40)
        );
        let kind = msg.media.as_ref().map_or("text".into(), |m| m.kind.clone());
        let media = msg.media.map(|m| {
            use base64::Engine as _;
            crate::engine::IncomingMedia {
                mime: Some(m.mime),
                size: i64::try_from(m.bytes.len()).ok(),
                file_name: m.file_name,
                voice_note: m.voice_note,
                media_ref: serde_json::json!({
                    "sim_data_base64": base64::engine::general_purpose::STANDARD.encode(&m.bytes),
                })
                .to_string(),
            }
        });
        let event = EngineEvent::MessageReceived(crate::engine::IncomingMessage {
            id: id.clone(),
            from: msg.from.digits().to_owned(),
            push_name: phone_name_opt(msg.push_name.as_deref()),
            text: msg.text,
            kind,
            timestamp: self.inner.clock.now().timestamp(),
            media,
        });
        client
            .events
            .send(event)
            .await
            .map_err(|_| SimError::NoClient(pair))?;
        Ok(id)
    }

    /// The recipient of a message the pair's phone sent (`to`, E.164) reports on it: the
    /// linked client hears the receipt as WhatsApp would pass it on.
    pub async fn receipt(
        &self,
        pair: Pair,
        to: &str,
        wa_message_id: &str,
        kind: crate::engine::ReceiptKind,
    ) -> Result<(), SimError> {
        let client = self.live_client(pair).ok_or(SimError::NoClient(pair))?;
        if !client.connected.load(Ordering::SeqCst) {
            return Err(SimError::NotConnected(pair));
        }
        let event = EngineEvent::Receipt(crate::engine::Receipt {
            ids: vec![wa_message_id.to_owned()],
            from: to.trim_start_matches('+').to_owned(),
            kind,
            timestamp: self.inner.clock.now().timestamp(),
        });
        client
            .events
            .send(event)
            .await
            .map_err(|_| SimError::NoClient(pair))
    }

    /// The read receipts the pair's phone sent, oldest first.
    pub fn read_receipts(&self, pair: Pair) -> Vec<super::SimRead> {
        lock(&self.inner.reads)
            .get(&pair)
            .cloned()
            .unwrap_or_default()
    }

    pub(super) fn record_read(&self, pair: Pair, read: super::SimRead) {
        lock(&self.inner.reads).entry(pair).or_default().push(read);
    }

    /// Sets what the pair's phone holds; it outlives restarts like a real phone would.
    pub async fn set_phonebook(&self, pair: Pair, book: PhoneBook) -> anyhow::Result<()> {
        let book = Arc::new(book);
        let bytes = serde_json::to_vec(&*book)?;
        self.inner
            .store
            .set_sim_phonebook(pair, &bytes, self.inner.clock.now_ms())
            .await?;
        if self.shares_database() {
            lock(&self.inner.books).remove(&pair);
        } else {
            lock(&self.inner.books).insert(pair, book);
        }
        Ok(())
    }

    pub async fn phonebook(&self, pair: Pair) -> Arc<PhoneBook> {
        if let Some(b) = self.stored_phonebook(pair).await {
            return b;
        }
        let book = Arc::new(generate(
            pair,
            self.inner.cfg.contacts,
            self.inner.clock.now(),
        ));
        lock(&self.inner.books).entry(pair).or_insert(book).clone()
    }

    /// Whether other nodes may share the database (and so change a phone book under us).
    fn shares_database(&self) -> bool {
        self.inner.node.signals.is_some()
    }

    /// A phone book someone set (kept in memory, or in the database from before a restart).
    async fn stored_phonebook(&self, pair: Pair) -> Option<Arc<PhoneBook>> {
        let shared = self.shares_database();
        if !shared && let Some(b) = lock(&self.inner.books).get(&pair) {
            return Some(b.clone());
        }
        let bytes = match self.inner.store.sim_phonebook(pair).await {
            Ok(bytes) => bytes?,
            Err(e) => {
                tracing::warn!("⚠️ Simulated engine cannot read the phone book of {pair}: {e}");
                return None;
            }
        };
        let book = Arc::new(serde_json::from_slice::<PhoneBook>(&bytes).ok()?);
        if shared {
            // Set through another node, it may have replaced a book generated here.
            lock(&self.inner.books).remove(&pair);
            return Some(book);
        }
        Some(lock(&self.inner.books).entry(pair).or_insert(book).clone())
    }

    /// Who the pair's phone is, without generating a phone book nobody has read yet: a
    /// linked session must not hold its phone's contacts in memory until it fetches them.
    pub(super) async fn identity(&self, pair: Pair) -> Arc<PhoneBook> {
        match self.stored_phonebook(pair).await {
            Some(b) => b,
            None => Arc::new(generated_identity(pair)),
        }
    }

    fn live_client(&self, pair: Pair) -> Option<Arc<ClientShared>> {
        lock(&self.inner.clients)
            .get(&pair)
            .filter(|c| c.alive.load(Ordering::SeqCst))
            .cloned()
    }

    /// The phone scans the QR code that is showing.
    pub async fn scan(&self, pair: Pair) -> Result<SessionId, SimError> {
        let client = self.live_client(pair).ok_or(SimError::NoQr(pair))?;
        if !client.qr_showing.load(Ordering::SeqCst) {
            return Err(SimError::NoQr(pair));
        }
        let (tx, rx) = oneshot::channel();
        client
            .control
            .send(Control::Scan(tx))
            .map_err(|_| SimError::NoQr(pair))?;
        match rx.await {
            Ok(true) => Ok(client.session_id.clone()),
            _ => Err(SimError::NoQr(pair)),
        }
    }

    pub fn fault(&self, pair: Pair, fault: Fault) -> Result<SessionId, SimError> {
        let client = self.live_client(pair).ok_or(SimError::NoClient(pair))?;
        match fault {
            Fault::FailFetch => client.fail_next_fetch.store(true, Ordering::SeqCst),
            Fault::SlowFetch => client.slow_next_fetch.store(true, Ordering::SeqCst),
            Fault::FailSend => client.fail_next_send.store(true, Ordering::SeqCst),
            Fault::DropClient => {
                // Gone at once: the next use must find it dead, whatever the task is doing.
                client.alive.store(false, Ordering::SeqCst);
                client.connected.store(false, Ordering::SeqCst);
                client.generation.fetch_add(1, Ordering::SeqCst);
                let _ = client.control.send(Control::Fault(fault));
            }
            Fault::Disconnect | Fault::Logout => {
                client
                    .control
                    .send(Control::Fault(fault))
                    .map_err(|_| SimError::NoClient(pair))?;
            }
        }
        Ok(client.session_id.clone())
    }

    pub(super) fn next_pair_code(&self, session: &SessionId) -> String {
        // WhatsApp's pairing codes: 8 characters of Crockford's base32.
        const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
        let n = self.inner.qr_counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(
            n.rotate_left(29)
                ^ (self.inner.clock.now_ms() as u64)
                ^ session.unix_ms().unwrap_or(0) as u64,
        );
        (0..8)
            .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    pub(super) fn next_qr(&self, session: &SessionId) -> String {
        let n = self.inner.qr_counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(
            n ^ (self.inner.clock.now_ms() as u64).rotate_left(17)
                ^ session.unix_ms().unwrap_or(0) as u64,
        );
        let mut part = |len: usize| {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        // The shape of a WhatsApp Web QR payload: ref, noise key, identity key, ADV secret.
        format!("2@{},{},{},{}", part(24), part(32), part(32), part(32))
    }
}

#[async_trait]
impl Engine for SimNetwork {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn start(&self, start: ClientStart) -> Result<Arc<dyn EngineClient>, EngineError> {
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(ClientShared {
            session_id: start.session_id.clone(),
            pair: start.pair,
            alive: AtomicBool::new(true),
            connected: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            qr_showing: AtomicBool::new(false),
            fail_next_fetch: AtomicBool::new(false),
            slow_next_fetch: AtomicBool::new(false),
            fail_next_send: AtomicBool::new(false),
            connection: AtomicI64::new(0),
            control: ctl_tx,
            events: start.events.clone(),
        });
        if let Some(old) = lock(&self.inner.clients).insert(start.pair, shared.clone()) {
            let _ = old.control.send(Control::Stop);
        }
        tokio::spawn(run_client(
            self.clone(),
            shared.clone(),
            ctl_rx,
            start.events,
        ));
        Ok(Arc::new(SimClient {
            net: self.clone(),
            shared,
        }))
    }

    async fn has_credentials(&self, session_id: &SessionId) -> bool {
        matches!(self.inner.store.sim_device(session_id).await, Ok(Some(_)))
    }

    async fn forget(&self, session_id: &SessionId) -> Result<(), EngineError> {
        match self.inner.store.forget_sim_device(session_id).await {
            Ok(_) => Ok(()),
            Err(e) => Err(EngineError::Failed(format!(
                "cannot delete credentials: {e}"
            ))),
        }
    }
}
