//! restart-real: sessions linked on the real engine against the fake WhatsApp server, the
//! server stopped (SIGTERM) and started again on the same database; the time until every
//! session is `ready` again. Each one reads its credentials from the database, resumes with
//! a Noise IK handshake (the server key it cached) and logs in; none shows a QR code.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::Opts;
use crate::backend::Target;
use crate::real::{Fake, ProcStats, link_all};
use crate::report::Row;
use crate::restart::wait_all_ready;

const MIB: f64 = 1024.0 * 1024.0;
/// Generous: the target is 10 s, but a loaded machine must still finish the run.
const READY_LIMIT: Duration = Duration::from_secs(300);

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.restart_real_sessions;
    ensure!(n > 0, "--restart-real-sessions must be at least 1");
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let harness = Fake::start().await?;
    let fake = &harness.fake;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let srv = harness.serve(&database, &data).await?;
    let t = Instant::now();
    link_all(&srv.api, fake, 0..n)
        .await
        .with_context(|| format!("server log, last lines:\n{}", srv.logs()))?;
    let link = t.elapsed();
    println!(
        "restart-real: {n} linked in {:.1} s, stopping",
        link.as_secs_f64()
    );
    let stop = tokio::task::spawn_blocking(move || srv.stop()).await??;

    let ik_before = fake.ik_handshakes();
    let t = Instant::now();
    let srv = harness.serve(&database, &data).await?;
    let listening = t.elapsed();
    wait_all_ready(&srv.api, n, t, READY_LIMIT)
        .await
        .with_context(|| format!("server log, last lines:\n{}", srv.logs()))?;
    let ready = t.elapsed();
    let resumed = fake.ik_handshakes() - ik_before;
    ensure!(
        resumed >= n,
        "{resumed} IK handshakes for {n} sessions: some came back without their stored keys"
    );
    let after = ProcStats::read(srv.pid())?;
    let again = tokio::task::spawn_blocking(move || srv.stop()).await??;

    let mut row = Row::new("restart-real", target);
    row.metric("sessions", n as f64, "")
        .metric("link_seconds", link.as_secs_f64(), "s")
        .metric("stop_seconds", stop.as_secs_f64(), "s")
        .metric("listening_seconds", listening.as_secs_f64(), "s")
        .metric("all_ready_seconds", ready.as_secs_f64(), "s")
        .metric("ik_handshakes", resumed as f64, "")
        .metric("rss_after_restart_mib", after.rss as f64 / MIB, "MiB")
        .metric("second_stop_seconds", again.as_secs_f64(), "s")
        .target("all_ready_seconds", true, 10.0, "s")
        .note(
            "all_ready = the restarted process started → every session's status route says \
             ready, with the same session id and no QR code: per session the credentials read \
             from the database, a Noise IK handshake with the fake (over loopback TCP through \
             the benchmark, no TLS) and its login",
        )
        .note(
            "rss_after_restart is the server just after all are ready again, before any \
             settling: it is not comparable with density-real's per-session figure",
        );
    Ok(row)
}
