//! density-real: sessions linked on the real engine (the whatsapp-rust client, its device
//! store in the service's database, our session actor) in a server process of their own,
//! against the fake WhatsApp server; the server's resident memory per linked session and
//! the time to link. [`Fake`] and [`link_all`] serve restart-real too.
//!
//! The release binary only dials wss://web.whatsapp.com, so the server is this benchmark
//! binary run again ([`child_main`]): the real application as `main` builds it, except that
//! its connections go over loopback to this process (see [`crate::bridge`]), where the fake
//! runs. The fake's memory therefore stays out of the measured process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use fake_whatsapp::FakeWhatsApp;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use whatsapp_manager::config::EngineKind;
use whatsapp_manager::engine::whatsapp::WhatsAppOptions;
use whatsapp_manager::logging::EmojiPrefix;
use whatsapp_manager::{Application, Config};

use crate::Opts;
use crate::backend::Target;
use crate::bridge::{self, BridgeFactory};
use crate::report::Row;
use crate::server::{self, Api, ServerProcess};

/// Set to [`ROLE`] in the server process; the other variables are its configuration.
const ROLE_VAR: &str = "WAM_BENCH_ROLE";
const ROLE: &str = "real-server";
const LISTEN_VAR: &str = "WAM_BENCH_LISTEN";
const DATABASE_VAR: &str = "WAM_BENCH_DATABASE";
const DATA_DIR_VAR: &str = "WAM_BENCH_DATA_DIR";
const ADMIN_KEY_VAR: &str = "WAM_BENCH_ADMIN_KEY";
const BRIDGE_VAR: &str = "WAM_BENCH_BRIDGE";

/// Sessions being linked at once: enough to keep both cores busy, few enough that each
/// one's QR code is scanned long before it rotates.
const IN_FLIGHT: usize = 32;
/// Time for the allocator and the libraries' background work to come to rest before RSS
/// is read.
const SETTLE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);
/// One session's wait for a status, on a box busy linking the others.
const STATUS_WAIT: Duration = Duration::from_secs(120);
const MIB: f64 = 1024.0 * 1024.0;

/// `Some` when this process was started as the density-real server.
pub fn child_main() -> Option<anyhow::Result<()>> {
    let role = std::env::var_os(ROLE_VAR)?;
    Some(if role == ROLE {
        child_run()
    } else {
        Err(anyhow::anyhow!("{ROLE_VAR}={role:?}: unknown role"))
    })
}

/// The server process, set up like `main`: a multi-threaded runtime, the default log
/// filter and format, and a stop on SIGTERM or ctrl-c that lets every session close.
fn child_run() -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    let mut config = Config::defaults();
    config.engine = EngineKind::Whatsapp;
    config.listen = var(LISTEN_VAR)?;
    config.database_url = var(DATABASE_VAR)?;
    config.data_dir = var(DATA_DIR_VAR)?.into();
    config.admin_key = Some(whatsapp_manager::auth::AdminKeyHash::of(&var(
        ADMIN_KEY_VAR,
    )?));
    let bridge: SocketAddr = var(BRIDGE_VAR)?
        .parse()
        .with_context(|| format!("{BRIDGE_VAR} is not an address"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(child_serve(config, bridge));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn child_serve(config: Config, bridge: SocketAddr) -> anyhow::Result<()> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(whatsapp_manager::logging::filter())
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .event_format(EmojiPrefix(
            tracing_subscriber::fmt::format()
                .with_target(false)
                .with_ansi(ansi),
        ))
        .init();
    let app = Application::builder(config)
        .whatsapp(WhatsAppOptions {
            transport: Some(Arc::new(BridgeFactory { addr: bridge })),
            // The fake does not check it; a pinned version spares the fetch from the web.
            version: Some((2, 3000, 1_000_000_000)),
            ..WhatsAppOptions::default()
        })
        .build()
        .await
        .context("cannot start")?;
    // Logs "listening on http://…", which `ServerProcess::spawn` waits for.
    app.run_until_stopped(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM, as `main` stops.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!("ℹ️ Stop signal received");
}

/// The fake WhatsApp server in this process, and the bridge the server processes reach it
/// through; it outlives the server processes, so a restarted one finds its devices known.
pub struct Fake {
    pub fake: FakeWhatsApp,
    bridge: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Fake {
    pub async fn start() -> anyhow::Result<Self> {
        let fake = FakeWhatsApp::new();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let bridge = listener.local_addr()?;
        let accept = tokio::spawn(bridge::serve(listener, fake.clone()));
        Ok(Self {
            fake,
            bridge,
            accept,
        })
    }

    /// A real-engine server process on `database`, its data directory `data_dir`; returns
    /// once it listens.
    pub async fn serve(&self, database: &str, data_dir: &Path) -> anyhow::Result<ServerProcess> {
        let mut cmd = Command::new(std::env::current_exe().context("this benchmark's path")?);
        cmd.env(ROLE_VAR, ROLE)
            .env(LISTEN_VAR, "127.0.0.1:0")
            .env(DATABASE_VAR, database)
            .env(DATA_DIR_VAR, data_dir)
            .env(ADMIN_KEY_VAR, server::ADMIN_KEY)
            .env(BRIDGE_VAR, self.bridge.to_string())
            .env_remove("RUST_LOG");
        tokio::task::spawn_blocking(move || ServerProcess::spawn(cmd)).await?
    }
}

/// The bridge's accept loop ends with the scenario, however it ends.
impl Drop for Fake {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub async fn density(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.real_sessions;
    ensure!(n > 0, "--real-sessions must be at least 1");
    let dir = tempfile::tempdir()?;
    let harness = Fake::start().await?;
    let fake = &harness.fake;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let srv = harness.serve(&database, &dir.path().join("data")).await?;
    let pid = srv.pid();
    println!("density-real: server pid {pid}, {n} sessions, {IN_FLIGHT} linking at once");

    tokio::time::sleep(SETTLE).await;
    let base = ProcStats::read(pid)?;

    // Two halves, each measured at rest: the second half's growth is the slope per session
    // with the fixed costs (runtime, pools, first-use caches) already paid.
    let half = n / 2;
    let mut latencies = Vec::with_capacity(n as usize);
    let mut link = Duration::ZERO;
    let mut mid = None;
    for range in [0..half, half..n] {
        if range.is_empty() {
            continue;
        }
        let t = Instant::now();
        let mut l = link_all(&srv.api, fake, range.clone())
            .await
            .with_context(|| format!("server log, last lines:\n{}", srv.logs()))?;
        link += t.elapsed();
        latencies.append(&mut l);
        println!(
            "density-real: {} ready after {:.1} s",
            range.end,
            link.as_secs_f64()
        );
        tokio::time::sleep(SETTLE).await;
        if range.end < n {
            mid = Some((range.end, ProcStats::read(pid)?));
        }
    }
    let total = ProcStats::read(pid)?;
    let ready = srv.api.count("ready").await?;
    ensure!(
        ready == n,
        "{ready} of {n} sessions are ready after linking"
    );
    let connections = fake.connection_count();

    // A link that only got through after retries would still count as ready: say so.
    let log = srv.logs();
    let troubles: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let stop = tokio::task::spawn_blocking(move || srv.stop()).await?;

    let mut row = Row::new("density-real", target);
    // Signed: with few sessions the allocator may give back more than they took.
    let grew = |from: u64, to: u64| (to as f64 - from as f64) / MIB;
    let per_session = grew(base.rss, total.rss) / n as f64;
    row.metric("sessions", n as f64, "")
        .metric("rss_baseline_mib", base.rss as f64 / MIB, "MiB");
    if let Some((at, m)) = &mid {
        row.metric("rss_half_mib", m.rss as f64 / MIB, "MiB")
            .metric(
                "rss_per_session_2nd_half_mib",
                grew(m.rss, total.rss) / (n - at) as f64,
                "MiB",
            );
    }
    row.metric("rss_total_mib", total.rss as f64 / MIB, "MiB")
        .metric("rss_per_session_mib", per_session, "MiB")
        .metric(
            "rss_anon_per_session_mib",
            grew(base.anon, total.anon) / n as f64,
            "MiB",
        )
        .metric("link_seconds", link.as_secs_f64(), "s")
        .metric("sessions_per_second", n as f64 / link.as_secs_f64(), "/s")
        .metric("link_p50_seconds", percentile(&mut latencies, 0.50), "s")
        .metric("link_p95_seconds", percentile(&mut latencies, 0.95), "s")
        .metric("threads", total.threads as f64, "")
        .metric("open_fds", total.fds as f64, "")
        .metric(
            "open_fds_per_session",
            (total.fds as f64 - base.fds as f64) / n as f64,
            "",
        )
        .metric("fake_connections", connections as f64, "");
    match &stop {
        Ok(d) => {
            row.metric("stop_seconds", d.as_secs_f64(), "s");
        }
        Err(e) => {
            row.note(format!("the server did not stop cleanly: {e:#}"));
        }
    }
    if let Some(first) = troubles.first() {
        row.note(format!(
            "{} warnings or errors in the server's last log lines, the first: {first}",
            troubles.len()
        ));
    }
    row.target("rss_per_session_mib", true, 0.35, "MiB")
        .note(
            "RSS of the server process alone: per session a whatsapp-rust client (its Noise \
             socket, caches and tasks), our session actor and event pump, and its rows in the \
             service database, which also holds every device's keys (one pool for all); the \
             fake WhatsApp server runs in the benchmark process",
        )
        .note(
            "each client's connection is a loopback TCP socket to the benchmark instead of TLS \
             + websocket to WhatsApp, so the transport's buffers and TLS state are not in the \
             number",
        )
        .note(format!(
            "linked {IN_FLIGHT} at a time: init, poll status to qr_ready, decode the PNG QR, \
             the fake phone scans, poll to ready; link_seconds is the first init to the last \
             ready of each half, summed (the pause to sample RSS at the half is left out); \
             per-session latency is init to ready"
        ))
        .note(format!(
            "RSS {:.1} MiB anonymous + {:.1} MiB file-backed at the end; {} threads",
            total.anon as f64 / MIB,
            total.file as f64 / MIB,
            total.threads
        ));
    drop(dir);
    Ok(row)
}

/// Links sessions `range` with at most [`IN_FLIGHT`] under way; each one's time from init
/// to ready.
pub async fn link_all(
    api: &Api,
    fake: &FakeWhatsApp,
    range: std::ops::Range<u64>,
) -> anyhow::Result<Vec<f64>> {
    futures::stream::iter(range)
        .map(|i| link_one(api, fake, i))
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}

/// One tenant links one number, as the back office and a phone would.
async fn link_one(api: &Api, fake: &FakeWhatsApp, i: u64) -> anyhow::Result<f64> {
    let (user_id, place_id) = (1 + i / 100, 1 + i % 100);
    let phone = format!("9665{i:08}");
    let t = Instant::now();
    let what = || format!("session {i} (user {user_id}, place {place_id})");
    api.init(user_id, place_id)
        .await
        .with_context(|| format!("{}: init", what()))?;
    let st = wait_status(api, user_id, place_id, "qr_ready")
        .await
        .with_context(what)?;
    let url = st["qr_code"]
        .as_str()
        .with_context(|| format!("{}: qr_ready without qr_code: {st}", what()))?
        .to_string();
    let payload = tokio::task::spawn_blocking(move || decode_qr(&url))
        .await?
        .with_context(what)?;
    fake.scan(&payload, &phone, &format!("Shop {i}"))
        .await
        .with_context(|| format!("{}: scan", what()))?;
    wait_status(api, user_id, place_id, "ready")
        .await
        .with_context(what)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Polls the session until its status is `want`; a status that will not get there by
/// itself ends the wait at once.
async fn wait_status(api: &Api, user_id: u64, place_id: u64, want: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + STATUS_WAIT;
    loop {
        let body = api.status(user_id, place_id).await?;
        let st = &body["data"];
        match st["status"].as_str() {
            Some(s) if s == want && (want != "qr_ready" || st["qr_code"].is_string()) => {
                return Ok(st.clone());
            }
            Some(s @ ("failed" | "logged_out")) => bail!("{s} while waiting for {want}: {st}"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("not {want} after {STATUS_WAIT:?}: {st}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the QR image in a `data:image/png;base64,` URL says.
fn decode_qr(data_url: &str) -> anyhow::Result<String> {
    let b64 = data_url
        .strip_prefix("data:image/png;base64,")
        .context("qr_code is not a PNG data URL")?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("qr_code: bad base64")?;
    let img = image::load_from_memory(&png)
        .context("qr_code: not a PNG")?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    let grid = grids.first().context("no QR code in the image")?;
    let (_, text) = grid.decode().context("undecodable QR code")?;
    Ok(text)
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What /proc says about the server process.
pub struct ProcStats {
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
    pub threads: u64,
    pub fds: u64,
}

impl ProcStats {
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("read /proc/{pid}/fd"))?
            .count() as u64;
        Ok(Self {
            rss: server::rss_bytes(pid)?,
            anon: field("RssAnon")? * 1024,
            file: field("RssFile")? * 1024,
            threads: field("Threads")?,
            fds,
        })
    }
}
