//! Prometheus metrics: counters and histograms the work updates as it happens, and gauges
//! read at scrape time, rendered in the text exposition format (version 0.0.4).
//!
//! Each application owns its [`Metrics`] (no process-wide recorder): the tests run several
//! applications in one process, and each one's `/metrics` must tell only its own work. The
//! handle travels with the [`EventBus`](crate::events::EventBus), which every place that sees
//! the facts (session actors, the outbox, the webhook dispatcher) already holds, so each hook
//! is one line and no constructor grew a parameter.
//!
//! Labels never carry a user, place, session or phone number: only small fixed sets (a
//! route template, a status code, an outcome), so the number of series stays bounded.

mod text;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use text::CONTENT_TYPE;

use crate::contacts::fetch::FetchOutcome;
use crate::events::EventBus;
use crate::store::AttemptResult;

/// A hook for code that may run without an event bus (a manager built bare, in tests).
pub fn count(bus: &Option<EventBus>, f: impl FnOnce(&Metrics)) {
    if let Some(bus) = bus {
        f(bus.metrics());
    }
}
use text::{Family, Kind};

/// Latency buckets, in seconds, of HTTP requests: most answers take milliseconds, a fetch
/// start or a send waits on the database.
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Contact fetches run from a second to many minutes on a big phone book.
const FETCH_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// The application's metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Never held across an `.await`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    http_requests: BTreeMap<(String, String, u16), u64>,
    http_duration: BTreeMap<(String, String), Histogram>,
    fetches: BTreeMap<&'static str, u64>,
    fetch_duration: Histogram,
    contacts_imported: u64,
    messages: BTreeMap<&'static str, u64>,
    webhook_deliveries: BTreeMap<&'static str, u64>,
    connections: BTreeMap<&'static str, u64>,
}

/// Cumulative bucket counts as Prometheus wants them are computed at render time; here each
/// observation lands in its first bucket only.
#[derive(Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.len() != bounds.len() {
            self.buckets = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

/// What a session's connection to WhatsApp did.
#[derive(Debug, Clone, Copy)]
enum ConnectionEvent {
    Connected,
    Disconnected,
    Reconnecting,
}

impl ConnectionEvent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// The values read when a scrape comes, by whoever serves it.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Live sessions of this node by status.
    pub sessions: BTreeMap<&'static str, u64>,
    pub live_clients: u64,
    /// `None` when the database did not answer: the gauge is left out rather than lying.
    pub outbox_pending: Option<i64>,
    pub webhook_queue: Option<i64>,
    pub engine: &'static str,
    /// Unix time of the process's start, in seconds.
    pub start_time_seconds: f64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// One answered HTTP request. `route` is the route's template (or a fixed word for an
    /// unknown route), never the raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.with(|s| {
            *s.http_requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
            s.http_duration
                .entry((method.to_owned(), route.to_owned()))
                .or_default()
                .observe(&HTTP_BUCKETS, took.as_secs_f64());
        });
    }

    /// A contact fetch ended; `took` from its start, when known.
    pub fn fetch_finished(&self, end: &FetchOutcome, took: Option<Duration>) {
        self.with(|s| {
            let outcome = match end {
                FetchOutcome::Completed(summary) => {
                    s.contacts_imported += summary.imported;
                    "completed"
                }
                FetchOutcome::Failed(_) => "failed",
                FetchOutcome::Cancelled => "cancelled",
            };
            *s.fetches.entry(outcome).or_default() += 1;
            if let Some(took) = took {
                s.fetch_duration.observe(&FETCH_BUCKETS, took.as_secs_f64());
            }
        });
    }

    /// A message left the outbox for good: `sent` or `failed`.
    pub fn message(&self, outcome: &'static str) {
        self.with(|s| *s.messages.entry(outcome).or_default() += 1);
    }

    /// One recorded webhook delivery attempt.
    pub fn webhook_attempt(&self, result: &AttemptResult) {
        let outcome = match result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Failed {
                retry_at: Some(_), ..
            } => "retrying",
            AttemptResult::Failed { retry_at: None, .. } => "failed",
        };
        self.with(|s| *s.webhook_deliveries.entry(outcome).or_default() += 1);
    }

    fn connection(&self, event: ConnectionEvent) {
        self.with(|s| *s.connections.entry(event.as_str()).or_default() += 1);
    }

    /// A session's client is connected and ready.
    pub fn connected(&self) {
        self.connection(ConnectionEvent::Connected);
    }

    /// A session's connection dropped, and the engine reconnects it by itself.
    pub fn disconnected_reconnecting(&self) {
        self.connection(ConnectionEvent::Disconnected);
        self.connection(ConnectionEvent::Reconnecting);
    }

    /// A session's client was found dead or logged out: no reconnection follows.
    pub fn disconnected(&self) {
        self.connection(ConnectionEvent::Disconnected);
    }

    /// The exposition text: the counters as they stand, with the scrape-time values.
    pub fn render(&self, now: &Snapshot) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.with(|s| render_counters(&mut out, s));
        render_gauges(&mut out, now);
        out
    }
}

fn render_counters(out: &mut String, s: &State) {
    let mut f = Family::new(
        out,
        "wam_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by method, route template and status code.",
    );
    for ((method, route, status), n) in &s.http_requests {
        let status = status.to_string();
        f.sample(
            "",
            &[("method", method), ("route", route), ("status", &status)],
            *n as f64,
        );
    }
    let mut f = Family::new(
        out,
        "wam_http_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's arrival to its answer's head, by method and route template.",
    );
    for ((method, route), h) in &s.http_duration {
        f.histogram(&[("method", method), ("route", route)], &HTTP_BUCKETS, h);
    }
    let mut f = Family::new(
        out,
        "wam_contact_fetches_total",
        Kind::Counter,
        "Contact fetches that ended, by outcome (completed, failed, cancelled).",
    );
    for outcome in ["completed", "failed", "cancelled"] {
        let n = s.fetches.get(outcome).copied().unwrap_or(0);
        f.sample("", &[("outcome", outcome)], n as f64);
    }
    let mut f = Family::new(
        out,
        "wam_contact_fetch_duration_seconds",
        Kind::Histogram,
        "Time a contact fetch ran, from its start to its end, whatever the outcome.",
    );
    f.histogram(&[], &FETCH_BUCKETS, &s.fetch_duration);
    let mut f = Family::new(
        out,
        "wam_contacts_imported_total",
        Kind::Counter,
        "Contacts saved by completed contact fetches.",
    );
    f.sample("", &[], s.contacts_imported as f64);
    let mut f = Family::new(
        out,
        "wam_messages_total",
        Kind::Counter,
        "Messages that left the outbox for good, by outcome (sent, failed).",
    );
    for outcome in ["sent", "failed"] {
        let n = s.messages.get(outcome).copied().unwrap_or(0);
        f.sample("", &[("outcome", outcome)], n as f64);
    }
    let mut f = Family::new(
        out,
        "wam_webhook_deliveries_total",
        Kind::Counter,
        "Webhook delivery attempts, by outcome (delivered; retrying: failed, tried again \
         later; failed: given up).",
    );
    for outcome in ["delivered", "retrying", "failed"] {
        let n = s.webhook_deliveries.get(outcome).copied().unwrap_or(0);
        f.sample("", &[("outcome", outcome)], n as f64);
    }
    let mut f = Family::new(
        out,
        "wam_engine_connections_total",
        Kind::Counter,
        "Sessions' connections to WhatsApp, by event (connected, disconnected, reconnecting).",
    );
    for event in ["connected", "disconnected", "reconnecting"] {
        let n = s.connections.get(event).copied().unwrap_or(0);
        f.sample("", &[("event", event)], n as f64);
    }
}

fn render_gauges(out: &mut String, now: &Snapshot) {
    let mut f = Family::new(
        out,
        "wam_sessions",
        Kind::Gauge,
        "Sessions this node runs, by status.",
    );
    for status in crate::domain::SessionStatus::ALL {
        let status = status.as_str();
        let n = now.sessions.get(status).copied().unwrap_or(0);
        f.sample("", &[("status", status)], n as f64);
    }
    let mut f = Family::new(
        out,
        "wam_live_clients",
        Kind::Gauge,
        "Sessions with a live WhatsApp client in this process.",
    );
    f.sample("", &[], now.live_clients as f64);
    if let Some(n) = now.outbox_pending {
        let mut f = Family::new(
            out,
            "wam_outbox_pending",
            Kind::Gauge,
            "Messages queued or being sent, of every node.",
        );
        f.sample("", &[], n as f64);
    }
    if let Some(n) = now.webhook_queue {
        let mut f = Family::new(
            out,
            "wam_webhook_queue",
            Kind::Gauge,
            "Webhook deliveries waiting for their (next) attempt, of every node.",
        );
        f.sample("", &[], n as f64);
    }
    if let Some(bytes) = resident_memory_bytes() {
        let mut f = Family::new(
            out,
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        );
        f.sample("", &[], bytes as f64);
    }
    let mut f = Family::new(
        out,
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
    );
    f.sample("", &[], now.start_time_seconds);
    let mut f = Family::new(
        out,
        "wam_build_info",
        Kind::Gauge,
        "Always 1: the version of the server and the engine it runs.",
    );
    f.sample(
        "",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("engine", now.engine),
        ],
        1.0,
    );
}

/// From `/proc/self/statm` (Linux); `None` elsewhere, and the gauge is left out.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every Linux this runs on (x86-64 and arm64 defaults).
    Some(pages * 4096)
}
