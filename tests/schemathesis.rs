//! Fuzzes the whole API with schemathesis: the real binary on the simulated engine, thousands
//! of requests generated from the OpenAPI document, valid and invalid. Every answer must be
//! one the document describes (status, content type, schema), invalid input must be refused
//! with a 4xx, nothing may answer 5xx, and the server must still be up and unpanicked at the
//! end.
//!
//! Needs schemathesis (`bash scripts/test.sh` installs it into target/test-venv); set
//! `WAM_SCHEMATHESIS` to its command when it is not on the PATH.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::child::spawn_and_wait_port;

use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-manager");

/// The server is started with `--api-key`, as in production, and every request carries it.
const SERVER_TAKES_API_KEY: bool = true;

/// The run must prove it sent at least this many requests.
const MIN_REQUESTS: usize = 2_000;
/// Generated cases per operation and phase; with 16 operations, valid and invalid data,
/// the coverage phase and the stateful one this lands well above `MIN_REQUESTS`.
const MAX_EXAMPLES: &str = "250";
/// Fixed, so a failure can be replayed with the same command.
const SEED: &str = "20240601";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection,ignored_auth";
/// Which 5xx answers are by contract, each with its reason.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
/// How the paths of the operations that config lets answer 503 end.
const MAY_ANSWER_503: [&str; 5] = [
    "/api/whatsapp/start-contact-fetch",
    "/api/whatsapp/pair-code",
    "/api/whatsapp/check-numbers",
    "/read",
    "/media",
];
/// A run that takes longer than this has hung.
const RUN_LIMIT: Duration = Duration::from_secs(600);

const INSTALL: &str = "schemathesis is needed for this test. Run the tests with \
    `bash scripts/test.sh`, which installs it into target/test-venv (as .ci/run does), or set \
    WAM_SCHEMATHESIS to the command that runs it (e.g. `/path/to/venv/bin/schemathesis`).";

/// The command that runs schemathesis: `WAM_SCHEMATHESIS`, else `schemathesis` on the PATH,
/// else the Python module.
fn schemathesis() -> Vec<String> {
    let works = |cmd: &[String]| {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Ok(given) = std::env::var("WAM_SCHEMATHESIS") {
        let cmd: Vec<String> = given.split_whitespace().map(String::from).collect();
        assert!(
            !cmd.is_empty() && works(&cmd),
            "WAM_SCHEMATHESIS={given:?} does not run schemathesis. {INSTALL}"
        );
        return cmd;
    }
    let candidates: [&[&str]; 3] = [
        &["schemathesis"],
        &["python3", "-m", "schemathesis"],
        // The package has no `__main__`; its CLI module does.
        &["python3", "-m", "schemathesis.cli"],
    ];
    for c in candidates {
        let cmd: Vec<String> = c.iter().map(|s| s.to_string()).collect();
        if works(&cmd) {
            return cmd;
        }
    }
    panic!("{INSTALL}");
}

/// A key nobody can guess, without a random-number crate: the standard library seeds every
/// `RandomState` from the OS.
fn random_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("wam_test_");
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The server binary, its logs collected as it runs.
struct Server {
    child: Child,
    logs: Arc<Mutex<String>>,
    base: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl Server {
    fn start(dir: &Path, api_key: Option<String>) -> Server {
        let db = format!("sqlite://{}", dir.join("wam.db").display());
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--engine",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--data-dir",
        ])
        .arg(dir.join("data"))
        // Small generated phone books: the fuzzer links many pairs and fetches their
        // contacts, and the run has a time budget.
        .args(["--sim-contacts", "20"])
        // Every session the fuzzer starts shows its QR code for a second (so the QR,
        // pairing-code and scan routes answer for real), then links by itself (so contact
        // fetches run, on the phone books the fuzzer wrote).
        .args(["--sim-auto-scan", "1"])
        // Its `ignored_auth` check sends requests without a key and with a wrong one to
        // every operation, and accepts only 401/403 back: more than the default 20 failed
        // keys a minute from this one address, whose 429 is tested in tests/api/security.rs.
        .args(["--auth-failure-limit", "1000"])
        .env_remove("WAM_ENGINE")
        .env("RUST_LOG", "info");
        if let Some(key) = &api_key {
            cmd.args(["--api-key", key]);
        }
        let (child, logs, port) = spawn_and_wait_port(&mut cmd);
        Server {
            child,
            logs,
            base: format!("http://127.0.0.1:{port}"),
            api_key,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            req = req.header("X-Api-Key", key);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        (res.status(), res.text().await.expect("body"))
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (s, text) = self.call(method, path, body).await;
        assert!(s.is_success(), "{path}: {s} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    async fn wait_for(&self, user: i64, place: i64, what: &str, ok: impl Fn(&Value) -> bool) {
        let path = format!("/api/whatsapp/status?user_id={user}&place_id={place}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = self.json(reqwest::Method::GET, &path, None).await["data"].clone();
            if ok(&st) {
                return;
            }
            assert!(Instant::now() < deadline, "never {what}: {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// State worth fuzzing, at the ids the document gives as examples: pair (1, 1) linked with
/// its contacts fetched, so its groups 1 and 2 have members.
async fn prepare(srv: &Server) {
    let now = chrono::Utc::now().timestamp();
    let mut entries: Vec<Value> = (0..40)
        .map(|i| {
            json!({"jid": format!("9665{:08}@s.whatsapp.net", 10_000_000 + i),
                   "name": if i % 3 == 0 { Value::Null } else { json!(format!("Contact {i}")) },
                   "push_name": format!("Push {i}"),
                   "is_business": i % 5 == 0,
                   "last_message_at": now - i * 5 * 86_400})
        })
        .collect();
    entries.push(json!({"jid": "120363012345678901@g.us", "name": "A group"}));
    entries.push(json!({"jid": "status@broadcast"}));
    entries.push(json!({"jid": "123456789012345@lid", "pn_jid": "966512345678@s.whatsapp.net"}));
    srv.json(
        reqwest::Method::PUT,
        "/api/sim/phonebook",
        Some(
            json!({"user_id": 1, "place_id": 1, "me": "966500000001@s.whatsapp.net",
                    "push_name": "Shop", "entries": entries}),
        ),
    )
    .await;
    let pair = json!({"user_id": 1, "place_id": 1});
    srv.json(
        reqwest::Method::POST,
        "/api/whatsapp/init",
        Some(pair.clone()),
    )
    .await;
    srv.wait_for(1, 1, "ready", |s| s["status"] == "ready")
        .await;
    srv.json(
        reqwest::Method::POST,
        "/api/whatsapp/start-contact-fetch",
        Some(pair),
    )
    .await;
    srv.wait_for(1, 1, "fetched", |s| s["contacts_fetch_completed"] == true)
        .await;
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let key = SERVER_TAKES_API_KEY.then(random_key);
    let srv = Server::start(dir.path(), key.clone());
    prepare(&srv).await;

    // From the server, like a client would get it (with the key, should the document need
    // one), so the run tests the document actually served.
    let (s, doc) = srv
        .call(reqwest::Method::GET, "/api/openapi.json", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, &doc).unwrap();

    let har = dir.path().join("requests.har");
    let out = dir.path().join("schemathesis.log");
    let mut args: Vec<String> = [
        "--config-file",
        CONFIG,
        "run",
        schema.to_str().unwrap(),
        "--url",
        &srv.base,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        // One worker: with two, CPython 3.11's `ast` module can fail inside schemathesis
        // ("AST constructor recursion depth mismatch", CPython gh-106905) on a loaded box,
        // an error of the tool, not of the server.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        // Hypothesis otherwise repeats the simplest inputs once it has tried the rest.
        "--generation-unique-inputs",
        "--report",
        "har",
        "--report-har-path",
        har.to_str().unwrap(),
        "--no-color",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(key) = &key {
        args.extend(["-H".to_string(), format!("X-Api-Key: {key}")]);
    }
    let t0 = Instant::now();
    let mut run = Command::new(&st[0])
        .args(&st[1..])
        .args(&args)
        // Its working files (a `.hypothesis` folder, reports) stay out of the repository.
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start schemathesis");
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > RUN_LIMIT {
            let _ = run.kill();
            panic!(
                "schemathesis ran longer than {RUN_LIMIT:?}:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = t0.elapsed();
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("{report}");
    eprintln!("schemathesis took {took:?}");
    assert!(
        status.success(),
        "schemathesis found failures ({status}); replay with `{} {}`:\n{report}",
        st.join(" "),
        args.join(" ")
    );

    // Every request it sent, from its own record.
    let har: Value = serde_json::from_str(&std::fs::read_to_string(&har).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    eprintln!("schemathesis sent {} requests", entries.len());
    assert!(
        entries.len() >= MIN_REQUESTS,
        "only {} requests were sent",
        entries.len()
    );
    let server_errors: Vec<String> = entries
        .iter()
        .filter(|e| {
            let status = e["response"]["status"].as_u64().unwrap_or(0);
            let url = e["request"]["url"].as_str().unwrap_or("");
            let path = url.split('?').next().unwrap_or(url);
            let by_contract = status == 503 && MAY_ANSWER_503.iter().any(|p| path.ends_with(p));
            status >= 500 && !by_contract
        })
        .map(|e| {
            format!(
                "{} {} -> {}",
                e["request"]["method"], e["request"]["url"], e["response"]["status"]
            )
        })
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");

    // Still up, still answering, never panicked.
    let (s, body) = srv.call(reqwest::Method::GET, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut srv = srv;
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "the server exited:\n{}",
        srv.logs()
    );
    let logs = srv.logs();
    assert!(!logs.contains("panicked"), "a panic in the logs:\n{logs}");
    assert!(
        !logs.contains("❌ Internal error"),
        "an internal error in the logs:\n{logs}"
    );
}
