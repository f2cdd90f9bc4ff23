//! density-sim: thousands of sessions initialised and linked on the simulated network; what
//! each costs in resident memory, and how long linking them all takes.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::Opts;
use crate::backend::Target;
use crate::report::Row;
use crate::server::{Api, ServerProcess};

/// Requests in flight while sessions are created: enough to keep two cores busy.
const CONCURRENCY: usize = 64;
/// Quiet time before a memory reading, so allocator and timers settle.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The i-th pair of a run: 100 places per user.
pub fn pair(i: u64) -> (u64, u64) {
    (1 + i / 100, 1 + i % 100)
}

/// The phone scans every QR code as soon as it shows, so `init` alone links a session.
pub const AUTO_SCAN: [&str; 2] = ["--sim-auto-scan", "0"];

/// `init` for pairs `0..n`, then waits until all `n` are `ready`.
pub async fn link(api: &Api, n: u64, limit: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut inits = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let (u, p) = pair(i);
                api.init(u, p).await
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = inits.next().await {
        r.context("init")?;
    }
    api.wait_count("ready", n, limit).await?;
    Ok(t.elapsed())
}

pub async fn sim(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.sim_sessions;
    let dir = tempfile::tempdir()?;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let server = ServerProcess::serve_sim(dir.path(), &database, &AUTO_SCAN)?;
    // The first request pays for lazily built state (OpenAPI document, pools); not a session's.
    server.api.count("ready").await?;
    tokio::time::sleep(SETTLE).await;
    let base = server.rss_bytes()?;
    let took = link(&server.api, n, Duration::from_secs(600))
        .await
        .with_context(|| server.logs())?;
    tokio::time::sleep(SETTLE).await;
    let total = server.rss_bytes()?;
    let mut row = Row::new("density-sim", target);
    let per = total.saturating_sub(base) as f64 / n as f64;
    row.metric("sessions", n as f64, "")
        .metric("rss_baseline_mib", mib(base), "MiB")
        .metric("rss_total_mib", mib(total), "MiB")
        .metric("rss_per_session_kib", per / 1024.0, "KiB")
        .metric("link_seconds", took.as_secs_f64(), "s")
        .metric("sessions_per_second", n as f64 / took.as_secs_f64(), "/s")
        .target("rss_per_session_kib", true, 100.0, "KiB")
        .note(
            "per session = (RSS with all sessions ready − RSS before the first) / sessions: our \
             session actor, its channels and published snapshot, the sim engine's client task \
             and linked-device record, and the session's rows in the database's cache",
        );
    server.stop()?;
    Ok(row)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}
