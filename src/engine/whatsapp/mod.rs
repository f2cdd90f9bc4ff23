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

mod client;
mod events;
mod history;
mod options;
mod run;
mod send;

use std::path::{Path, PathBuf};
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
use crate::files;
use crate::store::Store;
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
/// WhatsApp refuses images above 16 MB; saying so up front spares a useless upload.
const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
const STORE_FILE: &str = "device.db";
const LINKED_MARKER: &str = "linked";

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
    store: Arc<dyn Store>,
    clock: SharedClock,
}

impl WhatsAppEngine {
    pub fn new(
        data_dir: &Path,
        options: WhatsAppOptions,
        store: Arc<dyn Store>,
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
