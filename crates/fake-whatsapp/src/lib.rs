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
//! the recorded message then also holds the image it points to, decrypted
//! ([`SentMessage::image`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::sync::{Notify, mpsc, oneshot};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;

mod conn;
mod contacts;
mod history;
mod inbound;
mod iq;
mod keyshare;
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

/// How long [`FakeWhatsApp::scan`] waits for the client's `pair-device-sign`.
const PAIR_REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`FakeWhatsApp::enter_pair_code`] waits for the client's
/// `companion_finish` (it runs a 131 072-round PBKDF2 first).
const COMPANION_FINISH_TIMEOUT: Duration = Duration::from_secs(20);
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

    /// Pairs the client that is showing `qr` with the account `phone_digits`
    /// (created on first use; later scans of the same number add devices to
    /// the same account), like scanning the code with the phone.
    ///
    /// Sends `pair-success`, waits for and verifies the client's
    /// `pair-device-sign`, records the device, then ends the registration
    /// connection with stream error 515 so the client reconnects and logs in.
    pub async fn scan(&self, qr: &str, phone_digits: &str, push_name: &str) -> anyhow::Result<()> {
        if phone_digits.is_empty() || !phone_digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("phone number must be digits only, got {phone_digits:?}");
        }
        let payload = phone::parse_qr(qr).context("parsing QR code")?;

        // Find the registration connection that showed this ref, and claim it.
        let (conn_id, cmd, account, device_id, bundle) = {
            let mut st = self.inner.lock();
            let found = st
                .conns
                .iter_mut()
                .find_map(|(id, entry)| match &mut entry.kind {
                    ConnKind::Registration {
                        refs,
                        noise_pub,
                        pairing,
                        bundle,
                        ..
                    } if refs.contains(&payload.pair_ref) => {
                        Some((*id, entry.cmd.clone(), noise_pub, pairing, bundle.clone()))
                    }
                    _ => None,
                });
            let Some((conn_id, cmd, noise_pub, pairing, bundle)) = found else {
                bail!(
                    "no open registration connection is showing this QR code (expired or already used?)"
                );
            };
            if *noise_pub != payload.noise_pub {
                bail!("QR code noise key does not match the connection that showed it");
            }
            if *pairing {
                bail!("this QR code is already being scanned");
            }
            *pairing = true;

            let (account, device_id, _) = claim_device(&mut st, phone_digits, push_name);
            (conn_id, cmd, account, device_id, bundle)
        };

        let result = self
            .pair(
                conn_id,
                &cmd,
                &account,
                &payload,
                phone_digits,
                device_id,
                bundle,
            )
            .await;
        if result.is_err() {
            // Let the QR be scanned again.
            self.release_registration(conn_id);
        }
        result
    }

    /// The phone links the client that asked for a pairing code for
    /// `phone_digits` (`client.pair_with_code(PairCodeOptions { phone_number, .. })`)
    /// by typing `code` into "Link with phone number", like
    /// [`scan`](Self::scan) does for a QR code.
    ///
    /// Runs the real stage 2: unwraps the companion's ephemeral key with the
    /// code, pushes the `primary_hello` notification, waits for the client's
    /// `companion_finish`, opens its key bundle and derives the same ADV secret
    /// the client derived, then completes the link like a QR scan
    /// (`pair-success`, `pair-device-sign`, stream error 515, login).
    ///
    /// A wrong code is an `Err` and links nothing: the phone cannot open the
    /// key bundle (the client, like the real one, hears nothing and writes the
    /// code off after its one-minute timeout; a later call with the right code
    /// still works while the client allows retries: 3 per code). Takes a
    /// second or so: each side runs a 131 072-round PBKDF2.
    pub async fn enter_pair_code(
        &self,
        phone_digits: &str,
        code: &str,
        push_name: &str,
    ) -> anyhow::Result<()> {
        if phone_digits.is_empty() || !phone_digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("phone number must be digits only, got {phone_digits:?}");
        }
        let code = code.trim().to_ascii_uppercase();
        if !wacore::pair_code::PairCodeUtils::validate_code(&code) {
            bail!("{code:?} is not a pairing code (8 characters of 1-9, A-Z without I, O, U)");
        }

        // Find the newest registration connection that asked for a code for
        // this number, and claim it.
        let (conn_id, cmd, noise_pub, bundle, request) = {
            let mut st = self.inner.lock();
            let found = st
                .conns
                .iter_mut()
                .filter_map(|(id, entry)| match &mut entry.kind {
                    ConnKind::Registration {
                        noise_pub,
                        pairing,
                        bundle,
                        code: Some(request),
                        ..
                    } if request.phone == phone_digits => Some((
                        *id,
                        entry.cmd.clone(),
                        *noise_pub,
                        pairing,
                        bundle.clone(),
                        (**request).clone(),
                    )),
                    _ => None,
                })
                .max_by_key(|found| found.0);
            let Some((conn_id, cmd, noise_pub, pairing, bundle, request)) = found else {
                bail!(
                    "no open registration connection asked for a pairing code for {phone_digits}"
                );
            };
            if *pairing {
                bail!("that client is already being linked");
            }
            *pairing = true;
            (conn_id, cmd, noise_pub, bundle, request)
        };

        let result = self
            .link_with_code(
                conn_id,
                &cmd,
                noise_pub,
                bundle,
                request,
                &code,
                phone_digits,
                push_name,
            )
            .await;
        if result.is_err() {
            self.release_registration(conn_id);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn link_with_code(
        &self,
        conn_id: u64,
        cmd: &mpsc::UnboundedSender<conn::Cmd>,
        noise_pub: [u8; 32],
        bundle: Option<keyshare::DeviceBundle>,
        request: paircode::CodeRequest,
        code: &str,
        phone_digits: &str,
        push_name: &str,
    ) -> anyhow::Result<()> {
        if request.companion_noise_pub != noise_pub {
            bail!("companion_hello names another noise key than the connection's");
        }
        // PBKDF2: off the async threads.
        let (request, session) = {
            let code = code.to_owned();
            tokio::task::spawn_blocking(move || {
                let session = paircode::PhoneCodeSession::start(&request, &code);
                (request, session)
            })
            .await
            .context("the phone's code task failed")?
        };
        let session = session?;

        // The account exists from here on, as when a phone scans a QR; a
        // failed link leaves no device (and no account it created).
        let (account, device_id, created) =
            claim_device(&mut self.inner.lock(), phone_digits, push_name);
        let outcome = async {
            let (tx, rx) = oneshot::channel();
            let hello = session.primary_hello_node(&account, &request, &self.inner.next_id());
            cmd.send(conn::Cmd::SendAwaitFinish {
                node: hello,
                reply: tx,
            })
            .map_err(|_| anyhow!("the registration connection closed"))?;
            let finish = match tokio::time::timeout(COMPANION_FINISH_TIMEOUT, rx).await {
                Err(_) => bail!(
                    "the client did not answer primary_hello within {COMPANION_FINISH_TIMEOUT:?}"
                ),
                Ok(Err(_)) => {
                    bail!("the registration connection closed before companion_finish")
                }
                Ok(Ok(node)) => node,
            };
            let payload = session.open_finish(&account, &request, noise_pub, &finish)?;
            self.pair(
                conn_id,
                cmd,
                &account,
                &payload,
                phone_digits,
                device_id,
                bundle,
            )
            .await
        }
        .await;
        if outcome.is_err() && created {
            let mut st = self.inner.lock();
            if st
                .accounts
                .get(phone_digits)
                .is_some_and(|a| a.devices.is_empty())
            {
                st.accounts.remove(phone_digits);
            }
        }
        outcome
    }

    /// Makes a registration connection claimable again after a failed link.
    fn release_registration(&self, conn_id: u64) {
        let mut st = self.inner.lock();
        if let Some(ConnEntry {
            kind: ConnKind::Registration { pairing, .. },
            ..
        }) = st.conns.get_mut(&conn_id)
        {
            *pairing = false;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pair(
        &self,
        conn_id: u64,
        cmd: &mpsc::UnboundedSender<conn::Cmd>,
        account: &phone::PhoneAccount,
        payload: &phone::QrPayload,
        phone_digits: &str,
        device_id: u16,
        bundle: Option<keyshare::DeviceBundle>,
    ) -> anyhow::Result<()> {
        let iq_id = self.inner.next_id();
        let node = phone::pair_success_node(account, payload, device_id, &iq_id)
            .context("building pair-success")?;

        let (tx, rx) = oneshot::channel();
        cmd.send(conn::Cmd::SendAwait {
            node,
            id: iq_id.clone(),
            reply: tx,
        })
        .map_err(|_| anyhow!("the registration connection closed"))?;
        let reply = match tokio::time::timeout(PAIR_REPLY_TIMEOUT, rx).await {
            Err(_) => bail!("the client did not answer pair-success within {PAIR_REPLY_TIMEOUT:?}"),
            Ok(Err(_)) => bail!("the registration connection closed before the client answered"),
            Ok(Ok(reply)) => reply,
        };
        if reply.attrs().optional_string("type").as_deref() == Some("error") {
            let err = reply.get_optional_child("error");
            let code = err
                .and_then(|e| e.attrs().optional_string("code").map(|c| c.to_string()))
                .unwrap_or_default();
            let text = err
                .and_then(|e| e.attrs().optional_string("text").map(|c| c.to_string()))
                .unwrap_or_default();
            bail!("the client rejected pair-success: {code} {text}");
        }
        phone::verify_sign_reply(account, payload, &reply)
            .context("verifying the client's pair-device-sign")?;

        {
            let mut st = self.inner.lock();
            if let Some(acc) = st.accounts.get_mut(phone_digits) {
                acc.devices.insert(
                    device_id,
                    DeviceRecord {
                        noise_pub: payload.noise_pub,
                        prekeys: 0,
                        bundle,
                        bootstrapped: false,
                        push_name_sent: account.send_biz_name && !account.push_name.is_empty(),
                        history_sent: false,
                        contacts_sent: 0,
                    },
                );
            }
        }
        tracing::info!(
            phone = phone_digits,
            device_id,
            "fake-whatsapp: device paired"
        );
        self.inner.notify_changed();

        // Like the real server: end the registration stream, the client
        // reconnects at once and logs in with its new identity.
        let _ = cmd.send(conn::Cmd::StreamErrorClose {
            node: stream_error_code(515),
            delay: Duration::from_millis(100),
        });
        let _ = self
            .inner
            .wait_until(CLOSE_WAIT, |st| !st.conns.contains_key(&conn_id))
            .await;
        Ok(())
    }

    /// Abruptly closes every connection of this account (as if the network
    /// dropped). The client emits `Disconnected` and reconnects by itself.
    pub async fn drop_connections(&self, phone_digits: &str) {
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::Drop);
        self.wait_closed(&ids).await;
    }

    /// Abruptly closes every connection, registered or not.
    pub async fn drop_all_connections(&self) {
        let ids: Vec<(u64, mpsc::UnboundedSender<conn::Cmd>)> = self
            .inner
            .lock()
            .conns
            .iter()
            .map(|(id, e)| (*id, e.cmd.clone()))
            .collect();
        for (_, cmd) in &ids {
            let _ = cmd.send(conn::Cmd::Drop);
        }
        let ids: Vec<u64> = ids.into_iter().map(|(id, _)| id).collect();
        self.wait_closed(&ids).await;
    }

    /// Sends `<stream:error code="..."/>` to the account's connections and
    /// closes them. 401 and 516 mean "logged out": the client emits
    /// `LoggedOut` and the fake forgets the account's devices. 515 makes the
    /// client reconnect at once; 503 reconnects with backoff.
    pub async fn stream_error(&self, phone_digits: &str, code: u16) {
        if matches!(code, 401 | 516) {
            self.forget_devices(phone_digits);
        }
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_code(code),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// The phone unlinked the device: `<stream:error><conflict
    /// type="device_removed"/></stream:error>` (client: `LoggedOut`), and the
    /// fake forgets the account's devices so they cannot log in again.
    pub async fn device_removed(&self, phone_digits: &str) {
        self.forget_devices(phone_digits);
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_conflict("device_removed"),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// Another session took over: `<stream:error><conflict type="replaced"/>`
    /// (client: `StreamReplaced`, no auto-reconnect). The device stays
    /// registered.
    pub async fn replaced(&self, phone_digits: &str) {
        let ids = self.send_to_account(phone_digits, |_| conn::Cmd::StreamErrorClose {
            node: stream_error_conflict("replaced"),
            delay: Duration::ZERO,
        });
        self.wait_closed(&ids).await;
    }

    /// Makes the next login of this account fail with
    /// `<failure reason=".."/>`: 402 (temporary ban; `code="101"` and `expire`
    /// seconds, default 3600) → `TemporaryBan`, 405 → `ClientOutdated`,
    /// 401/403/406 → `LoggedOut { on_connect: true }`, anything else →
    /// `ConnectFailure`. One-shot: the script is consumed by that login.
    /// Existing connections are not touched; combine with
    /// [`drop_connections`](Self::drop_connections) to force a new login.
    pub fn fail_logins(&self, phone_digits: &str, reason: u16, expire_secs: Option<u64>) {
        self.inner.lock().fail_logins.insert(
            phone_digits.to_string(),
            LoginFailure {
                reason,
                expire_secs,
            },
        );
    }

    /// Simulates losing the network: while offline, `create_transport` fails,
    /// and going offline also drops every open connection.
    pub fn set_offline(&self, offline: bool) {
        let cmds: Vec<_> = {
            let mut st = self.inner.lock();
            st.offline = offline;
            if offline {
                st.conns.values().map(|e| e.cmd.clone()).collect()
            } else {
                Vec::new()
            }
        };
        for cmd in cmds {
            let _ = cmd.send(conn::Cmd::Drop);
        }
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

    /// History the phone sends to a device of this number right after it
    /// links (scan or pairing code), once per device, like WhatsApp's
    /// initial bootstrap: a `HISTORY_SYNC_NOTIFICATION` protocol message from
    /// the account's own phone, `INITIAL_BOOTSTRAP`, with the zlib'd
    /// `HistorySync` inline (no media download). It goes out on the device's
    /// first login, right after the app-state key share; the client answers
    /// with a `hist_sync` receipt and emits `Event::HistorySync`.
    ///
    /// Devices that already had their first login (with or without a
    /// history) do not get it: use [`send_history`](Self::send_history) for
    /// those.
    pub fn set_history(&self, phone_digits: &str, history: History) {
        self.inner
            .lock()
            .histories
            .insert(phone_digits.to_string(), history);
    }

    /// The phone's address book, as app state: the next time a device of
    /// this number syncs `critical_unblock_low` (its login bootstrap, or a
    /// `MajorSyncTask::AppStateSync { name: CriticalUnblockLow, .. }`), it
    /// gets one `SET ["contact", jid]` mutation per contact (a
    /// `ContactAction`), encrypted and MAC'd with the app-state key the phone
    /// shares, and the client emits `Event::ContactUpdate` for each.
    ///
    /// Each call adds one version of the collection holding just these
    /// contacts (a contact with a JID set before overwrites the earlier one);
    /// devices that already synced get only the newer versions. Calls before
    /// the number is linked are fine. An empty list changes nothing.
    pub fn set_contacts(&self, phone_digits: &str, contacts: Vec<PhoneContact>) {
        if contacts.is_empty() {
            return;
        }
        self.inner
            .lock()
            .contacts
            .entry(phone_digits.to_string())
            .or_default()
            .push(contacts);
    }

    /// Sends `history` now to every connected (logged-in) device of the
    /// number, whether or not it got one before. `Err` if no device of the
    /// number is connected or a message cannot be built.
    pub async fn send_history(&self, phone_digits: &str, history: History) -> anyhow::Result<()> {
        let plaintext = history::notification_plaintext(&history)?;
        let sent = self
            .push_to_devices(phone_digits, |account, signals, device, bundle| {
                let plaintext = plaintext.clone();
                async move {
                    signal::phone_message(&account, &signals, device, &bundle, &plaintext).await
                }
            })
            .await?;
        let mut st = self.inner.lock();
        if let Some(acc) = st.accounts.get_mut(phone_digits) {
            for device in sent {
                if let Some(d) = acc.devices.get_mut(&device) {
                    d.history_sent = true;
                }
            }
        }
        Ok(())
    }

    /// A contact (`from_jid`, e.g. `"966500000001@s.whatsapp.net"` or
    /// `"123456789012345@lid"`) sends a text to the account; every connected
    /// device of `phone_digits` receives it with this timestamp (unix
    /// seconds, the stanza's `t`) and the sender's push name (`notify`).
    ///
    /// Each contact JID is its own Signal user: an identity key of its own
    /// and one session per companion, started from the companion's uploaded
    /// pre-keys (`pkmsg`). When the number's [`History`] maps the contact's
    /// LID and phone number (`lid_pn`), the stanza carries the other one too
    /// (`sender_lid` for a phone-number sender, `sender_pn` for a LID sender),
    /// so the client's `info.source.sender_alt` is set.
    ///
    /// `Err` if `from_jid` is not a user JID or no device is connected.
    pub async fn send_message(
        &self,
        phone_digits: &str,
        from_jid: &str,
        push_name: &str,
        text: &str,
        timestamp: i64,
    ) -> anyhow::Result<()> {
        let msg = waproto::whatsapp::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        };
        let id = signal::message_id();
        self.deliver(
            phone_digits,
            from_jid,
            push_name,
            msg,
            "text",
            &id,
            timestamp,
        )
        .await
    }

    /// Encrypts `msg` from `from_jid` to every connected companion of the account, as
    /// [`Self::send_message`] describes, under the stanza `type` and id given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deliver(
        &self,
        phone_digits: &str,
        from_jid: &str,
        push_name: &str,
        msg: waproto::whatsapp::Message,
        msg_type: &str,
        id: &str,
        timestamp: i64,
    ) -> anyhow::Result<()> {
        let from: wacore_binary::Jid = from_jid
            .parse()
            .map_err(|e| anyhow!("bad sender JID {from_jid:?}: {e:?}"))?;
        if !(from.is_pn() || from.is_lid()) || from.device != 0 {
            bail!("the sender must be a user JID (…@s.whatsapp.net or …@lid), got {from_jid:?}");
        }
        let from = from.to_string();
        let alt = self.inner.lock().histories.get(phone_digits).and_then(|h| {
            h.lid_pn.iter().find_map(|(lid, pn)| {
                if *pn == from {
                    Some(("sender_lid", lid.clone()))
                } else if *lid == from {
                    Some(("sender_pn", pn.clone()))
                } else {
                    None
                }
            })
        });
        let plaintext = wacore::messages::MessageUtils::pad_message_v2(
            waproto::buffa::Message::encode_to_vec(&msg),
        );
        let mut extra = vec![("notify", push_name.to_string())];
        extra.extend(alt);
        let (id, msg_type) = (id.to_string(), msg_type.to_string());
        self.push_to_devices(phone_digits, |account, signals, device, bundle| {
            let plaintext = plaintext.clone();
            let from = from.clone();
            let extra = extra.clone();
            let (id, msg_type) = (id.clone(), msg_type.clone());
            async move {
                let enc = signal::encrypt_from(
                    &signals,
                    &from,
                    signal::SignalSender::generate,
                    &account.phone,
                    device,
                    &bundle,
                    &plaintext,
                )
                .await?;
                Ok(signal::enc_message_node(
                    &from, &id, &msg_type, timestamp, &extra, enc,
                ))
            }
        })
        .await?;
        Ok(())
    }

    /// The HTTP client to hand to the client (`BotBuilder::with_http_client`):
    /// it reaches the fake media server, where uploads land (the image of a
    /// [`SentMessage`] is read back from there), and nothing else.
    pub fn http_client(&self) -> FakeMediaServer {
        FakeMediaServer {
            inner: self.inner.clone(),
        }
    }

    /// While true, the media server answers every request with 503.
    pub fn refuse_uploads(&self, refuse: bool) {
        self.inner.lock().uploads_refused = refuse;
    }

    /// Messages to `to_digits` are refused: their `<ack>` carries
    /// `error="<code>"` (a nack; e.g. 404 no such recipient, 463 missing
    /// privacy token, 479 malformed stanza). `None` accepts them again. They
    /// are still recorded.
    pub fn nack_messages_to(&self, to_digits: &str, code: Option<u16>) {
        let mut st = self.inner.lock();
        match code {
            Some(c) => st.nacks.insert(to_digits.to_string(), c.to_string()),
            None => st.nacks.remove(to_digits),
        };
    }

    /// Makes `phone_digits` a number without a WhatsApp account: lookups
    /// (`usync` devices and contact) say so, and pre-key fetches for it fail
    /// with 406. Every other number has an account with one device (its
    /// phone, device 0), whose pre-key bundle the fake makes up and keeps the
    /// private half of, so it can read what clients send it.
    pub fn set_not_on_whatsapp(&self, phone_digits: &str) {
        self.inner
            .lock()
            .unregistered
            .insert(phone_digits.to_string());
    }

    /// Makes `phone_digits` a WhatsApp Business account: `usync` answers carry
    /// `<business/>` for it.
    pub fn set_business(&self, phone_digits: &str) {
        self.inner
            .lock()
            .businesses
            .insert(phone_digits.to_string());
    }

    /// The numbers (digits) of every "is this number on WhatsApp" query clients sent
    /// (`usync` with the `contact` protocol), one list per query, in arrival order.
    pub fn number_checks(&self) -> Vec<Vec<String>> {
        self.inner.lock().number_checks.clone()
    }

    /// Every `<message>` stanza clients sent so far, in arrival order (each
    /// was acknowledged with `<ack class="message">`), with the recipient's
    /// copy decrypted when the fake holds its keys.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.inner.lock().sent.clone()
    }

    /// Waits until a client sent a message with this id; `None` on timeout.
    pub async fn wait_sent(&self, id: &str, timeout: Duration) -> Option<SentMessage> {
        let found = |st: &State| st.sent.iter().rev().find(|m| m.id == id).cloned();
        let mut hit = None;
        self.inner
            .wait_until(timeout, |st| {
                hit = found(st);
                hit.is_some()
            })
            .await;
        hit
    }

    /// Builds a node per logged-in device of the account with `make` and
    /// pushes it down that device's connection; the devices reached.
    async fn push_to_devices<F, Fut>(&self, phone_digits: &str, make: F) -> anyhow::Result<Vec<u16>>
    where
        F: Fn(phone::PhoneAccount, Signals, u16, keyshare::DeviceBundle) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Node>>,
    {
        let (account, signals, targets) = {
            let st = self.inner.lock();
            let acc = st
                .accounts
                .get(phone_digits)
                .with_context(|| format!("no account {phone_digits}"))?;
            let targets: Vec<(
                u16,
                mpsc::UnboundedSender<conn::Cmd>,
                Option<keyshare::DeviceBundle>,
            )> = st
                .conns
                .values()
                .filter_map(|e| match &e.kind {
                    ConnKind::Login {
                        phone,
                        device,
                        logged_in: true,
                    } if phone == phone_digits => Some((
                        *device,
                        e.cmd.clone(),
                        acc.devices.get(device).and_then(|d| d.bundle.clone()),
                    )),
                    _ => None,
                })
                .collect();
            (acc.phone.clone(), acc.signal.clone(), targets)
        };
        if targets.is_empty() {
            bail!("no device of {phone_digits} is connected");
        }
        let mut sent = Vec::new();
        for (device, cmd, bundle) in targets {
            let bundle = bundle.with_context(|| {
                format!("device {device} of {phone_digits} has no known Signal identity")
            })?;
            let node = make(account.clone(), signals.clone(), device, bundle).await?;
            cmd.send(conn::Cmd::Send(node))
                .map_err(|_| anyhow!("the connection of device {device} closed"))?;
            sent.push(device);
        }
        Ok(sent)
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

/// The account `phone_digits` (created on first use, then `created` is true)
/// with `push_name`, and the device id its next companion gets.
fn claim_device(
    st: &mut State,
    phone_digits: &str,
    push_name: &str,
) -> (phone::PhoneAccount, u16, bool) {
    let push_name_as_biz = st.push_name_as_biz;
    let created = !st.accounts.contains_key(phone_digits);
    let account = st
        .accounts
        .entry(phone_digits.to_string())
        .or_insert_with(|| Account {
            phone: phone::PhoneAccount::new(phone_digits, push_name),
            devices: BTreeMap::new(),
            next_device: 1,
            logins: 0,
            app_state_key: keyshare::AppStateKey::generate(),
            signal: Signals::default(),
        });
    account.phone.push_name = push_name.to_string();
    account.phone.send_biz_name = push_name_as_biz;
    let device_id = account.next_device;
    account.next_device = account.next_device.wrapping_add(1).max(1);
    (account.phone.clone(), device_id, created)
}

fn is_logged_in(st: &State, phone_digits: &str) -> bool {
    st.conns.values().any(|e| {
        matches!(&e.kind, ConnKind::Login { phone, logged_in: true, .. } if phone == phone_digits)
    })
}

fn stream_error_code(code: u16) -> Node {
    NodeBuilder::new("stream:error")
        .attr("code", code.to_string())
        .build()
}

fn stream_error_conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict")
            .attr("type", kind.to_string())
            .build()])
        .build()
}
