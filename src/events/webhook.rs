//! Delivering events to each tenant's webhook: signed, in order, retried with backoff.
//!
//! Deliveries of one tenant go strictly one after the other, in event order: the next is not
//! tried while the one before it is still pending. So a receiver that is down for a while
//! gets every event later, in the order they happened. Tenants do not wait for each other.

use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::EventBus;
use crate::store::{AttemptResult, DeliveryRecord, keep_trying};

/// The header carrying `sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
pub const EVENT_HEADER: &str = "X-Webhook-Event";
pub const DELIVERY_HEADER: &str = "X-Webhook-Delivery";
/// Tenants whose head delivery is tried at once.
const PARALLEL_TENANTS: usize = 16;
/// How long the dispatcher sleeps at most before looking again (a clock moved by hand, a
/// delivery queued by another server instance).
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub timeout: Duration,
    /// Attempts before a delivery is given up (and the next one goes).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl WebhookSettings {
    /// The wait after the `attempt`-th failed attempt (1-based): doubling, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// `sha256=<hex>`: what a receiver recomputes from the raw body and its secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Runs until cancelled.
pub async fn run_dispatcher(bus: EventBus, settings: WebhookSettings, cancel: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("whatsapp-manager/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("❌ Webhook deliveries cannot start: {e}");
            return;
        }
    };
    loop {
        let heads = match bus.store().pending_heads().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("❌ Cannot read the webhook queue: {e:#}");
                Vec::new()
            }
        };
        let now = bus.clock().now_ms();
        let (due, later): (Vec<_>, Vec<_>) =
            heads.into_iter().partition(|d| d.next_attempt_at <= now);
        if !due.is_empty() {
            let attempts = futures::stream::iter(due)
                .map(|d| deliver(&bus, &client, &settings, d))
                .buffer_unordered(PARALLEL_TENANTS);
            tokio::select! {
                () = attempts.for_each(|()| async {}) => {}
                () = cancel.cancelled() => return,
            }
            continue;
        }
        let wait = later
            .iter()
            .map(|d| Duration::from_millis((d.next_attempt_at - now).max(0) as u64))
            .min()
            .map_or(Duration::from_secs(30), |w| w.min(RECHECK));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = bus.queued().notified() => {}
            () = cancel.cancelled() => return,
        }
    }
}

async fn deliver(
    bus: &EventBus,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    d: DeliveryRecord,
) {
    let store = bus.store();
    let attempt = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
    let result = match store.webhook(d.user_id).await {
        Err(e) => {
            tracing::error!("❌ Cannot read the webhook of user {}: {e:#}", d.user_id);
            return;
        }
        Ok(None) => AttemptResult::Failed {
            status_code: None,
            error: "the webhook was removed".into(),
            retry_at: None,
        },
        Ok(Some(hook)) => {
            let sent = client
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, &d.event.kind)
                .header(DELIVERY_HEADER, d.id.to_string())
                .header(
                    SIGNATURE_HEADER,
                    signature(&hook.secret, d.event.payload.as_bytes()),
                )
                .body(d.event.payload.clone())
                .send()
                .await;
            let (code, error) = match sent {
                Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
                Ok(r) => (
                    Some(r.status().as_u16()),
                    Some(format!("the receiver answered {}", r.status())),
                ),
                Err(e) => (None, Some(describe(e))),
            };
            match error {
                None => AttemptResult::Delivered {
                    status_code: code.map_or(0, i64::from),
                },
                Some(error) => {
                    let retry_at = (attempt < settings.max_attempts).then(|| {
                        bus.clock().now_ms() + settings.backoff(attempt).as_millis() as i64
                    });
                    if retry_at.is_none() {
                        tracing::warn!(
                            "⚠️ Webhook delivery {} of user {} given up after {attempt} attempts: {error}",
                            d.id,
                            d.user_id
                        );
                    }
                    AttemptResult::Failed {
                        status_code: code.map(i64::from),
                        error,
                        retry_at,
                    }
                }
            }
        }
    };
    // Unrecorded, the attempt would be made again: a second copy for the receiver, or a
    // failure counted twice. The dispatcher's stop drops this wait.
    let now = bus.clock().now_ms();
    let what = format!("Recording webhook delivery {}", d.id);
    if let Err(e) = keep_trying(what, None, || store.record_attempt(d.id, &result, now)).await {
        tracing::error!("❌ Cannot record webhook delivery {}: {e:#}", d.id);
    }
}

/// A transport error in a sentence, without the URL's query (it may carry a token).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the receiver".into()
    } else {
        format!("the request failed: {}", e.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = WebhookSettings {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }
}
