//! The gauges read at scrape time from a [`Snapshot`], collected by hand rather than through
//! the registry: a gauge whose value is unknown this time (the database did not answer) is
//! left out of that scrape instead of repeating its last value.

use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts};

use super::{Snapshot, resident_memory_bytes};
use crate::domain::SessionStatus;

pub(super) struct Gauges {
    /// Setting the values and collecting them is one step, so two scrapes at once each get
    /// their own snapshot. Scrapes are rare; the counters on the hot path never take it.
    scrape: Mutex<()>,
    sessions: IntGaugeVec,
    live_clients: IntGauge,
    outbox_pending: IntGauge,
    webhook_queue: IntGauge,
    resident_memory: IntGauge,
    start_time: Gauge,
    build_info: GaugeVec,
}

impl Gauges {
    pub(super) fn new() -> prometheus::Result<Self> {
        Ok(Self {
            scrape: Mutex::new(()),
            sessions: IntGaugeVec::new(
                Opts::new("wam_sessions", "Sessions this node runs, by status."),
                &["status"],
            )?,
            live_clients: IntGauge::new(
                "wam_live_clients",
                "Sessions with a live WhatsApp client in this process.",
            )?,
            outbox_pending: IntGauge::new(
                "wam_outbox_pending",
                "Messages queued or being sent, of every node.",
            )?,
            webhook_queue: IntGauge::new(
                "wam_webhook_queue",
                "Webhook deliveries waiting for their (next) attempt, of every node.",
            )?,
            resident_memory: IntGauge::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            start_time: Gauge::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
            build_info: GaugeVec::new(
                Opts::new(
                    "wam_build_info",
                    "Always 1: the version of the server and the engine it runs.",
                ),
                &["version", "engine"],
            )?,
        })
    }

    pub(super) fn collect(&self, now: &Snapshot) -> Vec<MetricFamily> {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        // Every status is set each time, so a status no session holds any more reads 0.
        for status in SessionStatus::ALL {
            let status = status.as_str();
            let n = now.sessions.get(status).copied().unwrap_or(0);
            if let Ok(g) = self.sessions.get_metric_with_label_values(&[status]) {
                g.set(saturating(n));
            }
        }
        out.extend(self.sessions.collect());
        self.live_clients.set(saturating(now.live_clients));
        out.extend(self.live_clients.collect());
        if let Some(n) = now.outbox_pending {
            self.outbox_pending.set(n);
            out.extend(self.outbox_pending.collect());
        }
        if let Some(n) = now.webhook_queue {
            self.webhook_queue.set(n);
            out.extend(self.webhook_queue.collect());
        }
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory.set(saturating(bytes));
            out.extend(self.resident_memory.collect());
        }
        self.start_time.set(now.start_time_seconds);
        out.extend(self.start_time.collect());
        // One series only: the engine is fixed for a process, but a stale label pair must
        // never linger beside the current one.
        self.build_info.reset();
        if let Ok(g) = self
            .build_info
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION"), now.engine])
        {
            g.set(1.0);
        }
        out.extend(self.build_info.collect());
        out
    }
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
