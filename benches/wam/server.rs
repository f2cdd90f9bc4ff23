//! A server under measurement: a child process, its announced port, its resident memory, and a
//! client that sends the admin key.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// The release binary `cargo bench` builds next to this benchmark.
const BUILT_BIN: &str = env!("CARGO_BIN_EXE_whatsapp-manager");
/// Names another server binary: a copy taken aside, so that a build from another checkout
/// into the same target directory cannot swap the binary under a long run.
const BIN_VAR: &str = "WAM_BENCH_SERVER_BIN";

/// The server binary the scenarios start.
pub fn bin() -> String {
    std::env::var(BIN_VAR).unwrap_or_else(|_| BUILT_BIN.to_string())
}
/// Production runs with a key, so every measured request pays for its check.
pub const ADMIN_KEY: &str = "bench-admin-key-2f9c41d7e0";
const KEPT_LOG_LINES: usize = 200;

pub struct ServerProcess {
    child: Child,
    pub port: u16,
    logs: Arc<Mutex<VecDeque<String>>>,
    pub api: Api,
}

impl ServerProcess {
    /// `whatsapp-manager serve` on an OS-chosen loopback port, its state in `database`,
    /// its data directory under `dir`.
    pub fn serve_sim(dir: &Path, database: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--engine", "sim"])
            .arg("--database")
            .arg(database)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .env("WAM_API_KEY", ADMIN_KEY)
            .env_remove("RUST_LOG");
        Self::spawn(cmd)
    }

    /// Any command that logs "listening on http://<ip>:<port>" to stderr when it is up.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {cmd:?}"))?;
        let stderr = child.stderr.take().context("child stderr")?;
        let logs = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LOG_LINES)));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let port = rest.split([':', ' ']).nth(1).unwrap_or("").parse::<u16>();
                    let _ = port_tx.send(port);
                }
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() == KEPT_LOG_LINES {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(p)) => p,
            _ => {
                let _ = child.kill();
                bail!("the server did not start:\n{}", tail(&logs));
            }
        };
        Ok(Self {
            child,
            port,
            api: Api::new(&format!("http://127.0.0.1:{port}"))?,
            logs,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the whole process, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid())
    }

    pub fn logs(&self) -> String {
        tail(&self.logs)
    }

    /// SIGKILL: the process ends mid-step, as a machine that dies; nothing of it runs after.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a process manager stops it, then wait for the exit.
    pub fn stop(mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("run kill")?
            .success();
        if !ok {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the server did not stop within 30 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(logs: &Mutex<VecDeque<String>>) -> String {
    let l = logs.lock().unwrap_or_else(|e| e.into_inner());
    l.iter().cloned().collect::<Vec<_>>().join("\n")
}

pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// The JSON API, as the back office calls it.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .default_headers(
                [(
                    reqwest::header::HeaderName::from_static("x-api-key"),
                    reqwest::header::HeaderValue::from_static(ADMIN_KEY),
                )]
                .into_iter()
                .collect(),
            )
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            base: base.to_string(),
            http,
        })
    }

    async fn check(res: reqwest::Response, what: &str) -> anyhow::Result<Value> {
        let status = res.status();
        let body: Value = res.json().await.with_context(|| format!("{what}: body"))?;
        if !status.is_success() {
            bail!("{what}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        Self::check(res, path).await
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path_and_query}"))?;
        Self::check(res, path_and_query).await
    }

    pub async fn init(&self, user_id: u64, place_id: u64) -> anyhow::Result<Value> {
        self.post(
            "/api/whatsapp/init",
            &json!({"user_id": user_id, "place_id": place_id}),
        )
        .await
    }

    pub async fn status(&self, user_id: u64, place_id: u64) -> anyhow::Result<Value> {
        self.get(&format!(
            "/api/whatsapp/status?user_id={user_id}&place_id={place_id}"
        ))
        .await
    }

    /// Sessions by status, service-wide (`/api/whatsapp/stats`).
    pub async fn count(&self, status: &str) -> anyhow::Result<u64> {
        let s = self.get("/api/whatsapp/stats").await?;
        s["data"]["sessions_by_status"][status]
            .as_u64()
            .ok_or_else(|| anyhow!("stats without sessions_by_status.{status}: {s}"))
    }

    /// Polls the stats until `n` sessions are `status`, or `limit` passes.
    pub async fn wait_count(&self, status: &str, n: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let have = self.count(status).await?;
            if have >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{have} of {n} sessions {status} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
