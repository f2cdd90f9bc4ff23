//! The real engine: one `whatsapp-rust` client per session, speaking WhatsApp Web's
//! multi-device protocol.
//!
//! Each session's device (keys, identity, Signal sessions) lives in the service's own
//! database through a [`CredentialStore`], one pool for every session, beside a `linked`
//! flag that tells a restart which sessions reconnect by themselves. Nothing is kept under
//! `--data-dir`; device files an earlier version left there are imported once at start
//! ([`legacy`]).
//!
//! The library reports through events; a per-client pump reads them from one ordered
//! channel and turns them into [`EngineEvent`]s for the session actor.

mod client;
mod events;
mod history;
mod inbox;
mod legacy;
mod numbers;
mod options;
mod receipts;
mod run;
mod send;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::http::{HttpClient, UreqHttpClient};
use whatsapp_rust::transport::TransportFactory;

use super::{ClientStart, Engine, EngineClient, EngineError};
use crate::clock::SharedClock;
use crate::domain::SessionId;
use crate::store::Database;
use crate::store::device::CredentialStore;
use client::WaClient;
use options::VersionState;
pub use options::WhatsAppOptions;
use run::run_client;
use send::AckWaiters;

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
/// WhatsApp refuses images, videos and audio above 16 MB; saying so up front spares a
/// useless upload.
const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;
/// A document's cap.
const MAX_DOCUMENT_BYTES: usize = 100 * 1024 * 1024;

#[derive(Clone)]
pub struct WhatsAppEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// Every session's device (keys, Signal sessions, the linked flag), in the service's
    /// own database.
    creds: Arc<dyn CredentialStore>,
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
    /// Clears what a crash mid-link left behind and imports the device files of an earlier
    /// version from `<data_dir>/whatsapp/`: both before any session is restored, so a
    /// restored session finds its credentials where it looks for them.
    pub async fn new(
        data_dir: &Path,
        options: WhatsAppOptions,
        store: Arc<dyn Database>,
        creds: Arc<dyn CredentialStore>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        // A device never linked is of no use after a restart (no one can scan its old QR
        // codes); it would only pile up.
        let forgotten = creds
            .forget_unlinked_devices()
            .await
            .map_err(|e| anyhow::anyhow!("cannot clear devices that never linked: {e:#}"))?;
        if forgotten > 0 {
            tracing::info!("ℹ️ Forgot {forgotten} devices that never finished linking");
        }
        legacy::import_device_files(data_dir, creds.as_ref(), clock.now_ms()).await;
        let transport = options.transport.unwrap_or_else(|| {
            Arc::new(whatsapp_rust::transport::TokioWebSocketTransportFactory::new())
        });
        Ok(Self {
            inner: Arc::new(EngineInner {
                creds,
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

    /// Deletes every row of the session's device, and its contact cache.
    async fn forget_device(&self, id: &SessionId) -> Result<(), EngineError> {
        self.inner
            .creds
            .forget_device(id)
            .await
            .map_err(|e| EngineError::Failed(format!("cannot delete the credentials: {e:#}")))
    }
}

#[async_trait]
impl Engine for WhatsAppEngine {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    async fn start(&self, start: ClientStart) -> Result<Arc<dyn EngineClient>, EngineError> {
        let client = Arc::new(WaClient {
            session_id: start.session_id.clone(),
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
        match self.inner.creds.is_linked(session_id).await {
            Ok(linked) => linked,
            Err(e) => {
                tracing::warn!("⚠️ Cannot tell whether session {session_id} is linked: {e:#}");
                false
            }
        }
    }

    async fn linked_among(&self, session_ids: &[SessionId]) -> HashSet<SessionId> {
        match self.inner.creds.linked_devices().await {
            Ok(linked) => {
                let wanted: HashSet<&SessionId> = session_ids.iter().collect();
                linked
                    .into_iter()
                    .filter(|id| wanted.contains(id))
                    .collect()
            }
            Err(e) => {
                tracing::warn!("⚠️ Cannot tell which sessions are linked: {e:#}");
                HashSet::new()
            }
        }
    }

    async fn forget(&self, session_id: &SessionId) -> Result<(), EngineError> {
        self.forget_device(session_id).await
    }
}
