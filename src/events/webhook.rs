//! Delivering events to each tenant's webhook: signed, in order, retried with backoff.
//!
//! Deliveries of one tenant go strictly one after the other, in event order: the next is not
//! tried while the one before it is still pending. So a receiver that is down for a while
//! gets every event later, in the order they happened. Tenants do not wait for each other:
//! each tenant's head delivery runs as its own task, up to `--webhook-concurrency` tenants at
//! once, so one receiver that hangs until the timeout delays only its own tenant.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::EventBus;
use crate::domain::UserId;
use crate::outbound::{OutboundPolicy, refusal_of};
use crate::store::{AttemptResult, DeliveryRecord, keep_trying};

/// The header carrying `sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: the time is signed with the
/// body, so a captured delivery cannot be replayed later than the receiver's tolerance.
pub const SIGNATURE_V2_HEADER: &str = "X-Webhook-Signature-V2";
/// The `t` of the V2 signature, on its own for receivers that log it.
pub const TIMESTAMP_HEADER: &str = "X-Webhook-Timestamp";
pub const EVENT_HEADER: &str = "X-Webhook-Event";
pub const DELIVERY_HEADER: &str = "X-Webhook-Delivery";
/// How long the dispatcher sleeps at most before looking again (a clock moved by hand, a
/// delivery queued by another server instance).
const RECHECK: Duration = Duration::from_secs(1);
/// On a node of a cluster a head is claimed for its attempt, for the receiver's timeout and
/// this much more (recording the outcome, clocks of nodes a little apart): a node that
/// dies mid-delivery holds its tenant back that long, not for ever.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub timeout: Duration,
    /// Attempts before a delivery is given up (and the next one goes).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Tenants whose head delivery is in flight at once.
    pub concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 16,
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

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256=<hex>`: what a receiver recomputes from the raw body and its secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, &[body]))
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature_v2(secret: &str, unix_s: i64, body: &[u8]) -> String {
    let t = unix_s.to_string();
    format!("t={t},v1={}", hmac_hex(secret, &[t.as_bytes(), b".", body]))
}

/// Runs until cancelled.
pub async fn run_dispatcher(
    bus: EventBus,
    settings: WebhookSettings,
    policy: OutboundPolicy,
    cancel: CancellationToken,
) {
    let client = match policy
        .client(reqwest::Client::builder())
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
    let dispatcher = Dispatcher {
        bus,
        client,
        settings,
        policy,
    };
    // The tenant of each delivery in flight; its next one waits for it.
    let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
    // Each task answers whether its outcome was recorded.
    let mut running: JoinSet<bool> = JoinSet::new();
    loop {
        let heads = match dispatcher.bus.store().pending_heads().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("❌ Cannot read the webhook queue: {e:#}");
                Vec::new()
            }
        };
        let now = dispatcher.bus.clock().now_ms();
        let mut next_due: Option<i64> = None;
        for d in heads {
            if in_flight.values().any(|f| f.user == d.user_id) {
                continue;
            }
            if d.next_attempt_at > now {
                next_due = Some(next_due.map_or(d.next_attempt_at, |t| t.min(d.next_attempt_at)));
                continue;
            }
            if in_flight.len() >= dispatcher.settings.concurrency {
                break;
            }
            let Some(claim) = dispatcher.claim(&d, now).await else {
                continue;
            };
            let user = d.user_id;
            let this = dispatcher.clone();
            let task = running.spawn(async move { this.deliver(d).await });
            in_flight.insert(task.id(), InFlight { user, claim });
        }
        let wait = next_due
            .map_or(Duration::from_secs(30), |t| {
                Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
            })
            .min(RECHECK);
        tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                // A panicked delivery frees its tenant too: the delivery is still pending and
                // is tried again (its claim given back, not left to run out).
                let (id, recorded) = done.map_or_else(|e| (e.id(), false), |(id, r)| (id, r));
                if let Some(f) = in_flight.remove(&id)
                    && !recorded
                {
                    dispatcher.release(f.claim).await;
                }
            }
            () = tokio::time::sleep(wait) => {}
            () = dispatcher.bus.queued().notified() => {}
            () = cancel.cancelled() => {
                // Deliveries cut short stay pending and go again after the next start (or
                // at once on another node: their claims are given back).
                running.abort_all();
                while running.join_next().await.is_some() {}
                for f in in_flight.into_values() {
                    dispatcher.release(f.claim).await;
                }
                return;
            }
        }
    }
}

/// A delivery under way: its tenant waits for it.
struct InFlight {
    user: UserId,
    claim: Option<Claim>,
}

/// A head this node took from the others, until `until` (see [`Dispatcher::claim`]).
struct Claim {
    delivery_id: i64,
    due: i64,
    until: i64,
}

#[derive(Clone)]
struct Dispatcher {
    bus: EventBus,
    client: reqwest::Client,
    settings: WebhookSettings,
    policy: OutboundPolicy,
}

impl Dispatcher {
    /// On a node of a cluster the dispatchers of every node look at the same heads: the one
    /// that moves the head's next attempt past its own attempt's end delivers it, the others
    /// see it not due. A claim rather than an advisory lock held for the attempt: the lock
    /// would pin a pooled connection per tenant in flight for up to the receiver's timeout,
    /// and a claim needs no new column, since `next_attempt_at` already says "not before".
    /// `None`: another node has it, or the database did not answer (looked at again soon).
    /// `Some(None)`: a single server, nothing to claim from.
    async fn claim(&self, d: &DeliveryRecord, now: i64) -> Option<Option<Claim>> {
        if !self.bus.clustered() {
            return Some(None);
        }
        let hold = self.settings.timeout.saturating_add(CLAIM_MARGIN);
        let until = now.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
        match self.bus.store().claim_delivery(d.id, now, until).await {
            Ok(true) => Some(Some(Claim {
                delivery_id: d.id,
                due: d.next_attempt_at,
                until,
            })),
            Ok(false) => None,
            Err(e) => {
                tracing::error!("❌ Cannot claim webhook delivery {}: {e:#}", d.id);
                None
            }
        }
    }

    async fn release(&self, claim: Option<Claim>) {
        let Some(c) = claim else { return };
        if let Err(e) = self
            .bus
            .store()
            .release_delivery(c.delivery_id, c.until, c.due)
            .await
        {
            tracing::warn!(
                "⚠️ Webhook delivery {} stays claimed until its claim runs out: {e:#}",
                c.delivery_id
            );
        }
    }

    /// Whether the attempt's outcome was recorded.
    async fn deliver(&self, d: DeliveryRecord) -> bool {
        let store = self.bus.store();
        let attempt = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
        let outcome = match store.webhook(d.user_id).await {
            Err(e) => {
                tracing::error!("❌ Cannot read the webhook of user {}: {e:#}", d.user_id);
                return false;
            }
            Ok(None) => Err(("the webhook was removed".to_owned(), None, false)),
            Ok(Some(hook)) => self.post(&hook.url, &hook.secret, &d).await,
        };
        let result = match outcome {
            Ok(code) => AttemptResult::Delivered {
                status_code: i64::from(code),
            },
            Err((error, code, retry)) => {
                let retry_at = (retry && attempt < self.settings.max_attempts).then(|| {
                    self.bus.clock().now_ms() + self.settings.backoff(attempt).as_millis() as i64
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
        };
        // Unrecorded, the attempt would be made again: a second copy for the receiver, or a
        // failure counted twice. The dispatcher's stop aborts this task and so this wait.
        let now = self.bus.clock().now_ms();
        let what = format!("Recording webhook delivery {}", d.id);
        if let Err(e) = keep_trying(what, None, || store.record_attempt(d.id, &result, now)).await {
            tracing::error!("❌ Cannot record webhook delivery {}: {e:#}", d.id);
            return false;
        }
        self.bus.metrics().webhook_attempt(&result);
        true
    }

    /// One attempt: the receiver's 2xx status, or why not, its status if it answered, and
    /// whether trying again could help.
    async fn post(
        &self,
        raw_url: &str,
        secret: &str,
        d: &DeliveryRecord,
    ) -> Result<u16, (String, Option<u16>, bool)> {
        // A URL stored before addresses were checked, or by a looser configuration, is held
        // to today's rules before any connection: a refused one is never tried again.
        let url = reqwest::Url::parse(raw_url)
            .map_err(|_| ("the webhook URL is not valid".to_owned(), None, false))?;
        if let Err(r) = self.policy.check_written(&url) {
            return Err((format!("the webhook URL {r}"), None, false));
        }
        let body = d.event.payload.as_bytes();
        let now_s = self.bus.clock().now_ms().div_euclid(1000);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, &d.event.kind)
            .header(DELIVERY_HEADER, d.id.to_string())
            .header(SIGNATURE_HEADER, signature(secret, body))
            .header(TIMESTAMP_HEADER, now_s.to_string())
            .header(SIGNATURE_V2_HEADER, signature_v2(secret, now_s, body))
            .body(d.event.payload.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err((
                format!("the receiver answered HTTP {}", r.status().as_u16()),
                Some(r.status().as_u16()),
                true,
            )),
            Err(e) => match refusal_of(&e) {
                // Only addresses the tenant may target get "could not connect": a refused
                // one says so and nothing about what listens there.
                Some(r) => Err((format!("the webhook URL {r}"), None, false)),
                None => Err((describe(e), None, true)),
            },
        }
    }
}

/// A transport error in a sentence, without the URL's query (it may carry a token).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to the receiver".into()
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
    fn the_v2_signature_signs_the_time_with_the_body() {
        let sig = signature_v2("Jefe", 1_700_000_000, b"{}");
        let (t, v1) = sig.split_once(',').unwrap();
        assert_eq!(t, "t=1700000000");
        assert_eq!(
            v1.strip_prefix("v1=").unwrap(),
            hmac_hex("Jefe", &[b"1700000000.{}"])
        );
        assert_ne!(sig, signature_v2("Jefe", 1_700_000_001, b"{}"));
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
