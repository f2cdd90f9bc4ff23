//! A cluster of real `serve` processes on one PostgreSQL database, each a node of its own:
//! the executable started N times on the simulated engine, each on a port of 127.0.0.1 picked
//! here (so a node restarts on the same address, as a node of a real deployment does), with
//! its own `--node-id` and a short `--lease-seconds`. Nodes are killed (`kill -9`), stopped
//! (SIGTERM) and started again with the same flags. Each node's stderr goes to a file of its
//! own, appended across restarts, so what a killed node said is kept; when a test fails the
//! files are kept and the end of each is printed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::db::TestDb;

/// The admin key every node is started with and every helper sends.
pub const ADMIN_KEY: &str = "cluster-admin-key-2b7e14";
/// How long a node may take to answer its first request; a loaded machine starts three
/// processes, each migrating or joining, at once.
const START_WAIT: Duration = Duration::from_secs(90);
/// Lines of each node's log printed when a test fails (the whole file is kept).
const TAIL_LINES: usize = 120;

/// What every node of a [`Nodes`] is started with.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub lease_seconds: u64,
    /// Any further flags, the same for every node.
    pub extra: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            lease_seconds: 5,
            extra: Vec::new(),
        }
    }
}

/// One `serve` process of the cluster (or its place while it is down).
pub struct Node {
    /// Its `--node-id`: `n0`, `n1`, …
    pub id: String,
    /// `http://127.0.0.1:<port>`, also its advertised address.
    pub base: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// N nodes on one fresh PostgreSQL database; every process ends when this is dropped.
pub struct Nodes {
    bin: PathBuf,
    pub nodes: Vec<Node>,
    client: reqwest::Client,
    /// Holds the logs and the data folders; kept (not removed) when a test fails.
    dir: Option<tempfile::TempDir>,
    // Dropped after the processes (declared last): the database outlives its clients.
    pub db: TestDb,
}

/// A port of 127.0.0.1 free a moment ago. Another process may take it before the node binds
/// it; the node then fails to start and says so in its log.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Nodes {
    /// `n` nodes of the executable `bin` on a new PostgreSQL database, every one answering.
    pub async fn start(bin: impl AsRef<Path>, n: usize, opts: NodeOptions) -> Nodes {
        let db = crate::pg::database().await;
        let dir = tempfile::Builder::new()
            .prefix("wam-cluster-")
            .tempdir()
            .expect("a temporary folder for the nodes");
        let mut nodes = Nodes {
            bin: bin.as_ref().to_path_buf(),
            nodes: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            dir: Some(dir),
            db,
        };
        for i in 0..n {
            let node = nodes.new_node(format!("n{i}"), &opts);
            nodes.nodes.push(node);
        }
        for i in 0..n {
            nodes.spawn(i);
        }
        for i in 0..n {
            nodes.wait_answering(i).await;
        }
        nodes
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the nodes' folder").path()
    }

    fn new_node(&self, id: String, opts: &NodeOptions) -> Node {
        let port = free_port();
        let data = self.dir().join(&id);
        let mut args: Vec<String> = [
            "serve",
            "--engine",
            "sim",
            "--database",
            &self.db.url,
            "--data-dir",
            &data.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-id",
            &id,
            "--lease-seconds",
            &opts.lease_seconds.to_string(),
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.extend(opts.extra.iter().cloned());
        Node {
            log: self.dir().join(format!("{id}.log")),
            base: format!("http://127.0.0.1:{port}"),
            id,
            args,
            child: None,
        }
    }

    /// The command of a node with these arguments: no engine or database from the
    /// environment, the admin key, logs at info.
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_remove("WAM_ENGINE")
            .env_remove("DATABASE_URL")
            .env_remove("WAM_NODE_ID")
            .env("WAM_API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .expect("the node's log file");
        let _ = writeln!(log, "---- test: starting {} ----", self.nodes[i].id);
        let mut cmd = self.command(&self.nodes[i].args);
        cmd.stderr(Stdio::from(log));
        let child = cmd.spawn().expect("start a node");
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` answers `GET /api/health`; panics with its log if it ends first.
    async fn wait_answering(&mut self, i: usize) {
        let deadline = Instant::now() + START_WAIT;
        let url = format!("{}/api/health", self.nodes[i].base);
        loop {
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!(
                    "node {} ended at start ({exit}):\n{}",
                    self.nodes[i].id,
                    self.logs(i)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not answer within {START_WAIT:?}:\n{}",
                self.nodes[i].id,
                self.logs(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn base(&self, i: usize) -> &str {
        &self.nodes[i].base
    }

    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    /// The index of the node with this `--node-id`.
    pub fn index_of(&self, node_id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == node_id)
    }

    /// Everything node `i` logged so far, restarts included.
    pub fn logs(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Whether node `i`'s process runs.
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`: the node goes without a word, its leases left to run out.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to node `i` (and returns at once).
    pub fn terminate(&mut self, i: usize) {
        let child = self.nodes[i].child.as_ref().expect("a running node");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: a plain signal to our own child, which has not been waited for yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM to node {}", self.nodes[i].id);
    }

    /// Waits (`within` at most) for node `i` to end; its exit code.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.nodes[i].child.as_mut().expect("a started node");
            if let Some(status) = child.try_wait().expect("wait for a node") {
                self.nodes[i].child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not end within {within:?}:\n{}",
                self.nodes[i].id,
                self.logs(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `i` again with the same flags (same id, same address) and waits until it
    /// answers.
    pub async fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "node {} still runs",
            self.nodes[i].id
        );
        self.spawn(i);
        self.wait_answering(i).await;
    }

    /// Runs `serve` with these arguments (the admin key given, nothing from the environment)
    /// until it ends by itself, `within` at most: its exit code and what it logged.
    pub async fn run_to_exit(
        bin: impl AsRef<Path>,
        args: &[String],
        within: Duration,
    ) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log_path = dir.path().join("serve.log");
        let log = File::create(&log_path).expect("a log file");
        let mut child = Command::new(bin.as_ref())
            .args(args)
            .env_remove("WAM_ENGINE")
            .env_remove("DATABASE_URL")
            .env_remove("WAM_NODE_ID")
            .env("WAM_API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start serve");
        let deadline = Instant::now() + within;
        let code = loop {
            if let Some(status) = child.try_wait().expect("wait for serve") {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve {args:?} still ran after {within:?}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (code, std::fs::read_to_string(&log_path).unwrap_or_default())
    }

    /// A request to node `i` with the admin key: its status and JSON body (`Null` when the
    /// body is not JSON), or the transport error.
    pub async fn try_call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.nodes[i].base))
            .header("x-api-key", ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// [`Nodes::try_call`], panicking when node `i` cannot be reached.
    pub async fn call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        match self.try_call(i, method.clone(), path, body).await {
            Ok(answer) => answer,
            Err(e) => panic!("{method} {path} on node {}: {e}", self.nodes[i].id),
        }
    }

    pub async fn get(&self, i: usize, path: &str) -> (StatusCode, Value) {
        self.call(i, Method::GET, path, None).await
    }

    pub async fn post(&self, i: usize, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(i, Method::POST, path, Some(body)).await
    }

    /// An open request to node `i` (the event stream), headers read.
    pub async fn open(&self, i: usize, path: &str) -> reqwest::Response {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.nodes[i].base))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on node {}: {e}", self.nodes[i].id));
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            return;
        }
        // A failed test: what each node said last, and where the whole of it stays.
        let kept = self.dir.take().map(tempfile::TempDir::keep);
        for node in &self.nodes {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
            eprintln!(
                "==== node {} ({}), last {TAIL_LINES} lines of {} ====\n{tail}",
                node.id,
                node.base,
                node.log.display()
            );
        }
        if let Some(dir) = kept {
            eprintln!("==== the nodes' logs are kept in {} ====", dir.display());
        }
    }
}
