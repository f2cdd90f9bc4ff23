//! A real server of ours on port 0, simulated engine, fresh temporary database and a manual
//! clock, with typed helpers to drive it through HTTP. The database is a SQLite file in the
//! app's folder unless a `*_on(TestBackend::Postgres, ..)` spawn asks for PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use whatsapp_manager::clock::ManualClock;
use whatsapp_manager::config::EngineKind;
use whatsapp_manager::{Application, Config};

use crate::db::{TestBackend, TestDb};

pub const ALL_GROUP: &str = "جميع الارقام";
pub const RECENT_GROUP: &str = "اخر الارقام (90 يوم)";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub dir: Arc<tempfile::TempDir>,
    /// The backend `config.database_url` names.
    pub backend: TestBackend,
    /// The PostgreSQL database, held for the app's whole life (restarts included), as a
    /// process restart would find it; `None` on SQLite, whose file lives in `dir`.
    database: Option<Arc<TestDb>>,
    /// Sent with every request of the helpers, when set.
    pub api_key: Option<String>,
    server: crate::Running,
}

/// How long a wait for a status or a fetch lasts at most.
const STATUS_WAIT: Duration = Duration::from_secs(10);
const FETCH_WAIT: Duration = Duration::from_secs(30);
/// A graceful stop drains every session; bounded so a hung stop fails the test.
const STOP_WAIT: Duration = Duration::from_secs(60);

pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut c = Config::defaults();
    c.listen = "127.0.0.1:0".into();
    c.database_url = format!("sqlite://{}", dir.path().join("wam.db").display());
    c.data_dir = dir.path().join("data");
    c.engine = EngineKind::Sim;
    c.sim.contacts = 50;
    c.sim.reconnect_backoff = Duration::from_millis(200);
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] on the given backend.
pub async fn spawn_app_on(backend: TestBackend) -> TestApp {
    spawn_app_with_on(backend, |_| {}).await
}

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A server that asks for keys; the helpers send the admin key.
pub async fn spawn_app_with_admin_key() -> TestApp {
    spawn_app_with_admin_key_and(|_| {}).await
}

/// A server that asks for keys, otherwise configured by `tune`.
pub async fn spawn_app_with_admin_key_and(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_admin_key_and_on(TestBackend::Sqlite, tune).await
}

/// [`spawn_app_with_admin_key`] on the given backend.
pub async fn spawn_app_with_admin_key_on(backend: TestBackend) -> TestApp {
    spawn_app_with_admin_key_and_on(backend, |_| {}).await
}

/// [`spawn_app_with_admin_key_and`] on the given backend.
pub async fn spawn_app_with_admin_key_and_on(
    backend: TestBackend,
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    let mut app = spawn_app_with_on(backend, |c| {
        c.admin_key = Some(whatsapp_manager::auth::AdminKeyHash::of(ADMIN_KEY));
        tune(c);
    })
    .await;
    app.api_key = Some(ADMIN_KEY.to_string());
    app
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_on(TestBackend::Sqlite, tune).await
}

/// [`spawn_app_with`] on the given backend: on PostgreSQL a fresh database of the tests'
/// cluster ([`crate::pg`]) replaces the SQLite file, before `tune` sees the config.
pub async fn spawn_app_with_on(backend: TestBackend, tune: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(&dir);
    let database = match backend {
        TestBackend::Sqlite => None,
        TestBackend::Postgres => {
            let db = backend.database().await;
            config.database_url = db.url.clone();
            Some(Arc::new(db))
        }
    };
    tune(&mut config);
    let held = Held {
        dir,
        backend,
        database,
    };
    start(config, held, Arc::new(ManualClock::new())).await
}

/// What a server and its restarts share besides the config and the clock.
#[derive(Clone)]
struct Held {
    dir: Arc<tempfile::TempDir>,
    backend: TestBackend,
    database: Option<Arc<TestDb>>,
}

async fn start(config: Config, held: Held, clock: Arc<ManualClock>) -> TestApp {
    let app = Application::build_with_clock(config.clone(), clock.clone())
        .await
        .expect("build application");
    let server = crate::Running::start(app);
    let Held {
        dir,
        backend,
        database,
    } = held;
    TestApp {
        base: server.base.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        clock,
        config,
        dir,
        backend,
        database,
        api_key: None,
        server,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.server.stop(STOP_WAIT).await;
    }

    /// Stops the server and starts a new one on the same database, data folder and clock.
    pub async fn restart_server(mut self) -> TestApp {
        self.stop().await;
        let held = Held {
            dir: self.dir.clone(),
            backend: self.backend,
            database: self.database.clone(),
        };
        let mut app = start(self.config.clone(), held, self.clock.clone()).await;
        app.api_key = self.api_key.clone();
        app
    }

    /// Another server on this one's PostgreSQL database and clock (a second node), with its
    /// own data folder and port, configured as this one and then by `tune` (give it its own
    /// `cluster.node_id`).
    pub async fn spawn_peer(&self, tune: impl FnOnce(&mut Config)) -> TestApp {
        assert_eq!(
            self.backend,
            TestBackend::Postgres,
            "only servers on PostgreSQL share a database"
        );
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".into();
        config.data_dir = dir.path().join("data");
        tune(&mut config);
        let held = Held {
            dir,
            backend: self.backend,
            database: self.database.clone(),
        };
        let mut app = start(config, held, self.clock.clone()).await;
        app.api_key = self.api_key.clone();
        app
    }

    /// Everything the app's database holds ([`crate::db::stored_bytes`]).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        crate::db::stored_bytes(&self.config.database_url).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request_as(self.api_key.as_deref(), method, path, body)
            .await
    }

    /// A request carrying `key` in `X-Api-Key` (none when `None`).
    pub async fn request_as(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Sends raw bytes with a given content type.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type);
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        let res = req.body(body).send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, value)
    }

    pub async fn init(&self, user: i64, place: i64) -> Value {
        let (s, v) = self
            .post(
                "/api/whatsapp/init",
                json!({"user_id": user, "place_id": place}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn status(&self, user: i64, place: i64) -> Value {
        let (s, v) = self
            .get(&format!(
                "/api/whatsapp/status?user_id={user}&place_id={place}"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"].clone()
    }

    /// Opens the user's event stream (with the app's key, if any) and checks it answered 200.
    pub async fn event_stream(&self, user: i64) -> reqwest::Response {
        let mut req = self
            .client
            .get(format!("{}/api/whatsapp/events?user_id={user}", self.base));
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        let stream = req.send().await.expect("open the event stream");
        assert_eq!(stream.status(), StatusCode::OK, "the event stream");
        stream
    }

    pub async fn progress(&self, user: i64, place: i64) -> Value {
        let (s, v) = self
            .get(&format!(
                "/api/whatsapp/contacts/progress?user_id={user}&place_id={place}"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"].clone()
    }

    /// Polls the status until it is `want` (10 s at most).
    pub async fn wait_status(&self, user: i64, place: i64, want: &str) -> Value {
        crate::poll(STATUS_WAIT, &format!("status {want}"), || async {
            let st = self.status(user, place).await;
            if st["status"] == want {
                Ok(st)
            } else {
                Err(st.to_string())
            }
        })
        .await
    }

    pub async fn scan(&self, user: i64, place: i64) -> (StatusCode, Value) {
        self.post("/api/sim/scan", json!({"user_id": user, "place_id": place}))
            .await
    }

    pub async fn fault(&self, user: i64, place: i64, kind: &str) -> (StatusCode, Value) {
        self.post(
            "/api/sim/fault",
            json!({"user_id": user, "place_id": place, "kind": kind}),
        )
        .await
    }

    /// init → QR → scan → ready.
    pub async fn ready_session(&self, user: i64, place: i64) -> Value {
        self.init(user, place).await;
        self.wait_status(user, place, "qr_ready").await;
        let (s, v) = self.scan(user, place).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.wait_status(user, place, "ready").await
    }

    pub async fn set_phonebook(&self, user: i64, place: i64, me: &str, entries: Value) {
        let (s, v) = self
            .put(
                "/api/sim/phonebook",
                json!({"user_id": user, "place_id": place, "me": me,
                       "push_name": "Test Shop", "entries": entries}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    pub async fn start_fetch(&self, user: i64, place: i64) -> (StatusCode, Value) {
        self.post(
            "/api/whatsapp/start-contact-fetch",
            json!({"user_id": user, "place_id": place}),
        )
        .await
    }

    /// Starts a fetch and waits until it has ended (completed or failed).
    pub async fn fetch_and_wait(&self, user: i64, place: i64) -> Value {
        let (s, v) = self.start_fetch(user, place).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.wait_fetch_end(user, place).await
    }

    /// Polls the running fetch until it has read at least `count` contacts.
    pub async fn wait_fetched(&self, user: i64, place: i64, count: i64) -> Value {
        crate::poll(FETCH_WAIT, &format!("{count} contacts read"), || async {
            let p = self.progress(user, place).await;
            if p["processed"].as_i64().is_some_and(|n| n >= count) {
                Ok(p)
            } else {
                Err(p.to_string())
            }
        })
        .await
    }

    pub async fn wait_fetch_end(&self, user: i64, place: i64) -> Value {
        crate::poll(FETCH_WAIT, "the fetch's end", || async {
            let p = self.progress(user, place).await;
            if p["is_fetching"] == false && p["status"] != "fetching_contacts" {
                Ok(p)
            } else {
                Err(p.to_string())
            }
        })
        .await
    }

    pub async fn groups(&self, user: i64, place: i64) -> Vec<Value> {
        let (s, v) = self
            .get(&format!(
                "/api/whatsapp/groups?user_id={user}&place_id={place}&limit=1000"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"]["groups"].as_array().expect("groups").clone()
    }

    pub async fn group_id(&self, user: i64, place: i64, name: &str) -> i64 {
        self.groups(user, place)
            .await
            .iter()
            .find(|g| g["name"] == name)
            .and_then(|g| g["id"].as_i64())
            .unwrap_or_else(|| panic!("no group {name}"))
    }

    /// Every phone number of a group, all pages, sorted.
    pub async fn group_numbers(&self, user: i64, place: i64, name: &str) -> Vec<String> {
        let id = self.group_id(user, place, name).await;
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let (s, v) = self
                .get(&format!(
                    "/api/whatsapp/groups/{id}/contacts?user_id={user}&place_id={place}&limit=1000&page={page}"
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let contacts = v["data"]["contacts"].as_array().expect("contacts").clone();
            if contacts.is_empty() {
                break;
            }
            out.extend(
                contacts
                    .iter()
                    .map(|c| c["phone_number"].as_str().expect("phone").to_string()),
            );
            page += 1;
        }
        out.sort();
        out
    }

    /// A new API key (admin call): the key itself and the created record.
    pub async fn create_key(&self, body: Value) -> (String, Value) {
        let (s, v) = self.post("/api/admin/keys", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let key = v["data"]["key"]
            .as_str()
            .expect("key shown once")
            .to_string();
        (key, v["data"].clone())
    }
}

/// A person entry of a simulated phone book.
pub fn person(digits: &str, name: Option<&str>, last_message_at: Option<i64>) -> Value {
    json!({"jid": format!("{digits}@s.whatsapp.net"), "name": name, "push_name": null,
           "is_business": false, "last_message_at": last_message_at})
}

pub fn days_ago(app: &TestApp, days: i64) -> i64 {
    use whatsapp_manager::clock::Clock;
    app.clock.now().timestamp() - days * 86_400
}

pub use crate::read_until;

/// Asserts the contract's error envelope and returns its message.
pub fn assert_error(status: StatusCode, body: &Value, want: u16) -> String {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["status_code"], want, "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    body["message"].as_str().expect("message").to_string()
}
