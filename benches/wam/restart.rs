//! restart: ready sessions, the server stopped (SIGTERM) and started again on the same data;
//! time until every session is `ready` again, without a new QR code.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

use crate::Opts;
use crate::backend::Target;
use crate::density::{AUTO_SCAN, link, pair};
use crate::report::Row;
use crate::server::{Api, ServerProcess};

const CONCURRENCY: usize = 32;

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.restart_sessions;
    let dir = tempfile::tempdir()?;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let server = ServerProcess::serve_sim(dir.path(), &database, &AUTO_SCAN)?;
    link(&server.api, n, Duration::from_secs(300))
        .await
        .with_context(|| server.logs())?;
    let stop = server.stop()?;

    let t = Instant::now();
    // Without auto-scan: a session that asked for a QR code would never come back ready.
    let server = ServerProcess::serve_sim(dir.path(), &database, &[])?;
    let listening = t.elapsed();
    wait_all_ready(&server.api, n, t, Duration::from_secs(120))
        .await
        .with_context(|| server.logs())?;
    let ready = t.elapsed();
    server.stop()?;

    let mut row = Row::new("restart", target);
    row.metric("sessions", n as f64, "")
        .metric("stop_seconds", stop.as_secs_f64(), "s")
        .metric("listening_seconds", listening.as_secs_f64(), "s")
        .metric("all_ready_seconds", ready.as_secs_f64(), "s")
        .target("all_ready_seconds", true, 5.0, "s")
        .note(
            "all_ready = process started → every session's status route says ready (same \
             session id, no QR code); the sim engine reconnects at once, so this is our own \
             restore path: reading the sessions, spawning actors, the on-ready group check",
        );
    Ok(row)
}

/// Polls the status of every pair not yet seen `ready` until none is left.
pub async fn wait_all_ready(api: &Api, n: u64, t: Instant, limit: Duration) -> anyhow::Result<()> {
    let mut waiting: Vec<u64> = (0..n).collect();
    while !waiting.is_empty() {
        if t.elapsed() > limit {
            bail!(
                "{} of {n} sessions not ready after {limit:?}",
                waiting.len()
            );
        }
        let checked: Vec<(u64, bool)> = futures::stream::iter(waiting.iter().copied())
            .map(|i| {
                let api = api.clone();
                async move {
                    let (u, p) = pair(i);
                    let s = api.status(u, p).await?;
                    if s["data"]["status"] == "qr_ready" || s["data"]["status"] == "error" {
                        bail!(
                            "session {i} came back {}, not ready: {s}",
                            s["data"]["status"]
                        );
                    }
                    Ok::<_, anyhow::Error>((i, s["data"]["status"] == "ready"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        waiting = checked
            .into_iter()
            .filter(|(_, r)| !r)
            .map(|(i, _)| i)
            .collect();
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}
