//! api: `GET /api/whatsapp/status` under 64 concurrent connections, with 1,000 sessions live.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Opts;
use crate::backend::Target;
use crate::density::{AUTO_SCAN, link, pair};
use crate::load;
use crate::report::Row;
use crate::server::ServerProcess;

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.api_sessions;
    let dir = tempfile::tempdir()?;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let server = ServerProcess::serve_sim(dir.path(), &database, &AUTO_SCAN)?;
    link(&server.api, n, Duration::from_secs(300))
        .await
        .with_context(|| server.logs())?;
    let paths: Vec<String> = (0..n)
        .map(|i| {
            let (u, p) = pair(i);
            format!("/api/whatsapp/status?user_id={u}&place_id={p}")
        })
        .collect();
    let r = load::run(
        server.port,
        Arc::new(paths),
        opts.connections,
        Duration::from_secs(1),
        Duration::from_secs_f64(opts.api_seconds),
    )
    .await?;
    if r.errors > 0 {
        bail!(
            "{} of {} status requests did not answer 200",
            r.errors,
            r.requests
        );
    }
    server.stop()?;
    let mut row = Row::new("api", target);
    row.metric("sessions", n as f64, "")
        .metric("connections", opts.connections as f64, "")
        .metric("requests", r.requests as f64, "")
        .metric("requests_per_second", r.per_second(), "/s")
        .metric("p50_ms", r.p50_ms, "ms")
        .metric("p99_ms", r.p99_ms, "ms")
        .metric("max_ms", r.max_ms, "ms")
        .target("requests_per_second", false, 15_000.0, "/s")
        .target("p99_ms", true, 10.0, "ms")
        .note(
            "closed loop: each connection sends its next request when the answer is read; the \
             load generator runs on the same two cores as the server, with the admin key on \
             every request",
        );
    Ok(row)
}
