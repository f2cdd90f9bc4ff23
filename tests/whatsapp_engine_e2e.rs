//! The real engine end to end: our HTTP API, whatsapp-rust speaking the real protocol
//! (Noise, binary nodes, pairing crypto), and an in-process fake WhatsApp server
//! (`crates/fake-whatsapp`) injected through the application builder.
//!
//! `cargo test --test whatsapp_engine_e2e` runs exactly these.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use whatsapp_manager::config::EngineKind;
use whatsapp_manager::engine::whatsapp::WhatsAppOptions;
use whatsapp_manager::{Application, Config};

const PHONE: &str = "966501234567";
/// Long enough for a loaded 2-core CI box; every wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(60);

struct Server {
    fake: FakeWhatsApp,
    dir: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    async fn start(fake: FakeWhatsApp) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            fake,
            dir,
            base: String::new(),
            http: reqwest::Client::new(),
            stop: None,
            task: None,
        };
        s.boot().await;
        s
    }

    fn config(&self) -> Config {
        let mut c = Config::defaults();
        c.listen = "127.0.0.1:0".into();
        c.database_url = format!("sqlite://{}", self.dir.path().join("wam.db").display());
        c.data_dir = self.dir.path().join("data");
        c.engine = EngineKind::Whatsapp;
        c
    }

    async fn boot(&mut self) {
        let app = Application::builder(self.config())
            .whatsapp(WhatsAppOptions {
                transport: Some(self.fake.transport_factory()),
                version: Some((2, 3000, 1_000_000_000)),
                connect_timeout: Duration::from_secs(10),
            })
            .build()
            .await
            .expect("build app");
        self.base = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = rx.await;
            })
            .await
            .expect("server run");
        }));
    }

    /// Stops the whole application (every session actor and client) and starts a new
    /// one on the same database and data folder, like a process restart.
    async fn restart(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
        self.boot().await;
    }

    fn credentials_dir(&self, session_id: &str) -> PathBuf {
        self.dir.path().join("data/whatsapp").join(session_id)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let code = res.status();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let code = res.status();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self) -> Value {
        self.get("/api/whatsapp/status?user_id=1&place_id=2")
            .await
            .1["data"]
            .clone()
    }

    async fn init(&self) -> Value {
        let (code, body) = self
            .post("/api/whatsapp/init", json!({"user_id": 1, "place_id": 2}))
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let st = self.status().await;
            if ok(&st) {
                return st;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("never {what}: {st}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_status(&self, want: &str) -> Value {
        self.wait_for(want, |s| s["status"] == want).await
    }

    async fn qr_raw(&self) -> String {
        let res = self
            .http
            .get(format!(
                "{}/api/whatsapp/qr?user_id=1&place_id=2&format=raw",
                self.base
            ))
            .send()
            .await
            .expect("GET qr");
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.expect("qr text")
    }

    async fn qr_png(&self) -> Vec<u8> {
        let res = self
            .http
            .get(format!(
                "{}/api/whatsapp/qr?user_id=1&place_id=2&format=png",
                self.base
            ))
            .send()
            .await
            .expect("GET qr");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "image/png");
        res.bytes().await.expect("png").to_vec()
    }

    /// init → QR → the phone scans → ready.
    async fn link(&self) -> Value {
        self.init().await;
        self.wait_status("qr_ready").await;
        let qr = self.qr_raw().await;
        self.fake.scan(&qr, PHONE, "Shop").await.expect("scan");
        self.wait_status("ready").await
    }

    async fn group_names(&self) -> Vec<String> {
        let (code, body) = self.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let groups = body["data"]["groups"]
            .as_array()
            .or_else(|| body["data"].as_array())
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<String> = groups
            .iter()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// What a QR image says, read back by a QR decoder.
fn decode_qr_png(png: &[u8]) -> String {
    let img = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("decodable QR").1
}

fn default_groups() -> Vec<String> {
    let mut v = vec!["جميع الارقام".to_string(), "اخر الارقام (90 يوم)".to_string()];
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_restore_reconnect_and_device_removal_over_the_real_protocol() {
    let mut s = Server::start(FakeWhatsApp::new()).await;

    // init → qr_ready, with a PNG that decodes back to exactly the library's string.
    let first = s.init().await;
    assert_eq!(first["message"], "Client initialization started");
    let session_id = first["data"]["session_id"].as_str().unwrap().to_string();
    let st = s.wait_status("qr_ready").await;
    let raw = s.qr_raw().await;
    assert!(raw.contains(','), "a WhatsApp QR payload: ref,keys,…");
    assert_eq!(decode_qr_png(&s.qr_png().await), raw);
    let data_url = st["qr_code"].as_str().expect("qr_code while qr_ready");
    let b64 = data_url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let from_status = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // The status may already show the next rotation; either way it is a real QR code.
    let decoded = decode_qr_png(&from_status);
    assert!(decoded.contains(','), "{decoded}");

    // The phone scans → authenticated → ready with the number, the name, and the groups.
    s.fake.scan(&raw, PHONE, "Shop").await.expect("scan");
    let ready = s.wait_status("ready").await;
    assert_eq!(ready["session_id"], session_id);
    assert_eq!(ready["phone_number"], format!("+{PHONE}"));
    assert_eq!(ready["name"], "Shop");
    assert_eq!(ready["client_ready"], true);
    assert_eq!(ready["qr_code"], Value::Null);
    assert_eq!(s.group_names().await, default_groups());
    assert!(s.credentials_dir(&session_id).join("device.db").exists());
    let (code, body) = s.get("/api/whatsapp/qr?user_id=1&place_id=2").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no QR once linked: {body}");

    // A server restart: the same session comes back ready with no scan.
    let logins = s.fake.login_count(PHONE);
    s.restart().await;
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id);
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert!(s.fake.login_count(PHONE) > logins, "it logged in again");
    assert_eq!(
        s.group_names().await,
        default_groups(),
        "no second pair of groups"
    );

    // The connection drops: disconnected, then ready again by the library's reconnect.
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("disconnected").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("connection to WhatsApp lost"),
        "{st}"
    );
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id);

    // The phone removes the device: logged_out, credentials deleted.
    s.fake.device_removed(PHONE).await;
    let st = s.wait_status("logged_out").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("removed"),
        "{st}"
    );
    s.wait_for("credentials deleted", |_| {
        !s.credentials_dir(&session_id).exists()
    })
    .await;
    let (code, body) = s
        .post(
            "/api/whatsapp/start-contact-fetch",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");

    // A later init starts a new session with a new QR code.
    let again = s.init().await;
    let new_id = again["data"]["session_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, session_id);
    s.wait_status("qr_ready").await;
    let new_raw = s.qr_raw().await;
    assert_ne!(new_raw, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_the_credentials_and_logout_unlinks() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    let logins = s.fake.login_count(PHONE);

    let (code, body) = s
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], session_id, "same session, no new QR");
    assert!(s.fake.login_count(PHONE) > logins);

    let (code, body) = s
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    s.wait_status("logged_out").await;
    assert!(!s.credentials_dir(&session_id).exists());
    s.fake
        .wait_until(WAIT, |f| f.registered_devices(PHONE).is_empty())
        .await
        .then_some(())
        .expect("the phone no longer lists the device (remove-companion)");

    // After a logout, init means a new link.
    let again = s.init().await;
    assert_ne!(again["data"]["session_id"], session_id);
    s.wait_status("qr_ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_ends_in_error_with_its_expiry() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    s.fake.fail_logins(PHONE, 402, Some(2 * 3600 + 15 * 60));
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("error").await;
    let msg = st["error_message"].as_str().unwrap_or_default();
    assert!(msg.contains("temporarily banned"), "{st}");
    assert!(msg.contains("2 h 15 min"), "the expiry is told: {st}");
    assert_eq!(st["client_ready"], false);
    // No busy reconnect loop against a ban.
    let opened = s.fake.connections_opened();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.fake.connections_opened(), opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_client_ends_in_error() {
    let s = Server::start(FakeWhatsApp::new()).await;
    s.link().await;
    s.fake.fail_logins(PHONE, 405, None);
    s.fake.drop_connections(PHONE).await;
    let st = s.wait_status("error").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("outdated"),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_stream_ends_in_error_and_restart_takes_it_back() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    s.fake.replaced(PHONE).await;
    let st = s.wait_status("error").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("replaced"),
        "{st}"
    );
    // Still linked: restart reconnects the same session without a QR.
    let (code, body) = s
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], ready["session_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_401_and_516_log_out() {
    for code in [401, 516] {
        let s = Server::start(FakeWhatsApp::new()).await;
        let ready = s.link().await;
        s.fake.stream_error(PHONE, code).await;
        s.wait_status("logged_out").await;
        let id = ready["session_id"].as_str().unwrap();
        s.wait_for("credentials deleted", |_| !s.credentials_dir(id).exists())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_gives_a_clear_status_then_recovers() {
    let fake = FakeWhatsApp::new();
    fake.set_offline(true);
    let s = Server::start(fake).await;
    s.init().await;
    let st = s.wait_status("disconnected").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach WhatsApp servers"),
        "{st}"
    );
    // The API stays responsive and the contract's errors apply.
    let (code, _) = s.get("/api/health").await;
    assert_eq!(code, StatusCode::OK);
    // Retries back off: a few seconds bring a handful of attempts, not hundreds.
    let before = s.fake.refused_connections();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = s.fake.refused_connections() - before;
    assert!(during <= 4, "{during} attempts in 3 s");
    // The network comes back: the library's own retry reaches the QR stage.
    s.fake.set_offline(false);
    let st = s.wait_status("qr_ready").await;
    assert_eq!(st["error_message"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_validation_and_state_checks() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    s.link().await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "already linked: {body}");
    for bad in [json!("abc"), json!("+1"), json!(true), json!("")] {
        let (code, body) = s
            .post(
                "/api/whatsapp/pair-code",
                json!({"user_id": 1, "place_id": 2, "phone_number": bad}),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains("phone_number"));
    }
}

/// The library shows the first code for 60 s and each further one for 20 s; with two codes
/// this test takes about 80 s, spent waiting in parallel with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_rotate_then_run_out_into_an_error() {
    let s = Server::start(FakeWhatsApp::new().with_qr_refs(2)).await;
    let started = s.init().await;
    let session_id = started["data"]["session_id"].as_str().unwrap().to_string();
    s.wait_status("qr_ready").await;
    let first = s.qr_raw().await;
    // A restart before any scan shows new codes on the same session.
    let (code, body) = s
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 1, "place_id": 2}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("qr_ready").await;
    assert_eq!(st["session_id"], session_id);
    let first = {
        let now = s.qr_raw().await;
        assert_ne!(now, first, "a new client, a new QR code");
        now
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut second = None;
    let st = loop {
        let st = s.status().await;
        if st["status"] != "qr_ready" {
            break st;
        }
        let (code, _) = s
            .get("/api/whatsapp/qr?user_id=1&place_id=2&format=raw")
            .await;
        if code == StatusCode::OK {
            let now = s.qr_raw().await;
            if now != first {
                second = Some(now);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ran out: {st}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(second.is_some(), "the code rotated before running out");
    assert_eq!(st["status"], "error", "{st}");
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("QR code attempts"),
        "{st}"
    );
    assert_eq!(st["qr_code"], Value::Null);
    let (code, _) = s.get("/api/whatsapp/qr?user_id=1&place_id=2").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Nothing was linked, so nothing of the device is kept.
    s.wait_for("unlinked device files removed", |_| {
        !s.credentials_dir(&session_id).exists()
    })
    .await;
    // init gives a new QR code.
    s.init().await;
    s.wait_status("qr_ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_code_typed_on_the_phone_links_the_session() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let started = s.init().await;
    s.wait_status("qr_ready").await;
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966 50 123 4567"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["session_id"], started["data"]["session_id"]);
    assert_eq!(data["phone_number"], format!("+{PHONE}"));
    let pairing = data["code"].as_str().expect("a code").to_string();
    assert_eq!(pairing.len(), 8, "{pairing}");
    assert_eq!(data["pairing_code"], pairing);

    // One code at a time: a second request while it is valid is a conflict.
    let (code, body) = s
        .post(
            "/api/whatsapp/pair-code",
            json!({"user_id": 1, "place_id": 2, "phone_number": "+966501234567"}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already issued"),
        "{body}"
    );

    // A wrong code links nothing; the right one links the number.
    let wrong: String = pairing
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    assert!(s.fake.enter_pair_code(PHONE, &wrong, "Shop").await.is_err());
    assert_ne!(s.status().await["status"], "ready");
    s.fake
        .enter_pair_code(PHONE, &pairing, "Shop")
        .await
        .expect("the right code links");
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], started["data"]["session_id"]);
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert_eq!(s.group_names().await, default_groups());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_a_connection_still_forgets_and_says_what_to_do_on_the_phone() {
    let s = Server::start(FakeWhatsApp::new()).await;
    let ready = s.link().await;
    let id = ready["session_id"].as_str().unwrap().to_string();
    s.fake.set_offline(true);
    s.wait_status("disconnected").await;
    let (code, body) = s
        .post("/api/whatsapp/logout", json!({"user_id": 1, "place_id": 2}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let st = s.wait_status("logged_out").await;
    assert!(
        st["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("Linked devices"),
        "{st}"
    );
    assert!(!s.credentials_dir(&id).exists());
}
