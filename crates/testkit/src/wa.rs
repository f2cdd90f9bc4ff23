//! The harness of the real-engine end-to-end tests: our whole application with the real
//! `whatsapp-rust` client, its connections going to an in-process fake WhatsApp server, on
//! either backend ([`TestBackend`]).

use std::path::PathBuf;
use std::time::Duration;

use fake_whatsapp::FakeWhatsApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use whatsapp_manager::config::EngineKind;
use whatsapp_manager::domain::SessionId;
use whatsapp_manager::engine::whatsapp::WhatsAppOptions;
use whatsapp_manager::store::device::DeviceRows;
use whatsapp_manager::store::{DatabaseOptions, Db};
use whatsapp_manager::{Application, Config};

pub use crate::db::{TestBackend, TestDb};

pub const PHONE: &str = "966501234567";
/// The place of the pair every single-session helper speaks for (user 1).
pub const PLACE: i64 = 2;
/// The server runs as in production, with an admin key; the harness' client sends it.
pub const ADMIN_KEY: &str = "e2e-admin-key-7d3f0b";
/// Long enough for a loaded 2-core CI box; every wait ends as soon as its condition holds.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Server {
    pub fake: FakeWhatsApp,
    /// Holds `data/` (the server's `--data-dir`), which must stay empty.
    pub dir: tempfile::TempDir,
    pub backend: TestBackend,
    /// The server's database; kept for the whole test, across restarts.
    pub db: TestDb,
    pub base: String,
    pub http: reqwest::Client,
    /// The harness' own connection to the server's database, opened on first use.
    store: OnceCell<Db>,
    running: Option<crate::Running>,
    /// Applied to [`Self::config`] at every boot: what one test needs differently.
    tweak: fn(&mut Config),
}

impl Server {
    /// On SQLite, the embedded default.
    pub async fn start(fake: FakeWhatsApp) -> Self {
        Self::start_on(fake, TestBackend::Sqlite).await
    }

    pub async fn start_on(fake: FakeWhatsApp, backend: TestBackend) -> Self {
        Self::start_with(fake, backend, |_| {}).await
    }

    /// Like [`Self::start_on`], with `tweak` applied to the configuration at every boot
    /// (a restart keeps it).
    pub async fn start_with(
        fake: FakeWhatsApp,
        backend: TestBackend,
        tweak: fn(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            fake,
            dir,
            backend,
            db: backend.database().await,
            base: String::new(),
            http: reqwest::Client::builder()
                .default_headers(
                    [(
                        reqwest::header::HeaderName::from_static("x-api-key"),
                        reqwest::header::HeaderValue::from_static(ADMIN_KEY),
                    )]
                    .into_iter()
                    .collect(),
                )
                .build()
                .expect("client"),
            store: OnceCell::new(),
            running: None,
            tweak,
        };
        s.boot().await;
        s
    }

    pub fn config(&self) -> Config {
        let mut c = Config::defaults();
        c.listen = "127.0.0.1:0".into();
        c.database_url = self.db.url.clone();
        c.data_dir = self.dir.path().join("data");
        c.engine = EngineKind::Whatsapp;
        c.admin_key = Some(whatsapp_manager::auth::AdminKeyHash::of(ADMIN_KEY));
        (self.tweak)(&mut c);
        c
    }

    pub async fn boot(&mut self) {
        let app = Application::builder(self.config())
            .whatsapp(WhatsAppOptions {
                transport: Some(self.fake.transport_factory()),
                http: Some(std::sync::Arc::new(self.fake.http_client())),
                version: Some((2, 3000, 1_000_000_000)),
                connect_timeout: Duration::from_secs(10),
            })
            .build()
            .await
            .expect("build app");
        let running = crate::Running::start(app);
        self.base = running.base.clone();
        self.running = Some(running);
    }

    /// Stops the whole application (every session actor and client) and starts a new
    /// one on the same database and data folder, like a process restart.
    pub async fn restart(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop(WAIT).await;
        }
        self.boot().await;
    }

    /// Where earlier versions kept a session's device file; nothing is written there now.
    pub fn credentials_dir(&self, session_id: &str) -> PathBuf {
        self.dir.path().join("data/whatsapp").join(session_id)
    }

    /// The database file on SQLite; `None` on PostgreSQL.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self.backend {
            TestBackend::Sqlite => self.db.url.strip_prefix("sqlite://").map(PathBuf::from),
            TestBackend::Postgres => None,
        }
    }

    /// `--data-dir` has nothing in it (or does not exist): every credential is in the
    /// database.
    pub fn data_dir_is_empty(&self) -> bool {
        match std::fs::read_dir(self.dir.path().join("data")) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// A second connection to the server's database, to read what it stored, opened the way
    /// the server opens it (`--database`'s scheme picks the backend).
    pub async fn database(&self) -> Db {
        self.store
            .get_or_init(|| async {
                whatsapp_manager::store::open(&self.db.url, &DatabaseOptions::default())
                    .await
                    .expect("open the server's database")
            })
            .await
            .clone()
    }

    /// Every device row the database holds for the session, or `None` when it has none.
    pub async fn device_rows(&self, session_id: &str) -> Option<DeviceRows> {
        self.database()
            .await
            .device_rows(&SessionId::from_db(session_id.to_string()))
            .await
            .expect("read the device rows")
    }

    /// Waits until the database holds nothing of the session's device (a logout, an unlink,
    /// a link that never finished), and checks nothing was left under `--data-dir` either.
    pub async fn wait_forgotten(&self, session_id: &str) {
        let db = self.database().await;
        let id = SessionId::from_db(session_id.to_string());
        crate::poll(WAIT, "forgot the device", || async {
            match db.device_rows(&id).await.expect("read the device rows") {
                None => Ok(()),
                Some(rows) => Err(format!("linked_at {:?}", rows.linked_at)),
            }
        })
        .await;
        assert!(self.data_dir_is_empty(), "nothing under --data-dir");
    }

    /// Checks that the session's credentials are in the database, linked, and nowhere else.
    pub async fn assert_credentials_in_database(&self, session_id: &str) {
        let rows = self
            .device_rows(session_id)
            .await
            .expect("the session's device is in the database");
        assert!(rows.device.is_some(), "the device itself is saved");
        assert!(rows.linked_at.is_some(), "marked linked");
        assert!(
            !rows.identities.is_empty() || !rows.prekeys.is_empty(),
            "its keys are saved: {rows:?}"
        );
        assert!(self.is_linked(session_id).await);
        assert!(self.data_dir_is_empty(), "nothing under --data-dir");
    }

    /// The database says the session's phone accepted the link and its device is saved.
    pub async fn is_linked(&self, session_id: &str) -> bool {
        self.database()
            .await
            .is_linked(&SessionId::from_db(session_id.to_string()))
            .await
            .expect("read the linked flag")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let code = res.status();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
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

    pub async fn status(&self) -> Value {
        self.status_at(PLACE).await
    }

    /// The status of user 1's session at `place`.
    pub async fn status_at(&self, place: i64) -> Value {
        self.get(&format!("/api/whatsapp/status?user_id=1&place_id={place}"))
            .await
            .1["data"]
            .clone()
    }

    /// POSTs the pair's body to a session route (`init`, `restart`, `logout`, …).
    pub async fn session_post(&self, route: &str) -> (StatusCode, Value) {
        self.session_post_at(route, PLACE).await
    }

    pub async fn session_post_at(&self, route: &str, place: i64) -> (StatusCode, Value) {
        self.post(
            &format!("/api/whatsapp/{route}"),
            json!({"user_id": 1, "place_id": place}),
        )
        .await
    }

    pub async fn init(&self) -> Value {
        self.init_at(PLACE).await
    }

    pub async fn init_at(&self, place: i64) -> Value {
        let (code, body) = self.session_post_at("init", place).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body
    }

    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_at(PLACE, what, ok).await
    }

    pub async fn wait_for_at(&self, place: i64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        crate::poll(WAIT, what, || async {
            let st = self.status_at(place).await;
            if ok(&st) { Ok(st) } else { Err(st.to_string()) }
        })
        .await
    }

    pub async fn wait_status(&self, want: &str) -> Value {
        self.wait_status_at(PLACE, want).await
    }

    pub async fn wait_status_at(&self, place: i64, want: &str) -> Value {
        self.wait_for_at(place, want, |s| s["status"] == want).await
    }

    /// The raw QR string, or `None` when no code is showing (for instance, attempts ran out).
    pub async fn try_qr_raw(&self) -> Option<String> {
        let res = self
            .http
            .get(format!(
                "{}/api/whatsapp/qr?user_id=1&place_id=2&format=raw",
                self.base
            ))
            .send()
            .await
            .expect("GET qr");
        if res.status() != StatusCode::OK {
            return None;
        }
        Some(res.text().await.expect("qr text"))
    }

    pub async fn qr_raw(&self) -> String {
        self.qr_raw_at(PLACE).await
    }

    pub async fn qr_raw_at(&self, place: i64) -> String {
        let res = self
            .http
            .get(format!(
                "{}/api/whatsapp/qr?user_id=1&place_id={place}&format=raw",
                self.base
            ))
            .send()
            .await
            .expect("GET qr");
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.expect("qr text")
    }

    pub async fn qr_png(&self) -> Vec<u8> {
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

    /// init → QR → the phone of [`PHONE`] scans → ready.
    pub async fn link(&self) -> Value {
        self.link_at(PLACE, PHONE).await
    }

    /// Links user 1's session at `place` to the number `phone` (digits) on the fake.
    pub async fn link_at(&self, place: i64, phone: &str) -> Value {
        self.init_at(place).await;
        self.wait_status_at(place, "qr_ready").await;
        let qr = self.qr_raw_at(place).await;
        self.fake.scan(&qr, phone, "Shop").await.expect("scan");
        self.wait_status_at(place, "ready").await
    }

    pub async fn group_names(&self) -> Vec<String> {
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

/// What a QR image says, read back by a QR decoder.
pub fn decode_qr_png(png: &[u8]) -> String {
    let img = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("decodable QR").1
}

/// A status's `error_message`, or "" when there is none.
pub fn error_message(st: &Value) -> &str {
    st["error_message"].as_str().unwrap_or_default()
}

pub fn default_groups() -> Vec<String> {
    let mut v = vec!["جميع الارقام".to_string(), "اخر الارقام (90 يوم)".to_string()];
    v.sort();
    v
}

/// One real-engine client driven directly, below the HTTP API: the engine's own calls
/// (`send`, …) and the events it hands its session actor, which this takes the place of.
pub struct EngineSession {
    pub fake: FakeWhatsApp,
    pub client: std::sync::Arc<dyn whatsapp_manager::engine::EngineClient>,
    pub events: tokio::sync::mpsc::Receiver<whatsapp_manager::engine::EngineEvent>,
    /// The engine's database and its (empty) data folder, alive as long as the client.
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl EngineSession {
    /// Starts a client for a new session, has the phone of [`PHONE`] scan its QR code, and
    /// returns once the client says it is ready.
    pub async fn linked(fake: FakeWhatsApp) -> Self {
        use std::sync::Arc;
        use whatsapp_manager::clock::SystemClock;
        use whatsapp_manager::domain::{Pair, PlaceId, UserId};
        use whatsapp_manager::engine::whatsapp::WhatsAppEngine;
        use whatsapp_manager::engine::{ClientStart, Engine, EngineEvent};

        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestBackend::Sqlite.database().await;
        let store = whatsapp_manager::store::open(&db.url, &DatabaseOptions::default())
            .await
            .expect("store");
        let engine = WhatsAppEngine::new(
            &dir.path().join("data"),
            WhatsAppOptions {
                transport: Some(fake.transport_factory()),
                http: Some(Arc::new(fake.http_client())),
                version: Some((2, 3000, 1_000_000_000)),
                connect_timeout: Duration::from_secs(10),
            },
            store.clone(),
            store,
            Arc::new(SystemClock),
        )
        .await
        .expect("engine");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
        let client = engine
            .start(ClientStart {
                session_id: SessionId::new(pair, 1_700_000_000_000),
                pair,
                events: tx,
            })
            .await
            .expect("start");
        let mut s = Self {
            fake,
            client,
            events: rx,
            _db: db,
            _dir: dir,
        };
        let qr = match s.next_event(|e| matches!(e, EngineEvent::Qr { .. })).await {
            EngineEvent::Qr { code } => code,
            other => panic!("not a QR code: {other:?}"),
        };
        s.fake.scan(&qr, PHONE, "Shop").await.expect("scan");
        s.next_event(|e| matches!(e, EngineEvent::Ready { .. }))
            .await;
        s
    }

    /// The next event that `want` picks, skipping the others; panics after [`WAIT`].
    pub async fn next_event(
        &mut self,
        want: impl Fn(&whatsapp_manager::engine::EngineEvent) -> bool,
    ) -> whatsapp_manager::engine::EngineEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if want(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the client closed its event channel"),
                Err(_) => panic!("the awaited event never came"),
            }
        }
    }
}
