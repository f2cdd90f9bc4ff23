//! A simulated phone network: QR codes that rotate and run out, a phone that scans, links
//! that survive restarts (a credentials file per session, like the real engine's store),
//! phone books, and the faults a real connection has.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod book;
mod legacy;

use super::{
    ClientStart, ContactSource, Engine, EngineClient, EngineError, EngineEvent, RawContact,
};
use crate::clock::SharedClock;
use crate::domain::text::phone_name_opt;
use crate::domain::{Pair, PhoneNumber, SessionId};
use crate::store::traits::SimStore;
pub use book::{PhoneBook, SimEntry, default_me_digits};
use book::{Rng, generate, generated_identity};

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Size of the generated book of a pair nobody gave one.
    pub contacts: usize,
    /// The phone scans the first QR this long after it shows.
    pub auto_scan: Option<Duration>,
    pub qr_interval: Duration,
    pub qr_attempts: u32,
    /// Pause after every 1,000 contacts read.
    pub fetch_delay: Duration,
    /// How long a dropped connection stays down before the client is back.
    pub reconnect_backoff: Duration,
    /// The largest phone-book body `PUT /api/sim/phonebook` reads.
    pub max_phonebook_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            contacts: 200,
            auto_scan: None,
            qr_interval: Duration::from_secs(20),
            qr_attempts: 6,
            fetch_delay: Duration::ZERO,
            reconnect_backoff: Duration::from_secs(1),
            max_phonebook_bytes: 64 * 1024 * 1024,
        }
    }
}

const CHUNK: usize = 1_000;
const SLOW_FETCH: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    DropClient,
    Disconnect,
    Logout,
    FailFetch,
    SlowFetch,
    /// The next send fails, as when WhatsApp refuses a message.
    FailSend,
}

impl Fault {
    pub const NAMES: &'static str =
        "drop_client, disconnect, logout, fail_fetch, slow_fetch, fail_send";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop_client" => Self::DropClient,
            "disconnect" => Self::Disconnect,
            "logout" => Self::Logout,
            "fail_fetch" => Self::FailFetch,
            "slow_fetch" => Self::SlowFetch,
            "fail_send" => Self::FailSend,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("No QR code is showing for {0}: there is nothing to scan.")]
    NoQr(Pair),
    #[error("No live simulated client for {0}. Call /api/whatsapp/init first.")]
    NoClient(Pair),
    #[error("The simulated phone of {0} is not connected: link it and wait for ready.")]
    NotConnected(Pair),
}

/// What reached the simulated WhatsApp from a pair's phone: one line per send attempt that
/// got through, kept in a file so it outlives a server restart like a real recipient's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSent {
    /// The WhatsApp message id.
    pub id: String,
    /// E.164.
    pub to: String,
    pub text: Option<String>,
    pub image_mime: Option<String>,
    pub image_bytes: Option<usize>,
    pub at_ms: i64,
}

/// A message someone sends to a pair's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimIncoming {
    pub from: PhoneNumber,
    pub push_name: Option<String>,
    pub text: String,
}

/// The linked device a credentials file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinkedDevice {
    me: String,
    push_name: Option<String>,
    linked_at_ms: i64,
}

enum Control {
    Scan(oneshot::Sender<bool>),
    Fault(Fault),
    /// Unlink on the API's request; the actor records `logged_out` itself.
    Unlink(oneshot::Sender<()>),
    Stop,
}

/// State a client shares between its task, its handle and the network's fault routes.
struct ClientShared {
    session_id: SessionId,
    pair: Pair,
    alive: AtomicBool,
    connected: AtomicBool,
    /// Bumped on every connection change, so a fetch notices a drop mid-read.
    generation: AtomicU64,
    qr_showing: AtomicBool,
    fail_next_fetch: AtomicBool,
    slow_next_fetch: AtomicBool,
    fail_next_send: AtomicBool,
    control: mpsc::UnboundedSender<Control>,
    /// Held here as well as by the task: a dropped client vanishes *without* closing the
    /// actor's event channel, exactly like a client that died silently. Incoming messages
    /// go through it too.
    events: mpsc::Sender<EngineEvent>,
}

struct Inner {
    cfg: SimConfig,
    store: Arc<dyn SimStore>,
    clock: SharedClock,
    books: Mutex<HashMap<Pair, Arc<PhoneBook>>>,
    /// The newest client started for each pair.
    clients: Mutex<HashMap<Pair, Arc<ClientShared>>>,
    qr_counter: AtomicU64,
    incoming_counter: AtomicU64,
    /// One phone-book upload read and parsed at a time: a large book costs several times its
    /// size in memory while parsed, and four at once must not add up.
    uploads: tokio::sync::Semaphore,
}

#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Inner>,
}

impl SimNetwork {
    pub fn new(cfg: SimConfig, store: Arc<dyn SimStore>, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                clock,
                books: Mutex::default(),
                clients: Mutex::default(),
                qr_counter: AtomicU64::new(0),
                incoming_counter: AtomicU64::new(0),
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

    async fn record_sent(&self, pair: Pair, sent: &SimSent) -> Result<(), EngineError> {
        let line = serde_json::to_string(sent)
            .map_err(|e| EngineError::Failed(format!("cannot encode the message: {e}")))?;
        self.inner
            .store
            .record_sim_sent(pair, &line, sent.at_ms)
            .await
            .map_err(|e| EngineError::Failed(format!("the simulated network is down: {e}")))
    }

    /// Everything the pair's phone sent, oldest first; a repeated id means the same
    /// message reached WhatsApp twice.
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
        let event = EngineEvent::MessageReceived(super::IncomingMessage {
            id: id.clone(),
            from: msg.from.digits().to_owned(),
            push_name: phone_name_opt(msg.push_name.as_deref()),
            text: Some(msg.text),
            kind: "text".into(),
            timestamp: self.inner.clock.now().timestamp(),
        });
        client
            .events
            .send(event)
            .await
            .map_err(|_| SimError::NoClient(pair))?;
        Ok(id)
    }

    /// Sets what the pair's phone holds; it outlives restarts like a real phone would.
    pub async fn set_phonebook(&self, pair: Pair, book: PhoneBook) -> anyhow::Result<()> {
        let book = Arc::new(book);
        let bytes = serde_json::to_vec(&*book)?;
        self.inner
            .store
            .set_sim_phonebook(pair, &bytes, self.inner.clock.now_ms())
            .await?;
        lock(&self.inner.books).insert(pair, book);
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

    /// A phone book someone set (kept in memory, or in the database from before a restart).
    async fn stored_phonebook(&self, pair: Pair) -> Option<Arc<PhoneBook>> {
        if let Some(b) = lock(&self.inner.books).get(&pair) {
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
        Some(lock(&self.inner.books).entry(pair).or_insert(book).clone())
    }

    /// Who the pair's phone is, without generating a phone book nobody has read yet: a
    /// linked session must not hold its phone's contacts in memory until it fetches them.
    async fn identity(&self, pair: Pair) -> Arc<PhoneBook> {
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

    fn next_pair_code(&self, session: &SessionId) -> String {
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

    fn next_qr(&self, session: &SessionId) -> String {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole sim network down with a poisoned lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
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

struct SimClient {
    net: SimNetwork,
    shared: Arc<ClientShared>,
}

#[async_trait]
impl EngineClient for SimClient {
    fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    async fn read_contacts(&self) -> Result<Box<dyn ContactSource>, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        if self.shared.fail_next_fetch.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Failed(
                "the phone did not answer the contact read (simulated failure)".into(),
            ));
        }
        let book = self.net.phonebook(self.shared.pair).await;
        Ok(Box::new(SimSource {
            generation: self.shared.generation.load(Ordering::SeqCst),
            shared: self.shared.clone(),
            book,
            pos: 0,
            slow: self.shared.slow_next_fetch.swap(false, Ordering::SeqCst),
            delay: self.net.inner.cfg.fetch_delay,
        }))
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        if self.shared.control.send(Control::Unlink(tx)).is_ok() {
            let _ = rx.await;
        }
        self.shared.alive.store(false, Ordering::SeqCst);
        self.net.forget(&self.shared.session_id).await
    }

    async fn stop(&self) {
        self.shared.alive.store(false, Ordering::SeqCst);
        let _ = self.shared.control.send(Control::Stop);
    }

    /// The simulated phone accepts a code like it accepts a scan: through the sim's scan
    /// route (or auto-scan), while the session is waiting to be linked.
    async fn pair_code(&self, _phone: &PhoneNumber) -> Result<String, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.qr_showing.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        Ok(self.net.next_pair_code(&self.shared.session_id))
    }

    async fn send(&self, message: &super::OutgoingMessage) -> Result<String, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        if self.shared.fail_next_send.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Failed(
                "WhatsApp refused the message (simulated failure)".into(),
            ));
        }
        let sent = SimSent {
            id: message.id.clone(),
            to: message.to.as_str().to_owned(),
            text: message.text.clone(),
            image_mime: message.image.as_ref().map(|i| i.mime.clone()),
            image_bytes: message.image.as_ref().map(|i| i.bytes.len()),
            at_ms: self.net.inner.clock.now_ms(),
        };
        self.net.record_sent(self.shared.pair, &sent).await?;
        Ok(message.id.clone())
    }
}

struct SimSource {
    shared: Arc<ClientShared>,
    generation: u64,
    book: Arc<PhoneBook>,
    pos: usize,
    slow: bool,
    delay: Duration,
}

#[async_trait]
impl ContactSource for SimSource {
    fn total(&self) -> Option<u64> {
        Some(self.book.entries.len() as u64)
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<RawContact>>, EngineError> {
        if self.slow {
            self.slow = false;
            tokio::time::sleep(SLOW_FETCH).await;
        } else if self.pos > 0 && !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if !self.shared.alive.load(Ordering::SeqCst) {
            return Err(EngineError::ClientGone);
        }
        if self.shared.generation.load(Ordering::SeqCst) != self.generation {
            return Err(EngineError::Failed(
                "the connection dropped while contacts were being read".into(),
            ));
        }
        if self.pos >= self.book.entries.len() {
            return Ok(None);
        }
        let end = (self.pos + CHUNK).min(self.book.entries.len());
        let chunk = self.book.entries[self.pos..end]
            .iter()
            .map(|e| RawContact {
                jid: e.jid.clone(),
                pn_jid: e.pn_jid.clone(),
                name: e.name.clone(),
                push_name: e.push_name.clone(),
                is_business: e.is_business,
                last_message_at: e.last_message_at,
            })
            .collect();
        self.pos = end;
        Ok(Some(chunk))
    }

    fn own_jids(&self) -> Vec<String> {
        self.book.me.iter().cloned().collect()
    }
}

enum Linking {
    Linked(LinkedDevice),
    Exhausted,
    Stopped,
}

async fn run_client(
    net: SimNetwork,
    shared: Arc<ClientShared>,
    mut ctl: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<EngineEvent>,
) {
    let stored = match net.inner.store.sim_device(&shared.session_id).await {
        Ok(json) => json.and_then(|j| serde_json::from_str::<LinkedDevice>(&j).ok()),
        Err(e) => {
            tracing::warn!("⚠️ Simulated engine cannot read its credentials: {e}");
            None
        }
    };
    let device = match stored {
        Some(d) => d,
        None => match show_qr_codes(&net, &shared, &mut ctl, &events).await {
            Linking::Linked(d) => d,
            Linking::Exhausted => {
                let n = net.inner.cfg.qr_attempts;
                let _ = events
                    .send(EngineEvent::Failed {
                        message: format!(
                            "QR code attempts ran out: {n} QR codes were shown and none was \
                             scanned. Call /api/whatsapp/restart or /api/whatsapp/init to get a \
                             new QR code."
                        ),
                    })
                    .await;
                // Dead only after saying why, so a liveness check finds the reason first.
                shared.alive.store(false, Ordering::SeqCst);
                return;
            }
            Linking::Stopped => return,
        },
    };
    connected_loop(&net, &shared, &mut ctl, &events, device).await;
}

async fn show_qr_codes(
    net: &SimNetwork,
    shared: &ClientShared,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::Sender<EngineEvent>,
) -> Linking {
    let cfg = &net.inner.cfg;
    let auto_scan_at = cfg.auto_scan.map(|d| Instant::now() + d);
    for _ in 0..cfg.qr_attempts.max(1) {
        let code = net.next_qr(&shared.session_id);
        shared.qr_showing.store(true, Ordering::SeqCst);
        if events.send(EngineEvent::Qr { code }).await.is_err() {
            return Linking::Stopped;
        }
        let rotate_at = Instant::now() + cfg.qr_interval;
        loop {
            let auto = auto_scan_at;
            tokio::select! {
                _ = tokio::time::sleep_until(rotate_at) => break,
                _ = tokio::time::sleep_until(auto.unwrap_or(rotate_at)), if auto.is_some() => {
                    return link(net, shared, events).await;
                }
                c = ctl.recv() => match c {
                    Some(Control::Scan(reply)) => {
                        let _ = reply.send(true);
                        return link(net, shared, events).await;
                    }
                    Some(Control::Unlink(reply)) => {
                        let _ = reply.send(());
                        shared.qr_showing.store(false, Ordering::SeqCst);
                        return Linking::Stopped;
                    }
                    Some(Control::Fault(Fault::DropClient)) | Some(Control::Stop) | None => {
                        shared.qr_showing.store(false, Ordering::SeqCst);
                        return Linking::Stopped;
                    }
                    // Nothing to drop or unlink before the phone has linked.
                    Some(Control::Fault(_)) => {}
                }
            }
        }
    }
    shared.qr_showing.store(false, Ordering::SeqCst);
    Linking::Exhausted
}

async fn link(
    net: &SimNetwork,
    shared: &ClientShared,
    events: &mpsc::Sender<EngineEvent>,
) -> Linking {
    shared.qr_showing.store(false, Ordering::SeqCst);
    let _ = events.send(EngineEvent::Authenticated).await;
    let book = net.identity(shared.pair).await;
    let me = book
        .me
        .as_deref()
        .and_then(|jid| jid.split('@').next())
        .map(|u| u.split(':').next().unwrap_or(u).to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default_me_digits(shared.pair));
    let device = LinkedDevice {
        me,
        push_name: book.push_name.clone(),
        linked_at_ms: net.inner.clock.now_ms(),
    };
    match serde_json::to_string(&device) {
        Ok(json) => {
            let now = net.inner.clock.now_ms();
            if let Err(e) = net
                .inner
                .store
                .save_sim_device(&shared.session_id, &json, now)
                .await
            {
                tracing::error!("❌ Simulated engine cannot store credentials: {e}");
            }
        }
        Err(e) => tracing::error!("❌ Simulated engine cannot encode credentials: {e}"),
    }
    Linking::Linked(device)
}

async fn connected_loop(
    net: &SimNetwork,
    shared: &ClientShared,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::Sender<EngineEvent>,
    device: LinkedDevice,
) {
    let ready = || EngineEvent::Ready {
        phone: device.me.clone(),
        push_name: phone_name_opt(device.push_name.as_deref()),
    };
    let down = || {
        shared.connected.store(false, Ordering::SeqCst);
        shared.generation.fetch_add(1, Ordering::SeqCst);
    };
    shared.connected.store(true, Ordering::SeqCst);
    if events.send(ready()).await.is_err() {
        return;
    }
    // While the connection is down, when it comes back. Every control message is handled
    // the same way up or down: an unlink during the backoff must not be lost.
    let mut reconnect_at: Option<Instant> = None;
    loop {
        let wake = reconnect_at;
        tokio::select! {
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                reconnect_at = None;
                if !shared.alive.load(Ordering::SeqCst) {
                    return;
                }
                shared.connected.store(true, Ordering::SeqCst);
                if events.send(ready()).await.is_err() {
                    return;
                }
            }
            c = ctl.recv() => match c {
                Some(Control::Scan(reply)) => {
                    let _ = reply.send(false);
                }
                Some(Control::Fault(Fault::Disconnect)) => {
                    if reconnect_at.is_none() {
                        down();
                        let _ = events
                            .send(EngineEvent::Disconnected {
                                reason: "connection to WhatsApp lost (simulated)".into(),
                            })
                            .await;
                        reconnect_at = Some(Instant::now() + net.inner.cfg.reconnect_backoff);
                    }
                }
                Some(Control::Fault(Fault::Logout)) => {
                    down();
                    shared.alive.store(false, Ordering::SeqCst);
                    let _ = net.forget(&shared.session_id).await;
                    let _ = events
                        .send(EngineEvent::LoggedOut {
                            reason: "the device was unlinked from the phone".into(),
                        })
                        .await;
                    return;
                }
                Some(Control::Unlink(reply)) => {
                    down();
                    shared.alive.store(false, Ordering::SeqCst);
                    let _ = net.forget(&shared.session_id).await;
                    let _ = reply.send(());
                    return;
                }
                Some(Control::Fault(Fault::DropClient)) | Some(Control::Stop) | None => {
                    down();
                    return;
                }
                Some(Control::Fault(Fault::FailFetch | Fault::SlowFetch | Fault::FailSend)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::{PlaceId, UserId};
    use crate::store::StoreResult;

    fn pair() -> Pair {
        Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2))
    }

    /// The simulated phones' store in memory: these tests run on paused time, where a real
    /// pool's acquire timeout would fire at once. The store itself has its own suite.
    #[derive(Default)]
    pub(super) struct MemoryStore {
        devices: Mutex<HashMap<SessionId, String>>,
        books: Mutex<HashMap<Pair, Vec<u8>>>,
        sent: Mutex<Vec<(Pair, String)>>,
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
}
