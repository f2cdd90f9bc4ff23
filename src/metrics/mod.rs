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

mod gauges;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::contacts::fetch::FetchOutcome;
use crate::events::EventBus;
use crate::store::AttemptResult;

/// The classic text format, which Prometheus scrapes by default (not OpenMetrics).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A hook for code that may run without an event bus (a manager built bare, in tests).
pub fn count(bus: &Option<EventBus>, f: impl FnOnce(&Metrics)) {
    if let Some(bus) = bus {
        f(bus.metrics());
    }
}

/// Latency buckets, in seconds, of HTTP requests: most answers take milliseconds, a fetch
/// start or a send waits on the database.
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Contact fetches run from a second to many minutes on a big phone book.
const FETCH_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// The application's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Each application's own registry, never the crate's global one: the tests run several
/// applications in one process, and each one's `/metrics` must tell only its own work.
struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    fetches: Fixed,
    fetch_duration: Histogram,
    contacts_imported: IntCounter,
    messages: Fixed,
    webhook_deliveries: Fixed,
    connections: Fixed,
    gauges: gauges::Gauges,
}

/// A counter family over a fixed set of label values. Each child is resolved once, so
/// counting is one atomic add without the family's label map, and every value is rendered
/// from the first scrape on, at 0 until it happens.
struct Fixed {
    children: Vec<(&'static str, IntCounter)>,
}

impl Fixed {
    fn register(
        registry: &Registry,
        opts: Opts,
        label: &str,
        values: &[&'static str],
    ) -> prometheus::Result<Self> {
        let family = IntCounterVec::new(opts, &[label])?;
        registry.register(Box::new(family.clone()))?;
        let children = values
            .iter()
            .map(|v| Ok((*v, family.get_metric_with_label_values(&[*v])?)))
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { children })
    }

    /// A value outside the set is not counted: it would never be rendered anyway.
    fn inc(&self, value: &str) {
        if let Some((_, c)) = self.children.iter().find(|(v, _)| *v == value) {
            c.inc();
        }
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

impl Inner {
    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "wam_http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
            ),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "wam_http_request_duration_seconds",
                "Time from a request's arrival to its answer's head, by method and route \
                 template.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let fetches = Fixed::register(
            &registry,
            Opts::new(
                "wam_contact_fetches_total",
                "Contact fetches that ended, by outcome (completed, failed, cancelled).",
            ),
            "outcome",
            &["completed", "failed", "cancelled"],
        )?;
        let fetch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "wam_contact_fetch_duration_seconds",
                "Time a contact fetch ran, from its start to its end, whatever the outcome.",
            )
            .buckets(FETCH_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(fetch_duration.clone()))?;
        let contacts_imported = IntCounter::new(
            "wam_contacts_imported_total",
            "Contacts saved by completed contact fetches.",
        )?;
        registry.register(Box::new(contacts_imported.clone()))?;
        let messages = Fixed::register(
            &registry,
            Opts::new(
                "wam_messages_total",
                "Messages that left the outbox for good, by outcome (sent, failed).",
            ),
            "outcome",
            &["sent", "failed"],
        )?;
        let webhook_deliveries = Fixed::register(
            &registry,
            Opts::new(
                "wam_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered; retrying: failed, tried \
                 again later; failed: given up).",
            ),
            "outcome",
            &["delivered", "retrying", "failed"],
        )?;
        let connections = Fixed::register(
            &registry,
            Opts::new(
                "wam_engine_connections_total",
                "Sessions' connections to WhatsApp, by event (connected, disconnected, \
                 reconnecting).",
            ),
            "event",
            &["connected", "disconnected", "reconnecting"],
        )?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            fetches,
            fetch_duration,
            contacts_imported,
            messages,
            webhook_deliveries,
            connections,
            gauges: gauges::Gauges::new()?,
        })
    }
}

impl Metrics {
    /// Called once per application, at its start.
    pub fn new() -> Self {
        // The definitions are constants (valid names, no duplicate): only a programming
        // error fails here, which the unit tests catch.
        let inner = Inner::build().expect("the metric definitions are valid");
        Self {
            inner: Arc::new(inner),
        }
    }

    /// One answered HTTP request. `route` is the route's template (or a fixed word for an
    /// unknown route), never the raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let i = &self.inner;
        let mut buf = [0u8; 5];
        let status = status_str(status, &mut buf);
        if let Ok(c) = i
            .http_requests
            .get_metric_with_label_values(&[method, route, status])
        {
            c.inc();
        }
        if let Ok(h) = i
            .http_duration
            .get_metric_with_label_values(&[method, route])
        {
            h.observe(took.as_secs_f64());
        }
    }

    /// A contact fetch ended; `took` from its start, when known.
    pub fn fetch_finished(&self, end: &FetchOutcome, took: Option<Duration>) {
        let i = &self.inner;
        let outcome = match end {
            FetchOutcome::Completed(summary) => {
                i.contacts_imported.inc_by(summary.imported);
                "completed"
            }
            FetchOutcome::Failed(_) => "failed",
            FetchOutcome::Cancelled => "cancelled",
        };
        i.fetches.inc(outcome);
        if let Some(took) = took {
            i.fetch_duration.observe(took.as_secs_f64());
        }
    }

    /// A message left the outbox for good: `sent` or `failed`.
    pub fn message(&self, outcome: &'static str) {
        self.inner.messages.inc(outcome);
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
        self.inner.webhook_deliveries.inc(outcome);
    }

    fn connection(&self, event: ConnectionEvent) {
        self.inner.connections.inc(event.as_str());
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
        let mut families = self.inner.registry.gather();
        families.extend(self.inner.gauges.collect(now));
        let mut out = String::with_capacity(8 * 1024);
        // Only an empty or nameless family fails, which neither the registry nor the gauges
        // hand over; a scrape still gets what was written before it.
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::warn!("⚠️ Metrics: cannot render: {e}");
        }
        out
    }
}

/// A status code's digits without allocating on each request.
fn status_str(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// From `/proc/self/statm` (Linux); `None` elsewhere, and the gauge is left out.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every Linux this runs on (x86-64 and arm64 defaults).
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            engine: "sim",
            start_time_seconds: 1_700_000_000.5,
            ..Snapshot::default()
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        for secs in [0.3, 0.7, 2.0, 1000.0] {
            m.fetch_finished(
                &FetchOutcome::Cancelled,
                Some(Duration::from_secs_f64(secs)),
            );
        }
        let out = m.render(&snapshot());
        let h = "wam_contact_fetch_duration_seconds";
        for line in [
            format!("{h}_bucket{{le=\"0.5\"}} 1\n"),
            format!("{h}_bucket{{le=\"1\"}} 2\n"),
            format!("{h}_bucket{{le=\"2.5\"}} 3\n"),
            format!("{h}_bucket{{le=\"900\"}} 3\n"),
            format!("{h}_bucket{{le=\"+Inf\"}} 4\n"),
            format!("{h}_sum 1003\n"),
            format!("{h}_count 4\n"),
            "wam_contact_fetches_total{outcome=\"cancelled\"} 4\n".to_owned(),
            "wam_contact_fetches_total{outcome=\"completed\"} 0\n".to_owned(),
        ] {
            assert!(out.contains(&line), "no {line:?} in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.http_request("GET", "a\"b\\c\nd", 200, Duration::from_millis(3));
        let out = m.render(&snapshot());
        let line =
            "wam_http_requests_total{method=\"GET\",route=\"a\\\"b\\\\c\\nd\",status=\"200\"} 1\n";
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }

    #[test]
    fn each_app_counts_only_its_own_work() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.message("sent");
        assert!(
            a.render(&snapshot())
                .contains("wam_messages_total{outcome=\"sent\"} 1\n")
        );
        assert!(
            b.render(&snapshot())
                .contains("wam_messages_total{outcome=\"sent\"} 0\n")
        );
    }

    #[test]
    fn unknown_gauges_are_left_out_and_every_status_is_present() {
        let m = Metrics::new();
        let mut now = snapshot();
        now.sessions.insert("ready", 2);
        now.webhook_queue = Some(7);
        let out = m.render(&now);
        assert!(!out.contains("wam_outbox_pending"), "{out}");
        assert!(out.contains("wam_webhook_queue 7\n"), "{out}");
        assert!(out.contains("wam_sessions{status=\"ready\"} 2\n"), "{out}");
        for status in crate::domain::SessionStatus::ALL {
            let line = format!("wam_sessions{{status=\"{}\"}} ", status.as_str());
            assert!(out.contains(&line), "no {line:?} in\n{out}");
        }
        assert!(
            out.contains("process_start_time_seconds 1700000000.5\n"),
            "{out}"
        );
        assert!(
            out.contains("wam_build_info{engine=\"sim\",version=\""),
            "{out}"
        );
        // A later scrape without the database keeps the gauge out, not its last value.
        now.webhook_queue = None;
        assert!(!m.render(&now).contains("wam_webhook_queue"));
    }

    #[test]
    fn status_codes_are_spelled_in_full() {
        let mut buf = [0u8; 5];
        assert_eq!(status_str(200, &mut buf), "200");
        assert_eq!(status_str(0, &mut buf), "0");
        assert_eq!(status_str(65535, &mut buf), "65535");
    }
}
