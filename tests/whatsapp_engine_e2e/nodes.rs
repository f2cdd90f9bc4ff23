//! Two nodes of the real engine on one PostgreSQL database: a linked device whose node dies
//! (`kill -9`) comes back `ready` on the other node with its keys from the database, the
//! same session, no QR code and no new pairing on the phone.
//!
//! A node is a process of its own, so that `kill -9` is a real loss (no stop, no release of
//! its leases). The release binary only dials WhatsApp, so each node is this test binary run
//! again ([`node_process`]): the application `main` builds from the same `serve` flags, its
//! connections going over loopback TCP to the fake WhatsApp server in the test process,
//! through the benchmark's bridge (`benches/wam/bridge.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::wa::{ADMIN_KEY, PHONE, PLACE, WAIT, decode_qr_png, default_groups};
use tokio::net::TcpListener;
use whatsapp_manager::config::{Cli, Command as CliCommand};
use whatsapp_manager::engine::whatsapp::WhatsAppOptions;
use whatsapp_manager::{Application, Config};

#[path = "../../benches/wam/bridge.rs"]
mod bridge;

/// The node's `serve` flags, one per line; set only in a node process.
const ARGS_VAR: &str = "WAM_TEST_NODE_ARGS";
/// Where the fake WhatsApp server's bridge listens, in the test process.
const BRIDGE_VAR: &str = "WAM_TEST_NODE_BRIDGE";
/// This file's node entry point, as the test harness names it.
const NODE_TEST: &str = "nodes::node_process";
/// Short, so that the takeover after a loss is seconds away; at least 3 (the flag's floor).
const LEASE_SECONDS: u64 = 5;

/// Not a test: the entry point of a node process that [`Node::start`] runs. Run without
/// the variables a node gets, it refuses.
#[test]
#[ignore = "a node process of the tests below, started by them"]
fn node_process() {
    let args = std::env::var(ARGS_VAR)
        .unwrap_or_else(|_| panic!("{NODE_TEST} runs only as a node the tests of nodes start"));
    let bridge: SocketAddr = std::env::var(BRIDGE_VAR)
        .expect("the bridge's address")
        .parse()
        .expect("the bridge's address");
    let cli = Cli::try_parse_from(
        ["whatsapp-manager", "serve"]
            .into_iter()
            .map(str::to_string)
            .chain(args.lines().map(str::to_string)),
    )
    .unwrap_or_else(|e| panic!("the node's flags: {e}"));
    let CliCommand::Serve(serve) = cli.command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve_node(Config::from(serve), bridge));
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// As `main` serves, until SIGTERM (a `kill -9` never gets here).
async fn serve_node(config: Config, bridge: SocketAddr) {
    tracing_subscriber::fmt()
        .with_env_filter(whatsapp_manager::logging::filter())
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let app = Application::builder(config)
        .whatsapp(WhatsAppOptions {
            transport: Some(Arc::new(bridge::BridgeFactory { addr: bridge })),
            // The fake does not check it; a pinned version spares the fetch from the web.
            version: Some((2, 3000, 1_000_000_000)),
            ..WhatsAppOptions::default()
        })
        .build()
        .await
        .unwrap_or_else(|e| panic!("the node cannot start: {e:#}"));
    // Logs "listening on http://…", which the test waits for.
    app.run_until_stopped(async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        } else {
            std::future::pending::<()>().await;
        }
    })
    .await
    .expect("the node stops cleanly");
}

/// A node process and the client the back office would use on it.
struct Node {
    id: &'static str,
    child: Child,
    logs: Arc<Mutex<String>>,
    base: String,
    http: reqwest::Client,
}

impl Node {
    /// `serve --engine whatsapp --node-id <id>` on `database`, its own data folder under
    /// `dir`; returns once it listens.
    fn start(id: &'static str, database: &str, dir: &Path, bridge: SocketAddr) -> Node {
        let data = dir.join(id);
        let lease = LEASE_SECONDS.to_string();
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--engine",
            "whatsapp",
            "--database",
            database,
            "--data-dir",
            data.to_str().expect("a UTF-8 temp path"),
            "--node-id",
            id,
            "--lease-seconds",
            &lease,
        ]
        .join("\n");
        let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
        cmd.args([NODE_TEST, "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(ARGS_VAR, args)
            .env(BRIDGE_VAR, bridge.to_string())
            .env("WAM_API_KEY", ADMIN_KEY)
            .env_remove("DATABASE_URL")
            .env_remove("WAM_ENGINE")
            .env("RUST_LOG", "info");
        let (child, logs, port) = testkit::child::spawn_and_wait_port(&mut cmd);
        Node {
            id,
            child,
            logs,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL: the node ends mid-step, its leases held until they run out.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("x-api-key", ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on node {}: {e}", self.id));
        let code = res.status();
        let text = res.text().await.expect("body");
        assert_eq!(
            code,
            StatusCode::OK,
            "{method} {path} on node {}: {text}",
            self.id
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} on node {}: {e}: {text}", self.id))
    }

    async fn init(&self) -> Value {
        self.call(
            reqwest::Method::POST,
            "/api/whatsapp/init",
            Some(json!({"user_id": 1, "place_id": PLACE})),
        )
        .await
    }

    async fn status(&self) -> Value {
        let path = format!("/api/whatsapp/status?user_id=1&place_id={PLACE}");
        self.call(reqwest::Method::GET, &path, None).await["data"].clone()
    }

    async fn group_names(&self) -> Vec<String> {
        let path = format!("/api/whatsapp/groups?user_id=1&place_id={PLACE}");
        let body = self.call(reqwest::Method::GET, &path, None).await;
        let mut names: Vec<String> = body["data"]["groups"]
            .as_array()
            .or_else(|| body["data"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Polls this node's answer until `ok` holds, `within` at most.
    async fn wait_for(&self, within: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        testkit::poll(within, &format!("{what} on node {}", self.id), || async {
            let st = self.status().await;
            if ok(&st) { Ok(st) } else { Err(st.to_string()) }
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_whose_node_is_killed_reconnects_on_the_other_node_with_its_keys() {
    let db = testkit::db::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeWhatsApp::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bridge = listener.local_addr().expect("bridge address");
    let accept = tokio::spawn(bridge::serve(listener, fake.clone()));
    let mut nodes = [
        Node::start("a", &db.url, dir.path(), bridge),
        Node::start("b", &db.url, dir.path(), bridge),
    ];

    // Linked through node a, wherever the cluster runs it: the phone scans the QR code its
    // node shows.
    let started = nodes[0].init().await;
    let session_id = started["data"]["session_id"]
        .as_str()
        .expect("a session id")
        .to_string();
    let placed = nodes[0]
        .wait_for(WAIT, "run by a node", |st| st["node_id"].is_string())
        .await;
    let owner = nodes
        .iter()
        .position(|n| placed["node_id"] == n.id)
        .unwrap_or_else(|| panic!("run by a node of the test: {placed}"));
    // The code is the owner's: its client holds the keys the phone must see.
    let shown = nodes[owner]
        .wait_for(WAIT, "a QR code", |st| {
            st["status"] == "qr_ready" && st["qr_code"].is_string()
        })
        .await;
    let png = shown["qr_code"]
        .as_str()
        .and_then(|u| u.strip_prefix("data:image/png;base64,"))
        .map(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64")
        })
        .expect("a PNG data URL");
    fake.scan(&decode_qr_png(&png), PHONE, "Shop")
        .await
        .expect("scan");
    let ready = nodes[owner]
        .wait_for(WAIT, "ready", |st| st["status"] == "ready")
        .await;
    assert_eq!(ready["session_id"], session_id);
    assert_eq!(ready["node_id"], nodes[owner].id);
    // Any node answers for it.
    let survivor = 1 - owner;
    let elsewhere = nodes[survivor].status().await;
    assert_eq!(elsewhere["status"], "ready", "{elsewhere}");
    assert_eq!(elsewhere["session_id"], session_id);
    assert_eq!(elsewhere["node_id"], nodes[owner].id);
    let devices = fake.registered_devices(PHONE);
    assert_eq!(devices.len(), 1, "linked once");
    let logins = fake.login_count(PHONE);
    let ik = fake.ik_handshakes();

    // The node that runs it dies without a word; its lease runs out, the other node claims
    // the session and connects with the keys the dead one stored.
    nodes[owner].kill();
    let killed = Instant::now();
    // Every status the survivor showed on the way, in order, for the failure message.
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let back = testkit::poll(
        Duration::from_secs(LEASE_SECONDS) + WAIT,
        "ready on the surviving node",
        || {
            let node = &nodes[survivor];
            let seen = &seen;
            async move {
                let st = node.status().await;
                let s = st["status"].as_str().unwrap_or_default().to_string();
                if seen.borrow().last() != Some(&s) {
                    seen.borrow_mut().push(s);
                }
                // A QR code would mean a new link: the phone's scan all over again.
                assert!(
                    st["qr_code"].is_null() && st["status"] != "qr_ready",
                    "the session asked for a new link: {st}\nnode {}:\n{}",
                    node.id,
                    node.logs()
                );
                if st["status"] == "ready" && st["node_id"] == node.id {
                    Ok(st)
                } else {
                    Err(st.to_string())
                }
            }
        },
    )
    .await;
    let took = killed.elapsed();
    let seen = seen.into_inner();
    assert_eq!(back["session_id"], session_id, "same session: {seen:?}");
    assert_eq!(back["phone_number"], format!("+{PHONE}"));
    // The fake counts a login as it answers it, which may be just after the client says so.
    assert!(
        fake.wait_until(WAIT, |f| f.login_count(PHONE) > logins)
            .await,
        "it logged in again"
    );
    assert!(
        fake.ik_handshakes() > ik,
        "with the keys stored by the dead node (a Noise IK handshake)"
    );
    assert_eq!(
        fake.registered_devices(PHONE),
        devices,
        "no new pairing: the phone lists the same device"
    );
    assert!(
        fake.wait_until(WAIT, |f| f.connection_count() == 1).await,
        "one connection to WhatsApp, the survivor's"
    );
    assert_eq!(
        nodes[survivor].group_names().await,
        default_groups(),
        "no second pair of groups"
    );
    eprintln!(
        "ready on node {} {:.1} s after node {} was killed (lease {LEASE_SECONDS} s); statuses \
         seen: {seen:?}",
        nodes[survivor].id,
        took.as_secs_f64(),
        nodes[owner].id
    );
    accept.abort();
}
