//! A closed-loop HTTP/1.1 load generator: each connection sends its next request as soon as
//! the previous answer is read, so latency and throughput are the server's at that concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::server::ADMIN_KEY;

pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// `connections` keep-alive connections to `127.0.0.1:port`, cycling through `paths` for
/// `warmup` (not counted) then `measure`; a non-200 answer counts as an error.
pub async fn run(
    port: u16,
    paths: Arc<Vec<String>>,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<LoadResult> {
    if paths.is_empty() {
        bail!("no paths to request");
    }
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let paths = paths.clone();
        tasks.spawn(async move { connection(port, paths, c, start, end).await });
    }
    let mut latencies_us: Vec<u32> = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r.context("load task")??;
        latencies_us.extend(l);
        errors += e;
    }
    latencies_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(latencies_us[i]) / 1000.0
    };
    Ok(LoadResult {
        requests: latencies_us.len() as u64,
        errors,
        seconds: measure.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}

/// One connection's latencies (µs) of requests sent within `[start, end)`, and its errors.
async fn connection(
    port: u16,
    paths: Arc<Vec<String>>,
    offset: usize,
    start: Instant,
    end: Instant,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let host = format!("127.0.0.1:{port}");
    let mut latencies = Vec::with_capacity(64 * 1024);
    let mut errors = 0;
    let mut i = offset;
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let req = hyper::Request::get(paths[i % paths.len()].as_str())
            .header(hyper::header::HOST, host.as_str())
            .header("x-api-key", ADMIN_KEY)
            .body(Empty::<Bytes>::new())?;
        i += 1;
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let ok = res.status() == hyper::StatusCode::OK;
        res.into_body().collect().await?;
        if sent >= start {
            latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            if !ok {
                errors += 1;
            }
        }
    }
    Ok((latencies, errors))
}
