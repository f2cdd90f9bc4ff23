//! `cargo bench`: the release server binary, started as a child process and driven over HTTP,
//! measured for session density, contact-fetch speed, API throughput, restart time and the
//! loss of a node in a cluster, on SQLite and (with `--postgres` or `--database
//! postgres://…`) on PostgreSQL.
//! Prints each scenario, then a Markdown table and one `BENCH {json}` line per scenario.
//! See BENCHMARKS.md for the last run and what the numbers mean.

mod api;
mod backend;
mod bridge;
mod cluster;
mod density;
mod fetch;
mod import;
mod load;
mod phones;
mod real;
mod report;
mod restart;
mod restart_real;
mod server;

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;

use backend::{Postgres, Target};
use report::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    DensitySim,
    DensityReal,
    Fetch,
    Import,
    Phones,
    Api,
    Restart,
    RestartReal,
    Cluster,
}

/// Which backends the scenarios run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "wam-bench",
    about = "Benchmarks of the whatsapp-manager server"
)]
pub struct Opts {
    /// Scenarios to run (all when none is named).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// density-sim: sessions initialised and linked on the sim engine.
    #[arg(long, default_value_t = 10_000)]
    pub sim_sessions: u64,
    /// density-real: sessions linked on the real engine against the fake server.
    #[arg(long, default_value_t = 1_000)]
    pub real_sessions: u64,
    /// fetch: entries in the phone book.
    #[arg(long, default_value_t = 100_000)]
    pub contacts: usize,
    /// api: live sessions while the status route is loaded.
    #[arg(long, default_value_t = 1_000)]
    pub api_sessions: u64,
    /// api: concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// api: seconds of measured load (after one second of warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub api_seconds: f64,
    /// restart: ready sessions the restarted server must bring back.
    #[arg(long, default_value_t = 1_000)]
    pub restart_sessions: u64,
    /// restart-real: sessions linked on the real engine, then brought back by a restart.
    #[arg(long, default_value_t = 1_000)]
    pub restart_real_sessions: u64,
    /// cluster: sim sessions initialised through the nodes, then moved off a killed one.
    #[arg(long, default_value_t = 1_000)]
    pub cluster_sessions: u64,
    /// cluster: nodes on the one PostgreSQL database.
    #[arg(long, default_value_t = 3)]
    pub cluster_nodes: usize,
    /// cluster: the nodes' --lease-seconds (the server's default).
    #[arg(long, default_value_t = 15)]
    pub cluster_lease_seconds: u64,
    /// cluster: seconds of measured status load through a node left (after one second of
    /// warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub cluster_api_seconds: f64,
    /// import: contacts upserted through the store, per batch size.
    #[arg(long, default_value_t = 100_000)]
    pub import_contacts: usize,
    /// A PostgreSQL server to measure on, as an admin URL (`postgres://user@host/postgres`):
    /// each scenario creates a fresh database on it (`wam_bench_<pid>_<n>`) and drops it
    /// after. The user must be allowed to create databases.
    #[arg(long, value_name = "URL", conflicts_with = "postgres")]
    database: Option<String>,
    /// Start a private PostgreSQL cluster for the run, durable as a production server
    /// (fsync, synchronous_commit, full_page_writes on), from the installed binaries.
    #[arg(long)]
    postgres: bool,
    /// Backends to run each scenario on [default: both when a PostgreSQL is given, else
    /// sqlite].
    #[arg(long, value_enum)]
    backend: Option<Backends>,
    /// `cargo bench` passes this to every benchmark binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    // The density-real scenario re-runs this binary as its server process.
    if let Some(done) = real::child_main() {
        return done;
    }
    let opts = Opts::parse();
    let scenarios = if opts.scenarios.is_empty() {
        vec![
            Scenario::DensitySim,
            Scenario::DensityReal,
            Scenario::Fetch,
            Scenario::Import,
            Scenario::Phones,
            Scenario::Api,
            Scenario::Restart,
            Scenario::RestartReal,
            Scenario::Cluster,
        ]
    } else {
        opts.scenarios.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    println!(
        "whatsapp-manager benchmarks: {} cores, binary {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        server::bin()
    );
    let targets = rt.block_on(targets(&opts))?;
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = Vec::new();
    // Each scenario on every backend before the next: the rows compared side by side ran
    // under the most similar load.
    for s in scenarios {
        for target in &targets {
            if s == Scenario::Cluster && target.backend == backend::Backend::Sqlite {
                println!("\n== Cluster on sqlite: skipped, nodes share a PostgreSQL database ==");
                continue;
            }
            let load = load_average();
            let t = Instant::now();
            let out = rt.block_on(async {
                let out = match s {
                    Scenario::DensitySim => density::sim(&opts, target).await,
                    Scenario::DensityReal => real::density(&opts, target).await,
                    Scenario::Fetch => fetch::run(&opts, target).await,
                    Scenario::Import => import::run(&opts, target).await,
                    Scenario::Phones => phones::run(&opts, target).await,
                    Scenario::Api => api::run(&opts, target).await,
                    Scenario::Restart => restart::run(&opts, target).await,
                    Scenario::RestartReal => restart_real::run(&opts, target).await,
                    Scenario::Cluster => cluster::run(&opts, target).await,
                };
                target.release().await;
                out
            });
            let name = format!("{s:?} on {}", target.backend.as_str());
            match out {
                Ok(mut row) => {
                    row.metric("scenario_seconds", t.elapsed().as_secs_f64(), "s")
                        .metric("load_before_1m", load, "");
                    row.print();
                    rows.push(row);
                }
                Err(e) => {
                    println!("\n== {name} FAILED ==\n{e:#}");
                    failed.push(name);
                }
            }
        }
    }
    report::print_table(&rows);
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        anyhow::bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The backends of this run, SQLite first; a private cluster starts here, once.
async fn targets(opts: &Opts) -> anyhow::Result<Vec<Target>> {
    let postgres = if opts.postgres {
        println!("starting a private PostgreSQL cluster (durable)");
        Some(Postgres::private().await?)
    } else if let Some(url) = &opts.database {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("--database takes a postgres:// admin URL; SQLite needs none");
        }
        Some(Postgres::existing(url).await?)
    } else {
        None
    };
    let wanted = opts.backend.unwrap_or(if postgres.is_some() {
        Backends::Both
    } else {
        Backends::Sqlite
    });
    let mut targets = Vec::new();
    if wanted != Backends::Postgres {
        targets.push(Target::sqlite());
    }
    if wanted != Backends::Sqlite {
        let Some(pg) = postgres else {
            bail!("--backend {wanted:?} needs a PostgreSQL: --postgres or --database postgres://…");
        };
        println!("postgres: {}", pg.settings);
        targets.push(Target::postgres(Arc::new(pg)));
    }
    Ok(targets)
}

/// The machine's 1-minute load average as the scenario starts: other work on the two cores
/// (a build, the previous scenario's tail) moves every number.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
