//! The server binary the browser test drives, its phone book, and the checks each step
//! shares.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::browser::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-manager");
pub const ADMIN_KEY: &str = "browser-admin-key-7d3e91c4";
/// Every wait ends as soon as its condition holds; the bound is for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(60);
/// The pair linked through the page, and another user's pair the tenant must not see.
pub const USER: i64 = 7;
pub const PLACE: i64 = 1;
pub const OTHER_USER: i64 = 8;

/// The server binary as a child process, killed on drop; its logs printed when a test fails.
pub struct Server {
    child: Child,
    logs: Arc<Mutex<String>>,
    pub base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `serve` on the sim engine and SQLite, with the admin key; QR codes rotate every 2 s
    /// (so the page's rotation shows within the test), the phone waits long enough for a
    /// scan, and messages go out without the anti-ban pause.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--engine", "sim"])
            .arg("--database")
            .arg(format!("sqlite://{}", dir.path().join("wam.db").display()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--sim-qr-interval", "2", "--sim-qr-attempts", "100"])
            .args(["--message-interval", "0", "--message-jitter", "0"])
            .env_remove("WAM_ENGINE")
            .env_remove("DATABASE_URL")
            .env("WAM_API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info");
        // SAFETY: only async-signal-safe calls between fork and exec. The server dies with
        // the test process, however that ends.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (child, logs, port) = testkit::child::spawn_and_wait_port(&mut cmd);
        Server {
            child,
            logs,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            _dir: dir,
        }
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("x-api-key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// An admin request that must succeed; its `data`.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call_as(ADMIN_KEY, method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["data"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(logs) = self.logs.lock()
        {
            let lines: Vec<&str> = logs.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!("==== the server's last log lines ====\n{tail}");
        }
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The phone book of the linked pair: Arabic names, some businesses, some with a chat in the
/// last days (so the 90-day group holds fewer than all).
pub fn phone_book() -> Vec<Value> {
    let names = [
        ("أحمد الحربي", false, Some(2)),
        ("فاطمة الزهراني", false, Some(1)),
        ("محمد العتيبي", false, None),
        ("نورة القحطاني", false, Some(400)),
        ("مطعم الياسمين", true, Some(3)),
        ("خالد الشمري", false, None),
        ("سارة الدوسري", false, Some(10)),
        ("صيدلية النهدي", true, None),
        ("عبدالله المطيري", false, Some(200)),
        ("ريم السبيعي", false, None),
        ("مكتبة جرير", true, Some(5)),
        ("يوسف الغامدي", false, None),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, (name, business, days))| {
            json!({
                "jid": format!("9665000000{:02}@s.whatsapp.net", i + 1),
                "name": name,
                "push_name": null,
                "is_business": business,
                "last_message_at": days.map(|d: i64| now() - d * 86_400),
            })
        })
        .collect()
}

/// An id as a page's `data-*` attribute holds it.
pub fn id_text(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_string)
}

/// The `[data-role="error"]` message shown on the page, once one is shown.
pub const SHOWN_ERROR: &str = "const es = [...document.querySelectorAll('[data-role=\"error\"]')]
    .filter(e => e.getClientRects().length > 0 && e.innerText.trim() !== '');
return es.length ? es.map(e => e.innerText).join('\\n') : null;";

/// Writes the step's screenshot, then asks that the page shows no raw key of its string
/// tables (`status.sent`): the page shows a missing translation as its key, so a gap in the
/// Arabic table is seen here. Latin words with a dot are rare on the Arabic page, which is why
/// this holds for the Arabic steps only.
pub async fn shot(browser: &Browser, step: &str) {
    browser.screenshot(step).await;
    assert_translated(browser, step).await;
}

/// [`shot`] with the element `css` scrolled into view.
pub async fn shot_at(browser: &Browser, css: &str, step: &str) {
    browser.screenshot_at(css, step).await;
    assert_translated(browser, step).await;
}

pub async fn assert_translated(browser: &Browser, step: &str) {
    let keys = browser
        .js(
            "return document.body.innerText.match(/\\b[a-z]+(?:_[a-z]+)*\\.[a-z]+(?:_[a-z]+)*\\b/g);",
            vec![],
        )
        .await;
    assert_eq!(
        keys,
        Value::Null,
        "untranslated strings shown at step {step}"
    );
}
