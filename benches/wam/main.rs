//! `cargo bench`: the release server binary, started as a child process and driven over HTTP,
//! measured for session density, contact-fetch speed, API throughput and restart time.
//! Prints each scenario, then a Markdown table and one `BENCH {json}` line per scenario.
//! See BENCHMARKS.md for the last run and what the numbers mean.

mod api;
mod bridge;
mod density;
mod fetch;
mod load;
mod phones;
mod real;
mod report;
mod restart;
mod server;

use std::time::Instant;

use clap::Parser;

use report::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    DensitySim,
    DensityReal,
    Fetch,
    Phones,
    Api,
    Restart,
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
            Scenario::Phones,
            Scenario::Api,
            Scenario::Restart,
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
        server::BIN
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = Vec::new();
    for s in scenarios {
        let t = Instant::now();
        let out = rt.block_on(async {
            match s {
                Scenario::DensitySim => density::sim(&opts).await,
                Scenario::DensityReal => real::density(&opts).await,
                Scenario::Fetch => fetch::run(&opts).await,
                Scenario::Phones => phones::run(&opts).await,
                Scenario::Api => api::run(&opts).await,
                Scenario::Restart => restart::run(&opts).await,
            }
        });
        match out {
            Ok(mut row) => {
                row.metric("scenario_seconds", t.elapsed().as_secs_f64(), "s");
                row.print();
                rows.push(row);
            }
            Err(e) => {
                println!("\n== {s:?} FAILED ==\n{e:#}");
                failed.push(format!("{s:?}"));
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
