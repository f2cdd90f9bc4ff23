//! What tests may turn on the real engine, and the WhatsApp Web version every session
//! announces.

use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::http::HttpClient;
use whatsapp_rust::transport::TransportFactory;

use super::WhatsAppEngine;

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

/// The WhatsApp Web version the library itself ships with; used when the live one cannot
/// be fetched (offline start), so a session can still try to connect.
pub(super) const FALLBACK_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);
pub(super) const VERSION_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
pub(super) const VERSION_RETRY: Duration = Duration::from_secs(600);

impl WhatsAppEngine {
    /// The current WhatsApp Web version, fetched once per process and shared. A failed fetch
    /// falls back to the built-in version and is tried again by a later start, at most every
    /// few minutes, so one offline boot does not pin every session to an old version.
    pub(super) async fn version(&self) -> (u32, u32, u32) {
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

pub(super) enum VersionState {
    Unknown,
    Fetched((u32, u32, u32)),
    FailedAt(tokio::time::Instant),
}
