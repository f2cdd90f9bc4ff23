//! The server binary as a child process: its stderr (the logs) collected as it goes, on
//! either backend.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::child::spawn_and_wait_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-manager");
/// Every server here runs as in production: with an admin key, sent by its client.
pub const ADMIN_KEY: &str = "process-admin-key-5f1c9a";
/// How long a wait for a status lasts at most; it ends as soon as the status is there.
const WAIT: Duration = Duration::from_secs(90);

/// The server as a child process, its stderr (the logs) collected as it goes.
pub struct Server {
    child: Child,
    logs: Arc<Mutex<String>>,
    pub base: String,
    client: reqwest::Client,
}

/// `serve` on a database URL and a data folder, with the admin key and `extra` flags; a
/// `--listen` on 127.0.0.1:0 unless `extra` has one.
pub fn serve(database: &str, data_dir: &Path, extra: &[&str]) -> Command {
    let listen = if extra.contains(&"--listen") {
        &[][..]
    } else {
        &["--listen", "127.0.0.1:0"][..]
    };
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(listen)
        .args(["--database", database, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("WAM_ENGINE")
        .env_remove("DATABASE_URL")
        .env("WAM_API_KEY", ADMIN_KEY)
        .env("RUST_LOG", "info");
    cmd
}

impl Server {
    /// On the sim engine, with its SQLite database and data folder in `dir`.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        let db = format!("sqlite://{}", dir.join("wam.db").display());
        Self::start_on(&db, &dir.join("data"), extra).await
    }

    /// On the sim engine and the database of this URL, either backend.
    pub async fn start_on(database: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--engine", "sim"];
        args.extend_from_slice(extra);
        Self::spawn(serve(database, data_dir, &args))
    }

    /// Without `--engine`: the default, real engine.
    pub async fn start_raw(dir: &Path, extra: &[&str]) -> Server {
        let db = format!("sqlite://{}", dir.join("wam.db").display());
        Self::spawn(serve(&db, &dir.join("data"), extra))
    }

    pub fn spawn(mut cmd: Command) -> Server {
        let (child, logs, port) = spawn_and_wait_port(&mut cmd);
        Server {
            child,
            logs,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(ADMIN_KEY, method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        (res.status(), res.json().await.expect("json"))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn status(&self) -> Value {
        self.status_of(1, 2).await
    }

    pub async fn status_of(&self, user: i64, place: i64) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/api/whatsapp/status?user_id={user}&place_id={place}"),
            None,
        )
        .await
        .1["data"]
            .clone()
    }

    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_of(1, 2, what, ok).await
    }

    /// Polls the pair's status until `ok` holds, [`WAIT`] at most.
    pub async fn wait_for_of(
        &self,
        user: i64,
        place: i64,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let st = self.status_of(user, place).await;
            if ok(&st) {
                return st;
            }
            assert!(Instant::now() < deadline, "never {what}: {st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_status(&self, want: &str) -> Value {
        self.wait_for(want, |s| s["status"] == want).await
    }

    pub async fn wait_status_of(&self, user: i64, place: i64, want: &str) -> Value {
        self.wait_for_of(user, place, want, |s| s["status"] == want)
            .await
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return (st.code(), t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pair() -> Value {
    json!({"user_id": 1, "place_id": 2})
}

pub fn book(n: usize) -> Value {
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"jid": format!("9665{:08}@s.whatsapp.net", 10_000_000 + i),
                   "name": format!("C{i}"), "last_message_at": now - (i as i64 % 200) * 86_400})
        })
        .collect();
    json!({"user_id": 1, "place_id": 2, "me": "966500000001@s.whatsapp.net", "entries": entries})
}
