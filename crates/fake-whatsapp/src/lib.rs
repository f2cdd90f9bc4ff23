//! An in-process fake WhatsApp server for tests.
//!
//! [`FakeWhatsApp`] plays the WhatsApp chat server for real `whatsapp-rust`
//! clients: every `create_transport()` of its transport factory opens a
//! "connection" served by a tokio task that speaks the server side of the
//! Noise handshake (XX, IK and XXfallback), the encrypted binary-node framing,
//! QR pairing (driven by [`FakeWhatsApp::scan`] and the [`phone`] module), login
//! (`<success>`), the IQs a fresh login sends, the phone's app-state key share,
//! and a set of fault scripts (dropped connections, stream errors, device
//! removal, failed logins, no network).
//!
//! Phone-number linking works too: `client.pair_with_code(PairCodeOptions {
//! phone_number, .. })` gets a pairing ref from the fake (stage 1) and returns
//! its 8-character code; [`FakeWhatsApp::enter_pair_code`]`(phone, code,
//! push_name)` is the phone typing it in (stage 2: `primary_hello`,
//! `companion_finish`, then `pair-success` as for a QR scan). A wrong code
//! returns `Err` and links nothing.
//!
//! ```ignore
//! let fake = FakeWhatsApp::new();
//! let bot = Bot::builder()
//!     .with_backend(wacore::store::InMemoryBackend::new())
//!     .with_transport_factory(fake.factory())   // or wrap fake.transport_factory()
//!     .with_http_client(NoHttp)                  // any HttpClient that never goes out
//!     .with_runtime(TokioRuntime)
//!     .with_version((2, 3000, 1))                // no sw.js version fetch
//!     .with_event_handler(ordered_channel)       // events in order
//!     .build()
//!     .await?;
//! let handle = bot.spawn();
//! // ... Event::PairingQrCode { code, .. } ...
//! fake.scan(&code, "15551234567", "Shop").await?;
//! // ... Event::PairSuccess, then Event::Connected;
//! // client.pn() = 15551234567:<device>@s.whatsapp.net, client.push_name() = "Shop"
//! ```
//!
//! What the client sees for each script:
//!
//! | script | client events |
//! |---|---|
//! | [`drop_connections`](FakeWhatsApp::drop_connections) | `Disconnected`, then (≈1 s backoff) `Connected` |
//! | [`stream_error`](FakeWhatsApp::stream_error) 401 / 516 | `LoggedOut { on_connect: false }`, no reconnect |
//! | [`stream_error`](FakeWhatsApp::stream_error) 515 | reconnects at once, `Connected` (no `Disconnected`) |
//! | [`device_removed`](FakeWhatsApp::device_removed) | `LoggedOut { on_connect: false }`; later logins get `LoggedOut { on_connect: true }` |
//! | [`replaced`](FakeWhatsApp::replaced) | `StreamReplaced`, no reconnect |
//! | [`fail_logins`](FakeWhatsApp::fail_logins) 402 / 405 | `TemporaryBan` / `ClientOutdated` on the next login, no reconnect |
//! | [`set_offline`](FakeWhatsApp::set_offline)`(true)` | `Disconnected`; reconnect attempts fail (Fibonacci backoff 1, 1, 2, 3, 5 s…) until back online |
//!
//! Each login also produces one `Event::Messages` batch while the client has
//! not finished its first app-state sync: the phone's key share (a protocol
//! message from the account's own phone).
//!
//! History and contacts:
//!
//! * [`set_history`](FakeWhatsApp::set_history) gives the phone a [`History`]
//!   (chats, push names, LID↔phone mappings) that it sends each newly linked
//!   device on its first login, right after the key share: a
//!   `HISTORY_SYNC_NOTIFICATION` (`INITIAL_BOOTSTRAP`, blob inline, no media
//!   download). The client emits `Event::HistorySync` (read it with
//!   `LazyHistorySync::get()`), learns the mappings (`client.get_lid_pn_entry`),
//!   and the notification itself also shows up in that login's
//!   `Event::Messages` batch as an `is_from_me` protocol message.
//!   [`send_history`](FakeWhatsApp::send_history) sends one on demand.
//! * [`set_contacts`](FakeWhatsApp::set_contacts) gives the phone an address
//!   book ([`PhoneContact`]s), served as the `critical_unblock_low` app-state
//!   collection: inline patches (one version per call) of `["contact", jid]`
//!   SET mutations, encrypted and MAC'd with the shared app-state key. The
//!   client emits `Event::ContactUpdate` for each, at its login bootstrap
//!   and on later syncs of that collection (incremental or full).
//! * [`send_message`](FakeWhatsApp::send_message) is a contact writing to the
//!   account: `Event::Messages` with the text in `message.conversation`, and
//!   `info.{source.chat, source.sender, source.sender_alt, push_name, timestamp}`.
//!
//! Everything the phone or a contact sends is Signal-encrypted from the
//! sender's own identity key with a session started from the companion's
//! uploaded pre-keys (see the `signal` module).
//!
//! Sending (see the `outbox` module): a logged-in client can send 1:1
//! messages. The fake answers what the client asks first (`usync` device
//! lists, contact and LID lookups; pre-key bundles for the recipient's phone
//! and the account's own phone, made up and kept by the fake), acks every
//! `<message>` with `<ack class="message">`, and records it:
//! [`sent_messages`](FakeWhatsApp::sent_messages) /
//! [`wait_sent`](FakeWhatsApp::wait_sent) give its `to`, `id`, `type`,
//! participants and `<enc>` types, and the recipient's copy decrypted
//! ([`SentMessage::text`]). Every number has an account with one device (its
//! phone) unless [`set_not_on_whatsapp`](FakeWhatsApp::set_not_on_whatsapp)
//! says otherwise. Media go to a fake media server reached through
//! [`http_client`](FakeWhatsApp::http_client) (the client's HTTP client);
//! the recorded message then also holds the file it points to, of any kind,
//! decrypted with its caption, name and `ptt` ([`SentMessage::file`]; an
//! image also in [`SentMessage::image`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

mod chats;
mod conn;
mod contacts;
mod faults;
mod history;
mod inbound;
mod iq;
mod keyshare;
mod linking;
mod media;
mod nodes;
mod noise;
mod outbox;
mod paircode;
pub mod phone;
mod receipts;
mod signal;
mod transport;

pub use contacts::PhoneContact;
pub use history::{History, HistoryChat};
pub use inbound::{PhoneMedia, PhoneMediaKind};
pub use media::FakeMediaServer;
pub use outbox::SentMessage;
pub use receipts::{ClientReceipt, ReceiptKind};
pub use transport::FakeTransportFactory;

/// How long the fault scripts wait for the targeted connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The fake server. Cheap to clone: all clones share one server.
#[derive(Clone)]
pub struct FakeWhatsApp {
    inner: Arc<Inner>,
}

impl Default for FakeWhatsApp {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeWhatsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("FakeWhatsApp")
            .field("connections", &st.conns.len())
            .field("accounts", &st.accounts.len())
            .field("offline", &st.offline)
            .finish()
    }
}

pub(crate) struct Inner {
    identity: noise::ServerIdentity,
    state: Mutex<State>,
    /// Woken (notify_waiters) whenever connections or registrations change.
    changed: Notify,
    next_id: AtomicU64,
}

/// A scripted answer for the next login of an account.
#[derive(Debug, Clone)]
pub(crate) struct LoginFailure {
    pub reason: u16,
    pub expire_secs: Option<u64>,
}

pub(crate) struct State {
    pub offline: bool,
    pub qr_refs: usize,
    pub allow_ik: bool,
    pub push_name_as_biz: bool,
    pub key_share: bool,
    pub conns: HashMap<u64, ConnEntry>,
    pub accounts: HashMap<String, Account>,
    pub fail_logins: HashMap<String, LoginFailure>,
    /// What the phone of each number sends its new companions ([`FakeWhatsApp::set_history`]).
    pub histories: HashMap<String, History>,
    /// The phone's address book ([`FakeWhatsApp::set_contacts`]): one batch
    /// per version of `critical_unblock_low`.
    pub contacts: HashMap<String, Vec<Vec<PhoneContact>>>,
    /// Numbers without a WhatsApp account ([`FakeWhatsApp::set_not_on_whatsapp`]).
    pub unregistered: HashSet<String>,
    /// Numbers with a WhatsApp Business account ([`FakeWhatsApp::set_business`]).
    pub businesses: HashSet<String>,
    /// The numbers of each "is this number on WhatsApp" query (`usync` with the `contact`
    /// protocol), in arrival order.
    pub number_checks: Vec<Vec<String>>,
    /// Every `<message>` clients sent, in arrival order.
    pub sent: Vec<SentMessage>,
    /// Every `<receipt>` clients sent, in arrival order.
    pub client_receipts: Vec<receipts::ClientReceipt>,
    /// Encrypted media uploaded to the fake media server, by direct path.
    pub uploads: HashMap<String, Vec<u8>>,
    /// The media server answers every request with 503 ([`FakeWhatsApp::refuse_uploads`]).
    pub uploads_refused: bool,
    /// Nack codes for messages to these numbers ([`FakeWhatsApp::nack_messages_to`]).
    pub nacks: HashMap<String, String>,
    pub connections_opened: u64,
    pub connections_refused: u64,
    pub ik_handshakes: u64,
}

pub(crate) struct ConnEntry {
    pub cmd: mpsc::UnboundedSender<conn::Cmd>,
    pub kind: ConnKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ConnKind {
    /// Noise handshake not finished yet.
    Handshaking,
    /// An unregistered client waiting to be paired.
    Registration {
        refs: Vec<String>,
        noise_pub: [u8; 32],
        pairing: bool,
        bundle: Option<keyshare::DeviceBundle>,
        /// The client's latest phone-number pairing request (`companion_hello`).
        code: Option<Box<paircode::CodeRequest>>,
    },
    /// A registered device logging in.
    #[allow(dead_code)]
    Login {
        phone: String,
        device: u16,
        logged_in: bool,
    },
}

pub(crate) struct Account {
    /// The scripted phone: identity key, LID, push name.
    pub phone: phone::PhoneAccount,
    pub devices: BTreeMap<u16, DeviceRecord>,
    pub next_device: u16,
    pub logins: u64,
    /// The app-state sync key the phone shares with its companions.
    pub app_state_key: keyshare::AppStateKey,
    /// Signal senders writing to this account's companions: its own phone
    /// and the contacts of [`FakeWhatsApp::send_message`], by sender JID.
    pub signal: Signals,
}

/// Signal senders by sender JID (see [`signal`]).
pub(crate) type Signals = Arc<tokio::sync::Mutex<HashMap<String, signal::SignalSender>>>;

#[derive(Debug, Clone)]
pub(crate) struct DeviceRecord {
    pub noise_pub: [u8; 32],
    pub prekeys: usize,
    /// The companion's Signal identity, for the phone's key share.
    pub bundle: Option<keyshare::DeviceBundle>,
    /// The client finished its first full app-state sync (it asked for the
    /// `regular` collection): it has the key, no more shares needed.
    pub bootstrapped: bool,
    /// The push name went out in pair-success. If not, the client redoes its
    /// app-state bootstrap on every login and needs the key share each time.
    pub push_name_sent: bool,
    /// The phone already sent this device its history sync.
    pub history_sent: bool,
    /// The `critical_unblock_low` version this device was last sent.
    pub contacts_sent: u64,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not take the whole fake down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_id(&self) -> String {
        format!("fake.{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn identity(&self) -> &noise::ServerIdentity {
        &self.identity
    }

    pub(crate) fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `cond` holds (checked on every state change) or `timeout`.
    async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.lock());
            }
        }
    }
}

impl FakeWhatsApp {
    /// Creates a fake server. Nothing is spawned until the first connection,
    /// which spawns its task on the tokio runtime the client runs on.
    pub fn new() -> Self {
        // The leaf certificate expires in ~2 years: paired clients cache it and
        // use IK on later connects, which the fake serves.
        let not_after = wacore::time::now_secs().max(0) as u64 + 2 * 365 * 24 * 3600;
        Self {
            inner: Arc::new(Inner {
                identity: noise::ServerIdentity::generate(not_after),
                state: Mutex::new(State {
                    offline: false,
                    qr_refs: 6,
                    allow_ik: true,
                    push_name_as_biz: true,
                    key_share: true,
                    conns: HashMap::new(),
                    accounts: HashMap::new(),
                    fail_logins: HashMap::new(),
                    histories: HashMap::new(),
                    contacts: HashMap::new(),
                    unregistered: HashSet::new(),
                    businesses: HashSet::new(),
                    number_checks: Vec::new(),
                    sent: Vec::new(),
                    client_receipts: Vec::new(),
                    uploads: HashMap::new(),
                    uploads_refused: false,
                    nacks: HashMap::new(),
                    connections_opened: 0,
                    connections_refused: 0,
                    ik_handshakes: 0,
                }),
                changed: Notify::new(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Number of `<ref>`s in each `pair-device` IQ (default 6, like WhatsApp).
    /// The client shows the first for 60 s and each further one for 20 s, then
    /// emits `PairingQrCodesExhausted`; `with_qr_refs(1)` exhausts after 60 s.
    pub fn with_qr_refs(self, n: usize) -> Self {
        self.inner.lock().qr_refs = n.max(1);
        self
    }

    /// Whether IK handshakes are accepted (default true). When false, every IK
    /// hello is answered with XXfallback.
    pub fn with_ik(self, allow: bool) -> Self {
        self.inner.lock().allow_ik = allow;
        self
    }

    /// Whether `scan` passes the push name to the client inside the
    /// `pair-success` (as `<biz name=...>`, the only pairing field the client
    /// turns into its push name). Default true. Without it the client's push
    /// name stays empty: the real source is an encrypted app-state mutation
    /// this fake does not produce.
    pub fn with_push_name_in_pair_success(self, enabled: bool) -> Self {
        self.inner.lock().push_name_as_biz = enabled;
        self
    }

    /// Whether the phone shares its app-state sync key with a new companion
    /// (default true), like a real phone does after pairing: an encrypted
    /// `<message>` sent after the client's first logins, until the client has
    /// completed its initial app-state sync. Without it the client waits 10 s
    /// for the key before that sync, so the first `Connected` after pairing
    /// comes ~10 s late.
    pub fn with_app_state_key_share(self, enabled: bool) -> Self {
        self.inner.lock().key_share = enabled;
        self
    }

    /// The transport factory to hand to the client, as a trait object.
    pub fn transport_factory(&self) -> Arc<dyn whatsapp_rust::transport::TransportFactory> {
        Arc::new(self.factory())
    }

    /// The concrete transport factory (for `BotBuilder::with_transport_factory`,
    /// which wants a value implementing the trait, not an `Arc<dyn ..>`).
    pub fn factory(&self) -> FakeTransportFactory {
        FakeTransportFactory::new(self.inner.clone())
    }

    /// Whether the server is currently simulating "no network".
    pub fn is_offline(&self) -> bool {
        self.inner.lock().offline
    }

    /// Number of open connections (registration, login or mid-handshake).
    pub fn connection_count(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Number of connections ever opened.
    pub fn connections_opened(&self) -> u64 {
        self.inner.lock().connections_opened
    }

    /// Number of connection attempts refused because the fake was offline.
    pub fn refused_connections(&self) -> u64 {
        self.inner.lock().connections_refused
    }

    /// Number of handshakes completed with the IK pattern (a paired client
    /// resuming with the cached server key).
    pub fn ik_handshakes(&self) -> u64 {
        self.inner.lock().ik_handshakes
    }

    /// Waits until `cond` holds, re-checking it whenever a connection opens,
    /// closes, logs in or a device is (un)registered; false on timeout. `cond`
    /// may call any getter of the fake.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&FakeWhatsApp) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(self);
            }
        }
    }

    /// Whether a device of this account is logged in (got `<success>`) on an
    /// open connection.
    pub fn is_connected(&self, phone_digits: &str) -> bool {
        is_logged_in(&self.inner.lock(), phone_digits)
    }

    /// Waits until a device of this account is logged in; false on timeout.
    pub async fn wait_logged_in(&self, phone_digits: &str, timeout: Duration) -> bool {
        self.inner
            .wait_until(timeout, |st| is_logged_in(st, phone_digits))
            .await
    }

    /// How many times devices of this account logged in successfully.
    pub fn login_count(&self, phone_digits: &str) -> u64 {
        self.inner
            .lock()
            .accounts
            .get(phone_digits)
            .map_or(0, |a| a.logins)
    }

    /// Device ids currently registered (paired and not removed) for the account.
    pub fn registered_devices(&self, phone_digits: &str) -> Vec<u16> {
        self.inner
            .lock()
            .accounts
            .get(phone_digits)
            .map(|a| a.devices.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The account's LID user part (`<lid>@lid`), once it exists.
    pub fn lid_of(&self, phone_digits: &str) -> Option<String> {
        self.inner
            .lock()
            .accounts
            .get(phone_digits)
            .map(|a| a.phone.lid.clone())
    }

    fn forget_devices(&self, phone_digits: &str) {
        if let Some(acc) = self.inner.lock().accounts.get_mut(phone_digits) {
            acc.devices.clear();
        }
        self.inner.notify_changed();
    }

    fn send_to_account(&self, phone_digits: &str, make: impl Fn(u64) -> conn::Cmd) -> Vec<u64> {
        let st = self.inner.lock();
        let mut ids = Vec::new();
        for (id, entry) in st.conns.iter() {
            if let ConnKind::Login { phone, .. } = &entry.kind
                && phone == phone_digits
            {
                let _ = entry.cmd.send(make(*id));
                ids.push(*id);
            }
        }
        ids
    }

    async fn wait_closed(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let closed = self
            .inner
            .wait_until(CLOSE_WAIT, |st| {
                ids.iter().all(|id| !st.conns.contains_key(id))
            })
            .await;
        if !closed {
            tracing::warn!("fake-whatsapp: connections {ids:?} did not close in time");
        }
    }
}

fn is_logged_in(st: &State, phone_digits: &str) -> bool {
    st.conns.values().any(|e| {
        matches!(&e.kind, ConnKind::Login { phone, logged_in: true, .. } if phone == phone_digits)
    })
}
