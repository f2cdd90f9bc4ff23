//! The real engine: one `whatsapp-rust` client per session, speaking WhatsApp Web's
//! multi-device protocol.
//!
//! Each session keeps its device (keys, identity, Signal sessions) in its own SQLite file
//! under `<data-dir>/whatsapp/<session_id>/`: the library's store holds exactly one device,
//! and several pools on one file would fight for its write lock. A `linked` marker beside
//! it says the phone accepted the link, so a restart knows which sessions reconnect by
//! themselves without opening every store.
//!
//! The library reports through events; a per-client pump reads them from one ordered
//! channel and turns them into [`EngineEvent`]s for the session actor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse, UreqHttpClient};
use whatsapp_rust::media::ImageOptions;
use whatsapp_rust::pair_code::{PairCodeOptions, PairError};
use whatsapp_rust::request::IqError;
use whatsapp_rust::send::{SendError, SendOptions};
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::sync_task::MajorSyncTask;
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::events::{
    ConnectFailureReason, Event, EventHandler, EventInterest, EventKind, InboundMessage,
    LazyHistorySync,
};
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::appstate::patch_decode::WAPatchName;
use whatsapp_rust::wacore::pair_code::PairCodeError;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, ClientError, Jid};

use super::{
    ClientStart, ContactSource, Engine, EngineClient, EngineError, EngineEvent, IncomingMessage,
    OutgoingImage, OutgoingMessage,
};
use crate::clock::SharedClock;
use crate::domain::text::phone_name_opt;
use crate::domain::{PhoneNumber, SessionId};
use crate::files;
use crate::store::CachedContact;
use crate::store::prelude::*;

/// The WhatsApp Web version the library itself ships with; used when the live one cannot
/// be fetched (offline start), so a session can still try to connect.
const FALLBACK_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);
const VERSION_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
const VERSION_RETRY: Duration = Duration::from_secs(600);
/// How long a stop gives the library to flush and close, and then its task to end, before
/// aborting it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longer than every bounded step of a stop together.
const STOP_WAIT: Duration = Duration::from_secs(25);
/// How long a logout waits for WhatsApp to confirm the unlink.
const LOGOUT_GRACE: Duration = Duration::from_secs(10);
/// A logout on a dropped connection waits this long for the reconnect, to tell the phone.
const LOGOUT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Neither a QR code nor a connection this long after trying: report it.
const NO_PROGRESS_AFTER: Duration = Duration::from_secs(30);
const WATCHDOG_TICK: Duration = Duration::from_secs(5);
/// A fetch waits this long for WhatsApp's contacts snapshot, and for the cache to catch up.
const APP_STATE_WAIT: Duration = Duration::from_secs(20);
/// A send waits this long for the recipient's devices, and for the encrypted message to go
/// out: the library's own IQ limit is 75 s, longer than an outbox should hold a session.
const SEND_WAIT: Duration = Duration::from_secs(30);
/// How long WhatsApp has to acknowledge a message once it left: without the ack nobody
/// knows whether the server took it, and the caller sends it again under the same id.
const ACK_WAIT: Duration = Duration::from_secs(20);
/// Encrypting and uploading an image of the largest size on a slow uplink.
const UPLOAD_WAIT: Duration = Duration::from_secs(120);
/// WhatsApp refuses images above 16 MB; saying so up front spares a useless upload.
const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
const STORE_FILE: &str = "device.db";
const LINKED_MARKER: &str = "linked";

/// Knobs that tests (and only tests) turn: `Application` takes them from its builder, never
/// from a flag a user could set.
#[derive(Clone)]
pub struct WhatsAppOptions {
    /// Where connections go; `None` is WhatsApp's own websocket endpoint.
    pub transport: Option<Arc<dyn TransportFactory>>,
    /// Where HTTP requests go (media uploads, the version fetch); `None` is the internet.
    pub http: Option<Arc<dyn HttpClient>>,
    /// A fixed WhatsApp Web version instead of fetching the current one once per process.
    pub version: Option<(u32, u32, u32)>,
    /// A connection attempt that takes longer than this counts as failed.
    pub connect_timeout: Duration,
}

impl Default for WhatsAppOptions {
    fn default() -> Self {
        Self {
            transport: None,
            http: None,
            version: None,
            // Below the library's own 20 s limit, so our failure report comes first.
            connect_timeout: Duration::from_secs(12),
        }
    }
}

impl std::fmt::Debug for WhatsAppOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppOptions")
            .field("custom_transport", &self.transport.is_some())
            .field("custom_http", &self.http.is_some())
            .field("version", &self.version)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

#[derive(Clone)]
pub struct WhatsAppEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    dir: PathBuf,
    transport: Arc<dyn TransportFactory>,
    http: Arc<dyn HttpClient>,
    pinned_version: Option<(u32, u32, u32)>,
    /// Resolved once per process and shared by every session.
    version: tokio::sync::Mutex<VersionState>,
    connect_timeout: Duration,
    /// Where what WhatsApp says about contacts is kept as it arrives.
    store: Arc<dyn Database>,
    clock: SharedClock,
}

impl WhatsAppEngine {
    pub fn new(
        data_dir: &Path,
        options: WhatsAppOptions,
        store: Arc<dyn Database>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("whatsapp");
        files::create_private_dir_all(data_dir)
            .and_then(|()| files::own_private_dir(&dir))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the credentials folder {}: {e}",
                    dir.display()
                )
            })?;
        remove_unlinked(&dir);
        let transport = options.transport.unwrap_or_else(|| {
            Arc::new(whatsapp_rust::transport::TokioWebSocketTransportFactory::new())
        });
        Ok(Self {
            inner: Arc::new(EngineInner {
                dir,
                transport,
                http: options
                    .http
                    .unwrap_or_else(|| Arc::new(UreqHttpClient::new())),
                pinned_version: options.version,
                version: tokio::sync::Mutex::new(VersionState::Unknown),
                connect_timeout: options.connect_timeout,
                store,
                clock,
            }),
        })
    }

    fn session_dir(&self, id: &SessionId) -> PathBuf {
        self.inner.dir.join(id.as_str())
    }

    /// The current WhatsApp Web version, fetched once per process and shared. A failed fetch
    /// falls back to the built-in version and is tried again by a later start, at most every
    /// few minutes, so one offline boot does not pin every session to an old version.
    async fn version(&self) -> (u32, u32, u32) {
        if let Some(v) = self.inner.pinned_version {
            return v;
        }
        let mut state = self.inner.version.lock().await;
        match *state {
            VersionState::Fetched(v) => return v,
            VersionState::FailedAt(at) if at.elapsed() < VERSION_RETRY => return FALLBACK_VERSION,
            _ => {}
        }
        let http = self.inner.http.clone();
        let fetched = tokio::time::timeout(
            VERSION_FETCH_TIMEOUT,
            whatsapp_rust::version::fetch_latest_app_version(&http),
        )
        .await;
        let failure = match fetched {
            Ok(Ok(v)) => {
                tracing::info!("ℹ️ WhatsApp Web version {}.{}.{}", v.0, v.1, v.2);
                *state = VersionState::Fetched(v);
                return v;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "timed out".to_string(),
        };
        let (p, s, t) = FALLBACK_VERSION;
        tracing::warn!(
            "⚠️ Cannot fetch the current WhatsApp Web version ({failure}); using the built-in \
             {p}.{s}.{t}"
        );
        *state = VersionState::FailedAt(tokio::time::Instant::now());
        FALLBACK_VERSION
    }
}

enum VersionState {
    Unknown,
    Fetched((u32, u32, u32)),
    FailedAt(tokio::time::Instant),
}

#[async_trait]
impl Engine for WhatsAppEngine {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    async fn start(&self, start: ClientStart) -> Result<Arc<dyn EngineClient>, EngineError> {
        let dir = self.session_dir(&start.session_id);
        files::own_private_dir_async(&dir).await.map_err(|e| {
            EngineError::Failed(format!("cannot create the credentials folder: {e}"))
        })?;
        let client = Arc::new(WaClient {
            session_id: start.session_id.clone(),
            dir,
            engine: self.clone(),
            input: Mutex::new(None),
            lib: Mutex::new(None),
            acks: Arc::new(AckWaiters::default()),
            stop: CancellationToken::new(),
            ended: AtomicBool::new(false),
            ended_notify: Notify::new(),
        });
        // A root span: created inside the actor's own `session` span, it would show twice.
        let span = tracing::info_span!(parent: None, "session", session.id = %start.session_id);
        tokio::spawn(run_client(self.clone(), client.clone(), start, span));
        Ok(client)
    }

    async fn has_credentials(&self, session_id: &SessionId) -> bool {
        tokio::fs::try_exists(self.session_dir(session_id).join(LINKED_MARKER))
            .await
            .unwrap_or(false)
    }

    async fn forget(&self, session_id: &SessionId) -> Result<(), EngineError> {
        remove_dir(&self.session_dir(session_id)).await
    }
}

/// Device files of sessions that never got linked are of no use after a restart (no one can
/// scan their old QR codes); they would only pile up.
fn remove_unlinked(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir()
            && !path.join(LINKED_MARKER).exists()
            && let Err(e) = std::fs::remove_dir_all(&path)
        {
            tracing::warn!(
                "⚠️ Cannot remove unlinked device files {}: {e}",
                path.display()
            );
        }
    }
}

async fn remove_dir(dir: &Path) -> Result<(), EngineError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Failed(format!(
            "cannot delete the credentials: {e}"
        ))),
    }
}

/// One session's client as the actor sees it.
struct WaClient {
    session_id: SessionId,
    dir: PathBuf,
    engine: WhatsAppEngine,
    /// The pump's input, for a fetch to wait until everything received so far is cached.
    input: Mutex<Option<mpsc::UnboundedSender<Input>>>,
    /// Set once the library client is built; `None` while starting.
    lib: Mutex<Option<Arc<Client>>>,
    /// Sends waiting for WhatsApp's ack; the library's event handler (a [`Forwarder`]) holds
    /// the other end and answers them.
    acks: Arc<AckWaiters>,
    /// Cancelled when someone asks the client to stop; the client task then disconnects
    /// and ends by itself, whatever it was doing.
    stop: CancellationToken,
    /// The client task is over, for whatever reason.
    ended: AtomicBool,
    ended_notify: Notify,
}

impl WaClient {
    fn lib(&self) -> Option<Arc<Client>> {
        self.lib.lock().ok().and_then(|g| g.clone())
    }

    fn set_lib(&self, client: Arc<Client>) {
        if let Ok(mut g) = self.lib.lock() {
            *g = Some(client);
        }
    }

    fn mark_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.ended_notify.notify_waiters();
    }

    async fn wait_ended(&self, limit: Duration) -> bool {
        let notified = self.ended_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.ended.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::timeout(limit, notified).await.is_ok()
    }

    /// Returns once the pump has cached every event received before this call.
    async fn cached_so_far(&self) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .input
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|i| i.send(Input::Barrier(tx)).is_ok()))
            .unwrap_or(false);
        if !sent {
            return Err(EngineError::ClientGone);
        }
        match tokio::time::timeout(APP_STATE_WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EngineError::ClientGone),
            Err(_) => Err(EngineError::Failed(
                "contacts received from WhatsApp are still being saved; start the fetch again"
                    .into(),
            )),
        }
    }

    /// Asks the client task to end and waits for it: every step of its stop is bounded, so
    /// this returns with the task gone (and its files released) unless something is badly
    /// wrong, which is logged.
    async fn shut_down(&self) {
        self.stop.cancel();
        if !self.wait_ended(STOP_WAIT).await {
            tracing::error!(
                "❌ WhatsApp client of session {} did not stop within {} s",
                self.session_id,
                STOP_WAIT.as_secs()
            );
        }
    }
}

#[async_trait]
impl EngineClient for WaClient {
    fn is_alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst)
    }

    async fn read_contacts(&self) -> Result<Box<dyn ContactSource>, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        // A fresh full snapshot of the contacts collection re-sends every saved name; bounded,
        // as a phone that does not answer must not hold the fetch.
        let resync = lib.process_sync_task(MajorSyncTask::AppStateSync {
            name: WAPatchName::CriticalUnblockLow,
            full_sync: true,
        });
        if tokio::time::timeout(APP_STATE_WAIT, resync).await.is_err() {
            tracing::warn!(
                "⚠️ Contacts snapshot of session {} took over {} s; using what is cached",
                self.session_id,
                APP_STATE_WAIT.as_secs()
            );
        }
        self.cached_so_far().await?;
        let mut contacts = self
            .engine
            .inner
            .store
            .cached_contacts(&self.session_id)
            .await
            .map_err(|e| EngineError::Failed(format!("cannot read the contact cache: {e:#}")))?;
        // LID chats our cache could not map: the library may have learned the number since
        // (from a message, a device list), in its own LID store.
        for c in contacts
            .iter_mut()
            .filter(|c| c.pn_jid.is_none() && is_lid(&c.jid))
        {
            if let Ok(jid) = c.jid.parse::<whatsapp_rust::Jid>()
                && let Ok(Some(entry)) = lib.get_lid_pn_entry(&jid).await
            {
                c.pn_jid = Some(format!("{}@s.whatsapp.net", entry.phone_number));
            }
        }
        let own = [lib.pn(), lib.lid()]
            .into_iter()
            .flatten()
            .map(|j| format!("{}@{}", j.user, j.server))
            .collect();
        Ok(Box::new(CachedSource {
            contacts: contacts.into(),
            own,
        }))
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let mut unlinked_on_phone = false;
        if let Some(lib) = self.lib()
            && self.is_alive()
        {
            // remove-companion only goes out on a live connection: give a reconnect a moment.
            if !lib.is_connected() {
                let _ = lib.wait_for_connected(LOGOUT_CONNECT_WAIT).await;
            }
            unlinked_on_phone = lib.is_connected();
            if tokio::time::timeout(LOGOUT_GRACE, lib.logout())
                .await
                .is_err()
            {
                unlinked_on_phone = false;
                tracing::warn!(
                    "⚠️ WhatsApp did not confirm the unlink of session {} in time",
                    self.session_id
                );
            }
        }
        self.shut_down().await;
        remove_dir(&self.dir).await?;
        if unlinked_on_phone {
            Ok(())
        } else {
            Err(EngineError::Failed(
                "WhatsApp could not be reached, so the phone may still list this device: remove \
                 it under WhatsApp > Linked devices. Its credentials are deleted here."
                    .into(),
            ))
        }
    }

    async fn stop(&self) {
        self.shut_down().await;
    }

    async fn pair_code(&self, phone: &PhoneNumber) -> Result<String, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        let options = PairCodeOptions {
            phone_number: phone.digits().to_string(),
            ..Default::default()
        };
        lib.pair_with_code(options).await.map_err(pair_error)
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<String, EngineError> {
        let lib = self.connected_lib()?;
        if message.id.trim().is_empty() {
            return Err(EngineError::Invalid("the message has no id".into()));
        }
        let text = message.text.clone().filter(|t| !t.trim().is_empty());
        if let Some(image) = &message.image {
            check_image(image)?;
        } else if text.is_none() {
            return Err(EngineError::Invalid(
                "the message has neither text nor an image".into(),
            ));
        }
        let to = Jid::pn(message.to.digits());
        self.check_recipient(&lib, &to, message).await?;
        let content = match &message.image {
            Some(image) => self.image_content(&lib, image, text).await?,
            None => wa::Message {
                conversation: text,
                ..Default::default()
            },
        };
        // Registered before the stanza leaves: the ack can come back before the send returns.
        let mut ticket = self.acks.expect(&message.id);
        let options = SendOptions::default().with_message_id(message.id.clone());
        let sent = tokio::time::timeout(
            SEND_WAIT,
            lib.send_message_with_options(to, content, options),
        )
        .await;
        let sent = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) => {
                self.acks.forget(&ticket);
                return Err(send_error(e, &lib));
            }
            Err(_) => {
                self.acks.forget(&ticket);
                return Err(EngineError::Failed(format!(
                    "the message could not be handed to WhatsApp within {} s",
                    SEND_WAIT.as_secs()
                )));
            }
        };
        let verdict = tokio::select! {
            v = tokio::time::timeout(ACK_WAIT, &mut ticket.rx) => v,
            _ = self.stop.cancelled() => {
                self.acks.forget(&ticket);
                return Err(EngineError::ClientGone);
            }
        };
        match verdict {
            Ok(Ok(None)) => Ok(sent.message_id),
            Ok(Ok(Some(code))) => Err(nack_error(&code)),
            // Only a newer send of the same id replaces the waiter; that send reports.
            Ok(Err(_)) => Err(EngineError::Busy(format!(
                "message {} is being sent again meanwhile",
                message.id
            ))),
            Err(_) => {
                self.acks.forget(&ticket);
                Err(if lib.is_connected() {
                    EngineError::Failed(format!(
                        "the message went out but WhatsApp did not confirm it within {} s",
                        ACK_WAIT.as_secs()
                    ))
                } else {
                    EngineError::NotConnected
                })
            }
        }
    }
}

impl WaClient {
    /// The library client, if it is alive and connected right now.
    fn connected_lib(&self) -> Result<Arc<Client>, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        Ok(lib)
    }

    /// A number with no WhatsApp account would get nothing while the send looked fine (the
    /// library then encrypts for our own devices only). Its device list is what the send
    /// reads anyway, and is cached; only an empty one costs a second question.
    async fn check_recipient(
        &self,
        lib: &Client,
        to: &Jid,
        message: &OutgoingMessage,
    ) -> Result<(), EngineError> {
        let devices = tokio::time::timeout(
            SEND_WAIT,
            lib.signal().get_user_devices(std::slice::from_ref(to)),
        )
        .await
        .map_err(|_| lookup_timeout())?
        .map_err(|e| lookup_error(lib, &e))?;
        if !devices.is_empty() {
            return Ok(());
        }
        let found = tokio::time::timeout(
            SEND_WAIT,
            lib.contacts().is_on_whatsapp(std::slice::from_ref(to)),
        )
        .await
        .map_err(|_| lookup_timeout())?
        .map_err(|e| lookup_error(lib, &e))?;
        if found.iter().any(|r| r.is_registered) {
            return Ok(());
        }
        Err(EngineError::Invalid(format!(
            "{} is not on WhatsApp",
            message.to
        )))
    }

    /// Encrypts and uploads the image to WhatsApp's media servers; the message then only
    /// carries where it is and its key.
    async fn image_content(
        &self,
        lib: &Client,
        image: &OutgoingImage,
        caption: Option<String>,
    ) -> Result<wa::Message, EngineError> {
        let upload = tokio::time::timeout(
            UPLOAD_WAIT,
            lib.upload(
                image.bytes.to_vec(),
                MediaType::Image,
                UploadOptions::default(),
            ),
        )
        .await;
        let upload = match upload {
            Ok(Ok(u)) => u,
            Ok(Err(_)) if !lib.is_connected() => return Err(EngineError::NotConnected),
            Ok(Err(e)) => {
                return Err(EngineError::Failed(format!(
                    "cannot upload the image to WhatsApp: {e:#}"
                )));
            }
            Err(_) => {
                return Err(EngineError::Failed(format!(
                    "uploading the image to WhatsApp took over {} s",
                    UPLOAD_WAIT.as_secs()
                )));
            }
        };
        Ok(whatsapp_rust::media::image_message(
            upload,
            ImageOptions {
                caption,
                mimetype: Some(image.mime.clone()),
                ..Default::default()
            },
        ))
    }
}

fn check_image(image: &OutgoingImage) -> Result<(), EngineError> {
    if !image.mime.starts_with("image/") {
        return Err(EngineError::Invalid(format!(
            "the attachment is {}, not an image",
            image.mime
        )));
    }
    if image.bytes.is_empty() {
        return Err(EngineError::Invalid("the image is empty".into()));
    }
    if image.bytes.len() > MAX_IMAGE_BYTES {
        return Err(EngineError::Invalid(format!(
            "the image is {} bytes; WhatsApp takes at most {MAX_IMAGE_BYTES}",
            image.bytes.len()
        )));
    }
    Ok(())
}

fn lookup_timeout() -> EngineError {
    EngineError::Failed(format!(
        "WhatsApp did not say within {} s whether the recipient has an account",
        SEND_WAIT.as_secs()
    ))
}

fn lookup_error(lib: &Client, e: &dyn std::fmt::Display) -> EngineError {
    if lib.is_connected() {
        EngineError::Failed(format!("cannot look up the recipient on WhatsApp: {e}"))
    } else {
        EngineError::NotConnected
    }
}

fn send_error(e: SendError, lib: &Client) -> EngineError {
    match e {
        SendError::NotLoggedIn
        | SendError::Client(
            ClientError::NotConnected | ClientError::NotLoggedIn | ClientError::Socket(_),
        ) => EngineError::NotConnected,
        SendError::Iq(iq) | SendError::Client(ClientError::Iq(iq)) => iq_error(iq),
        SendError::InvalidRequest(m) => {
            EngineError::Invalid(format!("WhatsApp will not take this message: {m}"))
        }
        // A connection lost mid-send surfaces as whatever step it broke.
        _ if !lib.is_connected() => EngineError::NotConnected,
        other => EngineError::Failed(format!("sending failed: {other}")),
    }
}

fn iq_error(e: IqError) -> EngineError {
    match e {
        IqError::NotConnected
        | IqError::Disconnected(_)
        | IqError::InternalChannelClosed
        | IqError::Socket(_) => EngineError::NotConnected,
        IqError::ServerError { code, backoff, .. } if code == 429 || backoff.is_some() => {
            EngineError::RateLimited(match backoff {
                Some(secs) => format!(
                    "WhatsApp is limiting this number; try again in {}",
                    human_duration(i64::from(secs))
                ),
                None => "WhatsApp is limiting this number; try again later".into(),
            })
        }
        IqError::ServerError { code, text, .. } => EngineError::Failed(format!(
            "WhatsApp refused a step of the send: {code} {text}"
        )),
        IqError::Timeout => EngineError::Failed("WhatsApp did not answer in time".into()),
        other => EngineError::Failed(format!("sending failed: {other}")),
    }
}

/// A message WhatsApp acknowledged with an error code. Only "no such recipient" is known to
/// be final; the meaning of the rest is undocumented, so they stay worth another try.
fn nack_error(code: &str) -> EngineError {
    match code {
        "404" => EngineError::Invalid(
            "WhatsApp refused the message: the recipient has no account (error 404)".into(),
        ),
        "429" => {
            EngineError::RateLimited("WhatsApp is limiting this number; try again later".into())
        }
        // A time lock on writing to people the account has not talked to before.
        "463" => EngineError::RateLimited(
            "WhatsApp is holding back this number's messages to new contacts (error 463); try \
             again later"
                .into(),
        ),
        _ => EngineError::Failed(format!("WhatsApp refused the message (error {code})")),
    }
}

/// Sends waiting for WhatsApp's `<ack>` of their message, by message id. The value a waiter
/// gets is the nack code, if the server refused the message.
#[derive(Default)]
struct AckWaiters {
    waiting: Mutex<HashMap<String, (u64, AckSender)>>,
    /// Tells a waiter from a later one for the same id, which a give-up must leave alone.
    next: std::sync::atomic::AtomicU64,
}

/// Answers one send with the nack code, or `None` for a plain ack.
type AckSender = oneshot::Sender<Option<String>>;

/// One send's claim on the ack of its message.
struct AckTicket {
    id: String,
    ticket: u64,
    rx: oneshot::Receiver<Option<String>>,
}

impl AckWaiters {
    fn expect(&self, id: &str) -> AckTicket {
        let (tx, rx) = oneshot::channel();
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.waiting.lock() {
            g.insert(id.to_string(), (ticket, tx));
        }
        AckTicket {
            id: id.to_string(),
            ticket,
            rx,
        }
    }

    fn forget(&self, t: &AckTicket) {
        if let Ok(mut g) = self.waiting.lock()
            && g.get(&t.id).is_some_and(|(ticket, _)| *ticket == t.ticket)
        {
            g.remove(&t.id);
        }
    }

    fn acked(&self, id: &str, error: Option<String>) {
        let waiter = self.waiting.lock().ok().and_then(|mut g| g.remove(id));
        if let Some((_, tx)) = waiter {
            let _ = tx.send(error);
        }
    }
}

fn pair_error(e: PairError) -> EngineError {
    match &e {
        PairError::PairCode(PairCodeError::CodeAlreadyOutstanding { remaining }) => {
            EngineError::Busy(format!(
                "A pairing code was already issued for this session and is valid for another {} \
                 s: enter that one on the phone, or ask again after it expires.",
                remaining.as_secs()
            ))
        }
        PairError::PairCode(
            PairCodeError::PhoneNumberRequired
            | PairCodeError::PhoneNumberTooShort
            | PairCodeError::PhoneNumberNotInternational,
        ) => EngineError::Invalid(format!("phone_number is not usable for WhatsApp: {e}")),
        _ => match e.backoff() {
            Some(wait) => EngineError::RateLimited(format!(
                "WhatsApp is limiting pairing-code requests for this number; try again in {}.",
                human_duration(wait.as_secs() as i64)
            )),
            None => EngineError::Failed(format!("WhatsApp refused the pairing code: {e}")),
        },
    }
}

/// What the pump reads: the library's events and our transport's failed attempts, on one
/// channel so their order is the order they happened in.
enum Input {
    Library(Arc<Event>),
    ConnectFailed(String),
    /// Answered once everything before it is handled.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Forwards the library's lifecycle events, in dispatch order, to the pump, and answers
/// sends waiting for their ack.
struct Forwarder {
    tx: mpsc::UnboundedSender<Input>,
    acks: Arc<AckWaiters>,
}

const LIFECYCLE: &[EventKind] = &[
    EventKind::Connected,
    EventKind::Disconnected,
    EventKind::PairSuccess,
    EventKind::PairError,
    EventKind::LoggedOut,
    EventKind::PairingQrCode,
    EventKind::PairingQrCodesExhausted,
    EventKind::QrScannedWithoutMultidevice,
    EventKind::ClientOutdated,
    EventKind::StreamReplaced,
    EventKind::TemporaryBan,
    EventKind::ConnectFailure,
    EventKind::StreamError,
    // Contacts, cached as they come.
    EventKind::HistorySync,
    EventKind::ContactUpdate,
    EventKind::PushNameUpdate,
    // Contacts' activity, and messages people write to the account.
    EventKind::Messages,
    // WhatsApp took (or refused) a message we sent.
    EventKind::ServerAck,
];

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        if let Event::ServerAck(ack) = &*event {
            // Answered here, not by the pump: a send waits on it, and the pump may be busy
            // writing a large history chunk.
            if ack.class.as_deref() == Some("message") {
                self.acks.acked(&ack.id, ack.error.clone());
            }
            return;
        }
        let _ = self.tx.send(Input::Library(event));
    }

    /// Only what drives the status: the library then skips building the rest for us.
    fn interest(&self) -> EventInterest {
        EventInterest::of(LIFECYCLE)
    }
}

/// Wraps the real transport so a failed connection attempt becomes visible: the library
/// retries those silently, and a session must not sit in `initializing` forever offline.
struct ObservedTransport {
    inner: Arc<dyn TransportFactory>,
    timeout: Duration,
    failures: mpsc::UnboundedSender<Input>,
}

#[async_trait]
impl TransportFactory for ObservedTransport {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(
        Arc<dyn Transport>,
        whatsapp_rust::async_channel::Receiver<TransportEvent>,
    )> {
        match tokio::time::timeout(self.timeout, self.inner.create_transport()).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => {
                let _ = self.failures.send(Input::ConnectFailed(format!("{e:#}")));
                Err(e)
            }
            Err(_) => {
                let msg = format!("no answer within {} s", self.timeout.as_secs());
                let _ = self.failures.send(Input::ConnectFailed(msg.clone()));
                Err(anyhow::anyhow!(msg))
            }
        }
    }
}

async fn run_client(
    engine: WhatsAppEngine,
    client: Arc<WaClient>,
    start: ClientStart,
    span: tracing::Span,
) {
    let id = start.session_id.clone();
    let events = start.events;
    // Not instrumented with the span itself: the runtime puts every library task in it.
    if let Err(message) = drive(&engine, &client, &events, span).await {
        tracing::error!("❌ WhatsApp client of session {id} failed: {message}");
        tokio::select! {
            _ = events.send(EngineEvent::Failed { message }) => {}
            _ = client.stop.cancelled() => {}
        }
    }
    // A device that never got linked cannot be resumed; a restart makes a new one. Removed
    // before anyone hears the client ended, so a restart's new files are not swept away.
    if !tokio::fs::try_exists(client.dir.join(LINKED_MARKER))
        .await
        .unwrap_or(true)
        && let Err(e) = remove_dir(&client.dir).await
    {
        tracing::warn!("⚠️ Cannot remove unlinked device files of session {id}: {e}");
    }
    client.mark_ended();
    tracing::info!("ℹ️ WhatsApp client of session {id} stopped");
}

/// Runs the library client until it ends; returns an error only when it could not start.
async fn drive(
    engine: &WhatsAppEngine,
    client: &Arc<WaClient>,
    events: &mpsc::Sender<EngineEvent>,
    span: tracing::Span,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let starting = async {
        let version = engine.version().await;
        let db = client.dir.join(STORE_FILE);
        // The device's keys are the WhatsApp account: never readable by other users. The
        // library would create the file with SQLite's default mode.
        if let Err(e) = files::private_sqlite_file_async(&db).await {
            tracing::warn!("⚠️ Cannot make the session's credentials private: {e}");
        }
        let store = SqliteStore::new(&db.to_string_lossy()).await.map_err(|e| {
            format!(
                "cannot open the session's credentials store ({e}); check that --data-dir is \
                 writable and has free space, then call /api/whatsapp/restart"
            )
        })?;
        Bot::builder()
            .with_backend(store)
            .with_transport_factory(ObservedTransport {
                inner: engine.inner.transport.clone(),
                timeout: engine.inner.connect_timeout,
                failures: tx.clone(),
            })
            .with_http_client(SharedHttp(engine.inner.http.clone()))
            .with_runtime(SessionRuntime { span })
            .with_version(version)
            .with_event_handler(Forwarder {
                tx: tx.clone(),
                acks: client.acks.clone(),
            })
            .build()
            .await
            .map_err(|e| format!("cannot build the WhatsApp client: {e}"))
    };
    let bot = tokio::select! {
        bot = starting => bot?,
        // Asked to stop while starting: never connect.
        _ = client.stop.cancelled() => return Ok(()),
    };
    if let Ok(mut g) = client.input.lock() {
        *g = Some(tx.clone());
    }
    drop(tx);
    let lib = bot.client();
    client.set_lib(lib.clone());
    if client.stop.is_cancelled() {
        return Ok(());
    }
    let mut handle = bot.spawn();
    let mut pump = Pump {
        client: client.clone(),
        lib: lib.clone(),
        events: events.clone(),
        last_failure: None,
        waiting_since: Some(tokio::time::Instant::now()),
    };
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(Input::Library(ev)) => pump.on_library_event(&ev).await,
                Some(Input::ConnectFailed(reason)) => pump.on_connect_failure(reason).await,
                Some(Input::Barrier(done)) => {
                    let _ = done.send(());
                }
                None => break false,
            },
            _ = &mut handle => break false,
            _ = client.stop.cancelled() => break true,
            _ = watchdog.tick() => pump.check_progress().await,
        }
    };
    if stopped {
        // Flushes the device state and closes the socket; the run loop then ends.
        let _ = tokio::time::timeout(STOP_GRACE, lib.disconnect()).await;
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            tracing::warn!(
                "⚠️ WhatsApp client of session {} did not stop in time; aborting it",
                client.session_id
            );
            handle.abort();
        }
        return Ok(());
    }
    // Events dispatched just before the run loop ended (a logout, a ban) still count.
    while let Ok(input) = rx.try_recv() {
        if let Input::Library(ev) = input {
            pump.on_library_event(&ev).await;
        }
    }
    Ok(())
}

struct Pump {
    client: Arc<WaClient>,
    lib: Arc<Client>,
    events: mpsc::Sender<EngineEvent>,
    /// The last connection failure reported, so retries of the same failure stay quiet.
    last_failure: Option<String>,
    /// Since when the client has been trying to get somewhere (a QR code, a connection)
    /// without news; `None` while it is showing a QR code or connected.
    waiting_since: Option<tokio::time::Instant>,
}

impl Pump {
    async fn send(&self, ev: EngineEvent) {
        // A stop must not wait on an actor that is busy stopping this very client; and a
        // dropped receiver means the actor no longer listens to it.
        tokio::select! {
            _ = self.events.send(ev) => {}
            _ = self.client.stop.cancelled() => {}
        }
    }

    async fn mark_linked(&self) {
        let path = self.client.dir.join(LINKED_MARKER);
        if let Err(e) = files::write_private(&path, b"linked\n").await {
            tracing::error!(
                "❌ Cannot record the link of session {}: {e}",
                self.client.session_id
            );
        }
    }

    /// Ends the library client for good before the actor hears why: the actor may delete
    /// the credentials next, and a running client must not be writing them.
    async fn end_then_send(&self, ev: EngineEvent) {
        let _ = tokio::time::timeout(STOP_GRACE, self.lib.disconnect()).await;
        self.send(ev).await;
    }

    /// Writes through at once: history comes once and is acknowledged before we see it, so
    /// a fact not written here is lost.
    async fn cache(&self, mut entries: Vec<CachedContact>, pairs: Vec<(String, String)>) {
        // Every name WhatsApp sends about contacts passes here on its way to the database.
        for e in &mut entries {
            e.name = phone_name_opt(e.name.as_deref());
            e.push_name = phone_name_opt(e.push_name.as_deref());
        }
        let store = &self.client.engine.inner.store;
        let id = &self.client.session_id;
        let now = self.client.engine.inner.clock.now_ms();
        for attempt in 1..=3 {
            let r = async {
                if !pairs.is_empty() {
                    store.cache_lid_mappings(id, &pairs).await?;
                }
                if !entries.is_empty() {
                    store.cache_contacts(id, &entries, now).await?;
                }
                anyhow::Ok(())
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    tracing::error!(
                        "❌ Cannot save {} contacts WhatsApp sent for session {id}: {e:#}",
                        entries.len()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
            }
        }
    }

    async fn on_history(&self, h: &LazyHistorySync) {
        let id = self.client.session_id.clone();
        let h = h.clone();
        // Inflating and decoding a large chunk takes a while: off the async threads.
        let parsed = tokio::task::spawn_blocking(move || h.get().map(history_facts)).await;
        match parsed {
            Ok(Some((entries, pairs))) => {
                tracing::info!(
                    "ℹ️ History from WhatsApp for session {id}: {} chats and contacts",
                    entries.len()
                );
                self.cache(entries, pairs).await;
            }
            Ok(None) => tracing::warn!("⚠️ Session {id}: a history chunk could not be decoded"),
            Err(e) => tracing::error!("❌ Session {id}: reading a history chunk failed: {e}"),
        }
    }

    /// What the actor hears of a message: only one a person wrote to the account in a chat
    /// with one number. Groups, status updates, channels, our own messages (echoed from the
    /// phone) and protocol traffic are not conversations with a contact.
    async fn incoming(&self, m: &InboundMessage) -> Option<IncomingMessage> {
        let src = &m.info.source;
        if src.is_from_me || src.is_group || !(src.chat.is_pn() || src.chat.is_lid()) {
            return None;
        }
        let (kind, text) = message_content(&m.message)?;
        let Some(from) = self
            .sender_number(&src.sender, src.sender_alt.as_ref())
            .await
        else {
            tracing::info!(
                "ℹ️ Session {}: message {} comes from a hidden number (LID {}) and no phone                  number is known for it; not reported",
                self.client.session_id,
                m.info.id,
                src.sender.user
            );
            return None;
        };
        Some(IncomingMessage {
            id: m.info.id.to_string(),
            from,
            push_name: phone_name_opt(Some(&m.info.push_name)),
            text,
            kind: kind.to_string(),
            timestamp: m.info.timestamp.timestamp(),
        })
    }

    /// The sender's phone number (digits). A LID sender is a number WhatsApp hides behind an
    /// opaque id: the stanza may name the number too, or the library may have learned it.
    async fn sender_number(&self, sender: &Jid, alt: Option<&Jid>) -> Option<String> {
        if sender.is_pn() {
            return Some(sender.user.to_string());
        }
        if !sender.is_lid() {
            return None;
        }
        if let Some(alt) = alt.filter(|a| a.is_pn()) {
            return Some(alt.user.to_string());
        }
        match self.lib.get_lid_pn_entry(&sender.to_non_ad()).await {
            Ok(Some(entry)) => Some(entry.phone_number.to_string()),
            _ => None,
        }
    }

    /// A handshake that never completes (packets silently dropped, a proxy that accepts and
    /// stalls) fails inside the library without passing our transport: say so after a while.
    async fn check_progress(&mut self) {
        let Some(since) = self.waiting_since else {
            return;
        };
        if since.elapsed() < NO_PROGRESS_AFTER || self.last_failure.is_some() {
            return;
        }
        self.on_connect_failure(format!(
            "no answer from WhatsApp within {} s",
            NO_PROGRESS_AFTER.as_secs()
        ))
        .await;
    }

    async fn on_connect_failure(&mut self, reason: String) {
        if self.last_failure.as_deref() == Some(reason.as_str()) {
            return;
        }
        tracing::warn!(
            "⚠️ Cannot reach WhatsApp servers for session {}: {reason}",
            self.client.session_id
        );
        self.last_failure = Some(reason.clone());
        self.send(EngineEvent::Disconnected {
            reason: format!(
                "cannot reach WhatsApp servers ({reason}); retrying automatically with backoff"
            ),
        })
        .await;
    }

    async fn on_library_event(&mut self, ev: &Event) {
        let id = &self.client.session_id;
        match ev {
            Event::PairingQrCode(qr) => {
                self.last_failure = None;
                self.waiting_since = None;
                self.send(EngineEvent::Qr {
                    code: qr.code.clone(),
                })
                .await;
            }
            Event::PairSuccess(_) => {
                // Next comes the reconnect of a linked device; watch that it gets through.
                self.waiting_since = Some(tokio::time::Instant::now());
                self.mark_linked().await;
                self.send(EngineEvent::Authenticated).await;
            }
            Event::Connected(_) => {
                self.last_failure = None;
                self.waiting_since = None;
                self.mark_linked().await;
                let phone = self
                    .lib
                    .pn()
                    .map(|j| j.user.to_string())
                    .unwrap_or_default();
                let push_name = phone_name_opt(Some(&self.lib.push_name()));
                self.send(EngineEvent::Ready { phone, push_name }).await;
            }
            Event::Disconnected(d) => {
                self.waiting_since = Some(tokio::time::Instant::now());
                self.send(EngineEvent::Disconnected {
                    reason: format!("connection to WhatsApp lost ({})", d.reason),
                })
                .await;
            }
            Event::LoggedOut(l) => {
                let reason = match &l.reason {
                    ConnectFailureReason::LoggedOut => {
                        "the device was removed from the phone's linked devices".to_string()
                    }
                    ConnectFailureReason::AccountLocked => {
                        "WhatsApp locked this account".to_string()
                    }
                    other => format!("WhatsApp ended the link ({other:?})"),
                };
                self.end_then_send(EngineEvent::LoggedOut { reason }).await;
            }
            Event::StreamReplaced(_) => {
                self.end_then_send(EngineEvent::Failed {
                    message: "This number was opened in another WhatsApp Web session, which \
                              replaced this one. Call /api/whatsapp/restart to take it back."
                        .into(),
                })
                .await;
            }
            Event::TemporaryBan(b) => {
                let secs = b.expire.num_seconds().max(0);
                let until = chrono::Utc::now() + chrono::Duration::seconds(secs);
                self.end_then_send(EngineEvent::Failed {
                    message: format!(
                        "WhatsApp temporarily banned this number ({:?}{}). The ban ends in {} \
                         (at {}); call /api/whatsapp/restart after that.{}",
                        b.code,
                        b.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                        human_duration(secs),
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        b.url
                            .as_deref()
                            .map(|u| format!(" To appeal: {u}"))
                            .unwrap_or_default()
                    ),
                })
                .await;
            }
            Event::ClientOutdated(_) => {
                self.end_then_send(EngineEvent::Failed {
                    message: "WhatsApp rejected this client version as outdated. Restart the \
                              server while it can reach web.whatsapp.com (it fetches the current \
                              version once per process), or update WhatsApp Manager; then call \
                              /api/whatsapp/restart."
                        .into(),
                })
                .await;
            }
            Event::ConnectFailure(f) => {
                let detail = f.message.clone().unwrap_or_default();
                if f.reason.should_reconnect() {
                    self.send(EngineEvent::Disconnected {
                        reason: format!(
                            "WhatsApp refused the connection ({:?}) {detail}",
                            f.reason
                        )
                        .trim_end()
                        .to_string(),
                    })
                    .await;
                } else {
                    let what_to_do = match f.reason {
                        ConnectFailureReason::BadUserAgent
                        | ConnectFailureReason::ClientUnknown
                        | ConnectFailureReason::CatInvalid
                        | ConnectFailureReason::CatExpired
                        | ConnectFailureReason::NotFound => {
                            "This device's link is no longer accepted: call \
                             /api/whatsapp/logout, then /api/whatsapp/init to link again."
                        }
                        _ => "Call /api/whatsapp/restart to try again.",
                    };
                    self.end_then_send(EngineEvent::Failed {
                        message: format!(
                            "WhatsApp refused the connection ({:?}){}. {what_to_do}",
                            f.reason,
                            if detail.is_empty() {
                                String::new()
                            } else {
                                format!(": {detail}")
                            }
                        ),
                    })
                    .await;
                }
            }
            Event::PairingQrCodesExhausted(x) => {
                if x.disconnected {
                    self.end_then_send(EngineEvent::Failed {
                        message: "QR code attempts ran out: no phone scanned the QR codes in \
                                  time. Call /api/whatsapp/restart or /api/whatsapp/init to get a \
                                  new QR code."
                            .into(),
                    })
                    .await;
                } else {
                    tracing::info!(
                        "ℹ️ QR codes expired for session {id}; a pairing code is still valid"
                    );
                    self.send(EngineEvent::QrExpired {
                        message: "The QR codes expired. Enter the pairing code already issued on \
                                  the phone, or call /api/whatsapp/restart for new QR codes."
                            .into(),
                    })
                    .await;
                }
            }
            Event::PairError(e) => {
                self.end_then_send(EngineEvent::Failed {
                    message: format!(
                        "Linking failed: {}. Call /api/whatsapp/init to try again.",
                        e.error
                    ),
                })
                .await;
            }
            Event::QrScannedWithoutMultidevice(_) => {
                tracing::warn!(
                    "⚠️ Session {id}: the phone scanned the QR code without multi-device support"
                );
            }
            Event::StreamError(e) => {
                tracing::warn!("⚠️ Session {id}: unexpected stream error {}", e.code);
            }
            Event::HistorySync(h) => self.on_history(h).await,
            Event::ContactUpdate(c) => {
                let (entry, pair) = contact_action_fact(c.jid.to_string(), &c.action);
                self.cache(vec![entry], pair.into_iter().collect()).await;
            }
            Event::PushNameUpdate(p) => {
                let entry = CachedContact {
                    jid: p.jid.to_non_ad().to_string(),
                    push_name: Some(p.new_push_name.clone()),
                    ..Default::default()
                };
                self.cache(vec![entry], Vec::new()).await;
            }
            Event::Messages(batch) => {
                let mut entries = Vec::new();
                let mut pairs = Vec::new();
                for m in batch.messages.iter() {
                    let src = &m.info.source;
                    // Group chats are not contacts; protocol messages (the phone's key share,
                    // history notifications) are not chat activity.
                    if src.is_group || m.message.protocol_message.is_set() {
                        continue;
                    }
                    let chat = src.chat.to_non_ad().to_string();
                    let alt = if src.is_from_me {
                        src.recipient_alt.as_ref()
                    } else {
                        src.sender_alt.as_ref()
                    }
                    .map(|j| j.to_non_ad().to_string());
                    if let Some(alt) = &alt {
                        if is_lid(&chat) && is_pn(alt) {
                            pairs.push((chat.clone(), alt.clone()));
                        } else if is_pn(&chat) && is_lid(alt) {
                            pairs.push((alt.clone(), chat.clone()));
                        }
                    }
                    entries.push(CachedContact {
                        jid: chat,
                        push_name: (!src.is_from_me)
                            .then(|| m.info.push_name.clone())
                            .filter(|n| !n.trim().is_empty()),
                        last_message_at: Some(m.info.timestamp.timestamp()),
                        ..Default::default()
                    });
                }
                self.cache(entries, pairs).await;
                for m in batch.messages.iter() {
                    if let Some(incoming) = self.incoming(m).await {
                        self.send(EngineEvent::MessageReceived(incoming)).await;
                    }
                }
            }
            _ => {}
        }
    }
}

/// `("text" | "image" | "other", text or caption)`, or `None` for what is not a message a
/// person wrote (protocol traffic, reactions, key distribution, poll votes).
fn message_content(m: &wa::Message) -> Option<(&'static str, Option<String>)> {
    let m = m.get_base_message();
    if m.protocol_message.is_set()
        || m.reaction_message.is_set()
        || m.enc_reaction_message.is_set()
        || m.poll_update_message.is_set()
        || m.keep_in_chat_message.is_set()
    {
        return None;
    }
    if let Some(text) = m.text_content() {
        return Some(("text", Some(text.to_string())));
    }
    if let Some(image) = m.image_message.as_option() {
        return Some(("image", image.caption.clone().filter(|c| !c.is_empty())));
    }
    // A sender-key handout alone (the first message of a group) carries nothing to show.
    let mut rest = m.clone();
    rest.sender_key_distribution_message = Default::default();
    rest.message_context_info = Default::default();
    // Compared on the wire: a present but empty part (a sticker with no fields we know)
    // still counts, where struct equality would call it absent.
    if whatsapp_rust::waproto::codec::message_to_vec(&rest).is_empty() {
        return None;
    }
    Some(("other", m.get_caption().map(str::to_string)))
}

fn is_pn(jid: &str) -> bool {
    jid.ends_with("@s.whatsapp.net") || jid.ends_with("@c.us")
}

fn is_lid(jid: &str) -> bool {
    jid.ends_with("@lid")
}

fn opt(s: &Option<String>) -> Option<String> {
    s.clone().filter(|v| !v.trim().is_empty())
}

/// What a contact saved on the phone (app state) says, and its LID ↔ number pair.
fn contact_action_fact(
    jid: String,
    a: &wa::sync_action_value::ContactAction,
) -> (CachedContact, Option<(String, String)>) {
    let name = opt(&a.full_name).or_else(|| opt(&a.first_name));
    let pn = opt(&a.pn_jid).or_else(|| is_pn(&jid).then(|| jid.clone()));
    let lid = opt(&a.lid_jid).or_else(|| is_lid(&jid).then(|| jid.clone()));
    let pair = pn.clone().zip(lid.clone()).map(|(p, l)| (l, p));
    let entry = CachedContact {
        jid,
        pn_jid: pn,
        lid_jid: lid,
        name,
        ..Default::default()
    };
    (entry, pair)
}

/// What a history chunk says about chats and contacts, and its LID ↔ number pairs.
fn history_facts(h: &wa::HistorySync) -> (Vec<CachedContact>, Vec<(String, String)>) {
    let mut entries = Vec::with_capacity(h.conversations.len() + h.pushnames.len());
    let mut pairs = Vec::new();
    for c in &h.conversations {
        let jid = c.id.clone();
        // The last message, else the chat's own time: both are WhatsApp's, never ours.
        let last = c
            .last_msg_timestamp
            .or(c.conversation_timestamp)
            .filter(|t| *t > 0)
            .and_then(|t| i64::try_from(t).ok());
        let pn = opt(&c.pn_jid);
        let lid = opt(&c.lid_jid);
        if is_lid(&jid)
            && let Some(pn) = &pn
        {
            pairs.push((jid.clone(), pn.clone()));
        }
        if is_pn(&jid)
            && let Some(lid) = &lid
        {
            pairs.push((lid.clone(), jid.clone()));
        }
        entries.push(CachedContact {
            jid,
            pn_jid: pn,
            lid_jid: lid,
            name: opt(&c.name).or_else(|| opt(&c.display_name)),
            last_message_at: last,
            ..Default::default()
        });
    }
    for p in &h.pushnames {
        if let (Some(jid), Some(name)) = (opt(&p.id), opt(&p.pushname)) {
            entries.push(CachedContact {
                jid,
                push_name: Some(name),
                ..Default::default()
            });
        }
    }
    for c in &h.inline_contacts {
        let Some(jid) = opt(&c.pn_jid).or_else(|| opt(&c.lid_jid)) else {
            continue;
        };
        if let (Some(pn), Some(lid)) = (opt(&c.pn_jid), opt(&c.lid_jid)) {
            pairs.push((lid, pn));
        }
        entries.push(CachedContact {
            jid,
            pn_jid: opt(&c.pn_jid),
            lid_jid: opt(&c.lid_jid),
            name: opt(&c.full_name).or_else(|| opt(&c.first_name)),
            ..Default::default()
        });
    }
    for m in &h.phone_number_to_lid_mappings {
        if let (Some(pn), Some(lid)) = (opt(&m.pn_jid), opt(&m.lid_jid)) {
            pairs.push((lid, pn));
        }
    }
    (entries, pairs)
}

/// The cache of a session, read in chunks like any contact source.
struct CachedSource {
    contacts: std::collections::VecDeque<super::RawContact>,
    own: Vec<String>,
}

#[async_trait]
impl ContactSource for CachedSource {
    fn total(&self) -> Option<u64> {
        Some(self.contacts.len() as u64)
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<super::RawContact>>, EngineError> {
        if self.contacts.is_empty() {
            return Ok(None);
        }
        let n = self.contacts.len().min(1000);
        Ok(Some(self.contacts.drain(..n).collect()))
    }

    fn own_jids(&self) -> Vec<String> {
        self.own.clone()
    }
}

/// The engine's one HTTP client as the library's builder takes it: a value, where the engine
/// holds a trait object (the real client, or a test's fake media server).
struct SharedHttp(Arc<dyn HttpClient>);

#[async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.0.resource_report()
    }
}

/// Tokio, with every task the library spawns inside the session's span: its own log lines
/// then carry the session id like ours.
struct SessionRuntime {
    span: tracing::Span,
}

type BoxedTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

impl SessionRuntime {
    fn wrap(&self, future: BoxedTask) -> BoxedTask {
        Box::pin(future.instrument(self.span.clone()))
    }
}

impl whatsapp_rust::Runtime for SessionRuntime {
    fn spawn(&self, future: BoxedTask) -> whatsapp_rust::wacore::runtime::AbortHandle {
        whatsapp_rust::TokioRuntime.spawn(self.wrap(future))
    }

    fn spawn_detached(&self, future: BoxedTask) {
        whatsapp_rust::TokioRuntime.spawn_detached(self.wrap(future))
    }

    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        whatsapp_rust::TokioRuntime.sleep(duration)
    }

    fn spawn_blocking(
        &self,
        f: Box<dyn FnOnce() + Send + 'static>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        whatsapp_rust::TokioRuntime.spawn_blocking(f)
    }

    fn yield_now(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        whatsapp_rust::TokioRuntime.yield_now()
    }
}

fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::buffa;

    #[test]
    fn a_history_chunk_becomes_cached_facts_and_lid_pairs() {
        let h = wa::HistorySync {
            conversations: vec![
                wa::Conversation {
                    id: "966501112222@s.whatsapp.net".into(),
                    name: Some("Ali".into()),
                    last_msg_timestamp: Some(1_700_000_000),
                    lid_jid: Some("111@lid".into()),
                    ..Default::default()
                },
                wa::Conversation {
                    id: "222@lid".into(),
                    pn_jid: Some("966503334444@s.whatsapp.net".into()),
                    conversation_timestamp: Some(1_600_000_000),
                    display_name: Some("Sara".into()),
                    ..Default::default()
                },
            ],
            pushnames: vec![wa::Pushname {
                id: Some("966501112222@s.whatsapp.net".into()),
                pushname: Some("Ali P".into()),
            }],
            phone_number_to_lid_mappings: vec![wa::PhoneNumberToLIDMapping {
                pn_jid: Some("966505556666@s.whatsapp.net".into()),
                lid_jid: Some("333@lid".into()),
            }],
            ..Default::default()
        };
        let (entries, pairs) = history_facts(&h);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].name.as_deref(), Some("Ali"));
        assert_eq!(entries[0].last_message_at, Some(1_700_000_000));
        assert_eq!(entries[1].name.as_deref(), Some("Sara"));
        assert_eq!(entries[1].last_message_at, Some(1_600_000_000));
        assert_eq!(entries[2].push_name.as_deref(), Some("Ali P"));
        let mut pairs = pairs;
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                (
                    "111@lid".to_string(),
                    "966501112222@s.whatsapp.net".to_string()
                ),
                (
                    "222@lid".to_string(),
                    "966503334444@s.whatsapp.net".to_string()
                ),
                (
                    "333@lid".to_string(),
                    "966505556666@s.whatsapp.net".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_saved_contact_gives_its_name_and_lid_pair() {
        let action = wa::sync_action_value::ContactAction {
            full_name: Some("Sara Ahmed".into()),
            first_name: Some("Sara".into()),
            pn_jid: Some("966503334444@s.whatsapp.net".into()),
            ..Default::default()
        };
        let (c, pair) = contact_action_fact("222@lid".into(), &action);
        assert_eq!(c.name.as_deref(), Some("Sara Ahmed"));
        assert_eq!(c.pn_jid.as_deref(), Some("966503334444@s.whatsapp.net"));
        assert_eq!(
            pair,
            Some(("222@lid".into(), "966503334444@s.whatsapp.net".into()))
        );
        let first_only = wa::sync_action_value::ContactAction {
            full_name: Some(" ".into()),
            first_name: Some("Ali".into()),
            ..Default::default()
        };
        let (c, pair) = contact_action_fact("966501112222@s.whatsapp.net".into(), &first_only);
        assert_eq!(c.name.as_deref(), Some("Ali"));
        assert_eq!(c.pn_jid.as_deref(), Some("966501112222@s.whatsapp.net"));
        assert_eq!(pair, None);
    }

    #[test]
    fn only_what_a_person_wrote_counts_as_a_message() {
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(message_content(&text), Some(("text", Some("hi".into()))));

        let extended = wa::Message {
            extended_text_message: buffa::MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("see https://example.com".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&extended),
            Some(("text", Some("see https://example.com".into())))
        );

        let image = |caption: Option<&str>| wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                caption: caption.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&image(Some("menu"))),
            Some(("image", Some("menu".into())))
        );
        assert_eq!(message_content(&image(None)), Some(("image", None)));

        // Wrapped in a disappearing-messages envelope: the same text.
        let ephemeral = wa::Message {
            ephemeral_message: buffa::MessageField::some(wa::message::FutureProofMessage {
                message: buffa::MessageField::some(text.clone()),
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&ephemeral),
            Some(("text", Some("hi".into())))
        );

        let sticker = wa::Message {
            sticker_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&sticker), Some(("other", None)));

        let reaction = wa::Message {
            reaction_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&reaction), None);
        let protocol = wa::Message {
            protocol_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&protocol), None);
        let key_only = wa::Message {
            sender_key_distribution_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&key_only), None);
    }

    #[test]
    fn a_throttled_step_is_rate_limited_and_a_lost_connection_is_not_connected() {
        let throttled = iq_error(IqError::ServerError {
            code: 429,
            text: "rate-overlimit".into(),
            error_type: None,
            backoff: Some(90),
        });
        match throttled {
            EngineError::RateLimited(m) => assert!(m.contains("1 min 30 s"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            iq_error(IqError::NotConnected),
            EngineError::NotConnected
        ));
        assert!(matches!(
            iq_error(IqError::ServerError {
                code: 500,
                text: "internal".into(),
                error_type: None,
                backoff: None,
            }),
            EngineError::Failed(_)
        ));
        assert!(matches!(nack_error("429"), EngineError::RateLimited(_)));
        assert!(matches!(nack_error("463"), EngineError::RateLimited(_)));
        assert!(matches!(nack_error("404"), EngineError::Invalid(_)));
        assert!(matches!(nack_error("479"), EngineError::Failed(_)));
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(42), "42 s");
        assert_eq!(human_duration(125), "2 min 5 s");
        assert_eq!(human_duration(3 * 3600 + 60 * 7), "3 h 7 min");
    }
}
