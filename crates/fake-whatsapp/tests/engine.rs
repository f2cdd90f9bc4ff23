//! Drives real `whatsapp-rust` clients against the fake server.
//!
//! Each test pairs a fresh client (QR → scan → PairSuccess → Connected) and
//! then runs a fault script against it. All waits are on the client's ordered
//! event stream (or the fake's own state notifications), with timeouts.

use std::sync::Arc;
use std::time::Duration;

use fake_whatsapp::FakeWhatsApp;
use wacore::store::traits::Backend;
use wacore::types::events::{Event, EventHandler};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::{Client, TokioRuntime};

const PHONE: &str = "15551234567";
/// Pairing to Connected (well under a second with the phone's key share; the
/// client would wait 10 s longer without it).
const CONNECT_AFTER_PAIR: Duration = Duration::from_secs(8);
const STEP: Duration = Duration::from_secs(10);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Tests must never touch the network.
struct NoHttp;

#[async_trait::async_trait]
impl HttpClient for NoHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        anyhow::bail!("no network in tests (wanted {})", request.url)
    }
}

/// Ordered event delivery into a channel.
struct Events(async_channel::Sender<Arc<Event>>);

impl EventHandler for Events {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.try_send(event);
    }
}

struct Session {
    handle: BotHandle,
    client: Arc<Client>,
    events: async_channel::Receiver<Arc<Event>>,
    backend: Arc<dyn Backend>,
}

impl Session {
    async fn start(fake: &FakeWhatsApp, backend: Arc<dyn Backend>) -> Session {
        let (tx, events) = async_channel::unbounded();
        let bot = Bot::builder()
            .with_backend_arc(backend.clone())
            .with_transport_factory(fake.factory())
            .with_http_client(NoHttp)
            .with_runtime(TokioRuntime)
            .with_version((2, 3000, 1))
            .with_event_handler(Events(tx))
            .build()
            .await
            .expect("bot builds");
        let client = bot.client();
        let handle = bot.spawn();
        Session {
            handle,
            client,
            events,
            backend,
        }
    }

    async fn fresh(fake: &FakeWhatsApp) -> Session {
        Self::start(fake, Arc::new(wacore::store::InMemoryBackend::new())).await
    }

    /// Waits for the first event matching `pred`, skipping others.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Arc<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
                Ok(Err(_)) => panic!("event channel closed while waiting for {what}"),
                Ok(Ok(ev)) => {
                    if pred(&ev) {
                        return ev;
                    }
                    eprintln!("(while waiting for {what}) event: {}", event_name(&ev));
                }
            }
        }
    }

    async fn next_qr(&self) -> String {
        let ev = self
            .wait_for("a QR code", STEP, |e| matches!(e, Event::PairingQrCode(_)))
            .await;
        match &*ev {
            Event::PairingQrCode(qr) => qr.code.clone(),
            _ => unreachable!(),
        }
    }

    async fn connected(&self, timeout: Duration) {
        self.wait_for("Connected", timeout, |e| matches!(e, Event::Connected(_)))
            .await;
    }
}

fn event_name(e: &Event) -> String {
    let dbg = format!("{e:?}");
    dbg.chars().take(120).collect()
}

/// Fresh client → QR → scan → PairSuccess → Connected.
async fn paired(fake: &FakeWhatsApp, phone: &str, push_name: &str) -> Session {
    let s = Session::fresh(fake).await;
    let qr = s.next_qr().await;
    fake.scan(&qr, phone, push_name).await.expect("scan pairs");
    let ev = s
        .wait_for("PairSuccess", STEP, |e| matches!(e, Event::PairSuccess(_)))
        .await;
    if let Event::PairSuccess(ps) = &*ev {
        assert_eq!(ps.id.user, phone);
    }
    s.connected(CONNECT_AFTER_PAIR).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_connects_and_survives_a_dropped_connection() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = paired(&fake, PHONE, "Shop").await;

    // Own number and push name as the client knows them.
    let pn = s.client.pn().expect("own number after pairing");
    assert_eq!(pn.user, PHONE);
    assert_eq!(s.client.push_name(), "Shop");
    assert!(s.client.lid().is_some());
    assert!(fake.is_connected(PHONE));
    assert_eq!(fake.registered_devices(PHONE), vec![pn.device]);
    assert_eq!(fake.login_count(PHONE), 1);

    // Network drop: Disconnected, then the client reconnects (IK) by itself.
    for round in 2..=3u64 {
        fake.drop_connections(PHONE).await;
        s.wait_for("Disconnected", STEP, |e| {
            matches!(e, Event::Disconnected(_))
        })
        .await;
        s.connected(STEP).await;
        assert_eq!(fake.login_count(PHONE), round);
    }
    assert!(
        fake.ik_handshakes() >= 2,
        "reconnects of a paired client use IK"
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_logs_in_without_scanning() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = paired(&fake, PHONE, "Shop").await;
    let backend = s.backend.clone();
    let pn = s.client.pn().unwrap();
    s.handle.shutdown().await;
    assert!(
        fake.wait_until(STEP, |f| !f.is_connected(PHONE)).await,
        "shutdown closes the connection"
    );

    let s2 = Session::start(&fake, backend).await;
    s2.wait_for("Connected (no QR)", STEP, |e| {
        assert!(
            !matches!(e, Event::PairingQrCode(_)),
            "a paired client must not show a QR"
        );
        matches!(e, Event::Connected(_))
    })
    .await;
    assert_eq!(s2.client.pn(), Some(pn));
    assert_eq!(s2.client.push_name(), "Shop");
    assert_eq!(fake.login_count(PHONE), 2);
    s2.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_removed_logs_out_and_forgets_the_device() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = paired(&fake, PHONE, "Shop").await;
    fake.device_removed(PHONE).await;
    let ev = s
        .wait_for("LoggedOut", STEP, |e| matches!(e, Event::LoggedOut(_)))
        .await;
    if let Event::LoggedOut(lo) = &*ev {
        assert!(!lo.on_connect);
    }
    assert!(fake.registered_devices(PHONE).is_empty());
    assert!(!fake.is_connected(PHONE));

    // The same store can no longer log in: the server refuses it (401).
    let backend = s.backend.clone();
    s.handle.abort();
    let s2 = Session::start(&fake, backend).await;
    let ev = s2
        .wait_for("LoggedOut on connect", STEP, |e| {
            matches!(e, Event::LoggedOut(_))
        })
        .await;
    if let Event::LoggedOut(lo) = &*ev {
        assert!(lo.on_connect);
    }
    s2.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_stream_is_reported() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = paired(&fake, PHONE, "Shop").await;
    fake.replaced(PHONE).await;
    s.wait_for("StreamReplaced", STEP, |e| {
        matches!(e, Event::StreamReplaced(_))
    })
    .await;
    assert_eq!(fake.registered_devices(PHONE).len(), 1, "still registered");
    s.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_401_and_516_log_out() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let a = paired(&fake, "15550000401", "A").await;
    fake.stream_error("15550000401", 401).await;
    a.wait_for("LoggedOut (401)", STEP, |e| {
        matches!(e, Event::LoggedOut(_))
    })
    .await;
    a.handle.abort();

    let b = paired(&fake, "15550000516", "B").await;
    fake.stream_error("15550000516", 516).await;
    b.wait_for("LoggedOut (516)", STEP, |e| {
        matches!(e, Event::LoggedOut(_))
    })
    .await;
    b.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_login_failures() {
    init_tracing();
    let fake = FakeWhatsApp::new();

    let banned = paired(&fake, "15550000402", "Banned").await;
    fake.fail_logins("15550000402", 402, Some(7200));
    fake.drop_connections("15550000402").await;
    let ev = banned
        .wait_for("TemporaryBan", STEP, |e| {
            matches!(e, Event::TemporaryBan(_))
        })
        .await;
    if let Event::TemporaryBan(tb) = &*ev {
        assert_eq!(tb.expire.num_seconds(), 7200);
    }
    banned.handle.abort();

    let outdated = paired(&fake, "15550000405", "Old").await;
    fake.fail_logins("15550000405", 405, None);
    fake.drop_connections("15550000405").await;
    outdated
        .wait_for("ClientOutdated", STEP, |e| {
            matches!(e, Event::ClientOutdated(_))
        })
        .await;
    outdated.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_then_back_online_reconnects() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = paired(&fake, PHONE, "Shop").await;
    fake.set_offline(true);
    s.wait_for("Disconnected", STEP, |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await;
    assert!(
        fake.wait_until(STEP, |f| f.refused_connections() >= 1)
            .await,
        "the client tried to reconnect while offline"
    );
    assert!(!fake.is_connected(PHONE));
    fake.set_offline(false);
    s.connected(Duration::from_secs(15)).await;
    assert!(fake.is_connected(PHONE));
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_rotate_and_a_stale_qr_is_refused() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let s = Session::fresh(&fake).await;
    let qr = s.next_qr().await;
    assert!(
        fake.scan("1,2,3", PHONE, "x").await.is_err(),
        "garbage QR is refused"
    );
    assert!(
        fake.scan(&qr, "12ab", "x").await.is_err(),
        "phone must be digits"
    );
    // A dropped registration connection: the client reconnects and shows a new
    // QR; the old one no longer pairs.
    fake.drop_all_connections().await;
    let qr2 = s.next_qr().await;
    assert_ne!(qr, qr2);
    assert!(
        fake.scan(&qr, PHONE, "Shop").await.is_err(),
        "stale QR is refused"
    );
    fake.scan(&qr2, PHONE, "Shop")
        .await
        .expect("fresh QR pairs");
    s.wait_for("PairSuccess", STEP, |e| matches!(e, Event::PairSuccess(_)))
        .await;
    s.handle.abort();
}

/// With the tokio clock paused, the client's 60 s / 20 s QR timers elapse
/// instantly, so exhaustion can be observed quickly.
#[tokio::test(start_paused = true)]
async fn qr_exhaustion_with_a_paused_clock() {
    init_tracing();
    let fake = FakeWhatsApp::new().with_qr_refs(2);
    let s = Session::fresh(&fake).await;
    let mut codes = Vec::new();
    let ev = s
        .wait_for("PairingQrCodesExhausted", Duration::from_secs(300), |e| {
            if let Event::PairingQrCode(qr) = e {
                codes.push(qr.code.clone());
            }
            matches!(e, Event::PairingQrCodesExhausted(_))
        })
        .await;
    if let Event::PairingQrCodesExhausted(x) = &*ev {
        assert!(x.disconnected);
    }
    drop(ev);
    assert_eq!(codes.len(), 2, "one code per ref");
    assert_ne!(codes[0], codes[1]);
    s.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_side_by_side_and_logout() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let a = paired(&fake, "15550000001", "A").await;
    let b = paired(&fake, "15550000002", "B").await;
    assert_eq!(fake.connection_count(), 2);
    assert_eq!(b.client.push_name(), "B");

    // Faults are per account.
    fake.drop_connections("15550000001").await;
    a.wait_for("Disconnected", STEP, |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await;
    a.connected(STEP).await;
    assert!(fake.is_connected("15550000002"));

    // The client unlinking itself: the server forgets the device.
    b.client.logout().await;
    assert!(
        fake.wait_until(STEP, |f| f.registered_devices("15550000002").is_empty())
            .await
    );
    a.handle.shutdown().await;
    b.handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_share_the_first_connect_waits_for_the_grace() {
    init_tracing();
    let fake = FakeWhatsApp::new()
        .with_app_state_key_share(false)
        .with_push_name_in_pair_success(false)
        .with_ik(false);
    let s = Session::fresh(&fake).await;
    let qr = s.next_qr().await;
    fake.scan(&qr, PHONE, "Shop").await.unwrap();
    let started = tokio::time::Instant::now();
    s.connected(Duration::from_secs(25)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "client waited for the key"
    );
    assert_eq!(s.client.push_name(), "", "no push name without <biz>");
    // Without a push name the client re-runs its app-state bootstrap (and the
    // 10 s key wait) on every login.
    fake.drop_connections(PHONE).await;
    s.connected(Duration::from_secs(15)).await;
    assert_eq!(fake.ik_handshakes(), 0, "IK refused: XXfallback instead");
    s.handle.abort();
}

/// Garbage from a client closes that connection; nothing panics and the
/// connection task goes away.
#[tokio::test]
async fn garbage_input_closes_the_connection() {
    use whatsapp_rust::transport::{TransportEvent, TransportFactory};
    init_tracing();
    let fake = FakeWhatsApp::new();
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        b"WA\x06\x03\x00\x00\x05hello",
        b"WA\x06\x03\x00\x00\x00",
        b"ED\x00\x01\x00\x00\x01xWA\x06\x03\x00\x00\x03\xff\xff\xff",
    ];
    for bytes in garbage {
        let (transport, events) = fake.factory().create_transport().await.unwrap();
        transport
            .send(bytes::Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
        // The server closes: the event stream ends.
        let closed = tokio::time::timeout(STEP, async {
            while let Ok(ev) = events.recv().await {
                if let TransportEvent::DataReceived(_) = ev {
                    // A ServerHello to a half-valid hello is fine; keep draining.
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "server did not close on {bytes:?}");
    }
    assert!(fake.wait_until(STEP, |f| f.connection_count() == 0).await);

    // A client that goes away mid-handshake.
    let (transport, _events) = fake.factory().create_transport().await.unwrap();
    assert_eq!(fake.connection_count(), 1);
    drop(transport);
    assert!(fake.wait_until(STEP, |f| f.connection_count() == 0).await);
}

/// The same with the SQLite store the application uses: pair, restart on the
/// same file, log in again without a QR (IK handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_a_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.db");
    let path = path.to_str().unwrap().to_string();
    let fake = FakeWhatsApp::new();

    let store = whatsapp_rust::store::SqliteStore::new(&path).await.unwrap();
    let s = Session::start(&fake, Arc::new(store)).await;
    let qr = s.next_qr().await;
    fake.scan(&qr, PHONE, "Shop").await.unwrap();
    s.connected(CONNECT_AFTER_PAIR).await;
    s.handle.shutdown().await;
    drop(s.backend);

    let store = whatsapp_rust::store::SqliteStore::new(&path).await.unwrap();
    let s2 = Session::start(&fake, Arc::new(store)).await;
    s2.connected(STEP).await;
    assert_eq!(s2.client.pn().unwrap().user, PHONE);
    assert_eq!(s2.client.push_name(), "Shop");
    assert!(fake.ik_handshakes() >= 1);
    s2.handle.shutdown().await;
}

const CODE_PHONE: &str = "966501234567";

/// Fresh client (showing QR codes) → `pair_with_code` → the 8-character code.
async fn code_requested(fake: &FakeWhatsApp) -> (Session, String) {
    use whatsapp_rust::pair_code::PairCodeOptions;
    let s = Session::fresh(fake).await;
    s.next_qr().await;
    let code = s
        .client
        .pair_with_code(PairCodeOptions {
            phone_number: CODE_PHONE.to_string(),
            ..Default::default()
        })
        .await
        .expect("stage 1 (companion_hello) answered with a pairing ref");
    assert_eq!(code.len(), 8, "{code:?}");
    assert!(wacore::pair_code::PairCodeUtils::validate_code(&code));
    let ev = s
        .wait_for("PairingCode", STEP, |e| matches!(e, Event::PairingCode(_)))
        .await;
    if let Event::PairingCode(pc) = &*ev {
        assert_eq!(pc.code, code);
    }
    (s, code)
}

/// The same code with one character changed (still a well-formed code).
fn another_code(code: &str) -> String {
    let first = if code.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &code[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_links_with_the_phone_number() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    let (s, code) = code_requested(&fake).await;

    fake.enter_pair_code(CODE_PHONE, &code.to_lowercase(), "Shop")
        .await
        .expect("the phone links with the right code");
    let ev = s
        .wait_for("PairSuccess", STEP, |e| matches!(e, Event::PairSuccess(_)))
        .await;
    if let Event::PairSuccess(ps) = &*ev {
        assert_eq!(ps.id.user, CODE_PHONE);
    }
    s.connected(CONNECT_AFTER_PAIR).await;
    let pn = s.client.pn().expect("own number after pairing");
    assert_eq!(pn.user, CODE_PHONE);
    assert_eq!(s.client.push_name(), "Shop");
    assert!(fake.is_connected(CODE_PHONE));
    assert_eq!(fake.registered_devices(CODE_PHONE), vec![pn.device]);

    // The client is linked: no further code can be entered for it.
    assert!(
        fake.enter_pair_code(CODE_PHONE, &code, "Shop")
            .await
            .is_err()
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pair_code_links_nothing() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    assert!(
        fake.enter_pair_code(CODE_PHONE, "ABCD1234", "Shop")
            .await
            .is_err(),
        "nobody asked for a code yet"
    );
    let (s, code) = code_requested(&fake).await;
    assert!(
        fake.enter_pair_code(CODE_PHONE, "not-a-code", "Shop")
            .await
            .is_err()
    );
    assert!(
        fake.enter_pair_code("15550000000", &code, "Shop")
            .await
            .is_err(),
        "the code was requested for another number"
    );

    let err = fake
        .enter_pair_code(CODE_PHONE, &another_code(&code), "Shop")
        .await
        .expect_err("a wrong code must not link");
    assert!(err.to_string().contains("wrong pairing code"), "{err:#}");
    assert!(fake.registered_devices(CODE_PHONE).is_empty());
    assert!(
        fake.lid_of(CODE_PHONE).is_none(),
        "no account was left behind"
    );
    assert!(!fake.is_connected(CODE_PHONE));
    assert!(s.client.pn().is_none());

    // The phone retries with the right code (the client allows 3 attempts).
    fake.enter_pair_code(CODE_PHONE, &code, "Shop")
        .await
        .expect("the right code still links");
    s.wait_for("PairSuccess", STEP, |e| matches!(e, Event::PairSuccess(_)))
        .await;
    s.connected(CONNECT_AFTER_PAIR).await;
    assert_eq!(s.client.pn().unwrap().user, CODE_PHONE);
    s.handle.abort();
}

// ---- History sync and contacts' messages ----

const CONTACT_PN: &str = "966500000001@s.whatsapp.net";
const CONTACT_LID: &str = "123456789012345@lid";
const CONTACT_LID_PN: &str = "966500000002@s.whatsapp.net";

/// A minute before the test process started: "recent", and the same in every
/// call.
fn recent() -> u64 {
    static RECENT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RECENT.get_or_init(|| wacore::time::now_secs() as u64 - 60)
}

fn sample_history() -> fake_whatsapp::History {
    use fake_whatsapp::{History, HistoryChat};
    let old = 1_600_000_000u64;
    let recent = recent();
    History {
        chats: vec![
            HistoryChat {
                jid: CONTACT_PN.into(),
                name: Some("Ali".into()),
                last_msg_timestamp: Some(recent),
                conversation_timestamp: Some(recent),
                ..Default::default()
            },
            HistoryChat {
                jid: "966500000003@s.whatsapp.net".into(),
                last_msg_timestamp: Some(old),
                conversation_timestamp: Some(old),
                ..Default::default()
            },
            HistoryChat {
                jid: CONTACT_LID.into(),
                pn_jid: Some(CONTACT_LID_PN.into()),
                name: Some("Sara".into()),
                last_msg_timestamp: Some(recent - 3600),
                conversation_timestamp: Some(recent - 3600),
                ..Default::default()
            },
            HistoryChat {
                jid: "120363000000000001@g.us".into(),
                name: Some("Family".into()),
                last_msg_timestamp: Some(recent - 7200),
                conversation_timestamp: Some(recent - 7200),
                ..Default::default()
            },
            HistoryChat {
                jid: "1700000000@broadcast".into(),
                name: Some("Customers".into()),
                conversation_timestamp: Some(old),
                ..Default::default()
            },
            HistoryChat {
                jid: "966500000004@s.whatsapp.net".into(),
                lid_jid: Some("200000000000004@lid".into()),
                ..Default::default()
            },
        ],
        pushnames: vec![
            (CONTACT_PN.into(), "Ali P".into()),
            (CONTACT_LID.into(), "Sara P".into()),
        ],
        lid_pn: vec![
            (CONTACT_LID.into(), CONTACT_LID_PN.into()),
            (
                "200000000000004@lid".into(),
                "966500000004@s.whatsapp.net".into(),
            ),
        ],
    }
}

fn history_of(e: &Event) -> Option<&waproto::whatsapp::HistorySync> {
    match e {
        Event::HistorySync(h) => h.get(),
        _ => None,
    }
}

/// Asserts the sample history came through.
fn check_history(e: &Event) {
    let Event::HistorySync(lazy) = e else {
        panic!("not a history sync");
    };
    assert_eq!(
        lazy.sync_type(),
        waproto::whatsapp::history_sync::HistorySyncType::INITIAL_BOOTSTRAP as i32
    );
    assert_eq!(lazy.progress(), Some(100));
    let hs = lazy.get().expect("the history decodes");
    let expected = sample_history();
    assert_eq!(hs.conversations.len(), expected.chats.len());
    for (got, want) in hs.conversations.iter().zip(&expected.chats) {
        assert_eq!(got.id, want.jid);
        assert_eq!(got.pn_jid, want.pn_jid);
        assert_eq!(got.lid_jid, want.lid_jid);
        assert_eq!(got.name, want.name);
        assert_eq!(got.last_msg_timestamp, want.last_msg_timestamp);
        assert_eq!(got.conversation_timestamp, want.conversation_timestamp);
    }
    let pushnames: Vec<(String, String)> = hs
        .pushnames
        .iter()
        .map(|p| {
            (
                p.id.clone().unwrap_or_default(),
                p.pushname.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(pushnames, expected.pushnames);
    let mappings: Vec<(String, String)> = hs
        .phone_number_to_lid_mappings
        .iter()
        .map(|m| {
            (
                m.lid_jid.clone().unwrap_or_default(),
                m.pn_jid.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(mappings, expected.lid_pn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_sends_its_history_after_pairing() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, sample_history());
    let s = Session::fresh(&fake).await;
    let qr = s.next_qr().await;
    fake.scan(&qr, PHONE, "Shop").await.expect("scan pairs");

    // Connected and HistorySync both arrive, in either order, promptly.
    let (mut connected, mut history) = (false, None);
    let mut protocol_kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + CONNECT_AFTER_PAIR;
    while !(connected && history.is_some()) {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .expect("Connected and HistorySync in time")
            .expect("events");
        match &*ev {
            Event::Connected(_) => connected = true,
            Event::HistorySync(_) => {
                assert!(history.is_none(), "one history sync");
                history = Some(ev.clone());
            }
            // The phone's protocol messages (key share, and the history
            // notification with its payload already taken out) also surface
            // as Event::Messages, from our own number.
            Event::Messages(batch) => {
                for m in batch.iter() {
                    assert!(m.info.source.is_from_me);
                    let kind = m
                        .message
                        .protocol_message
                        .as_option()
                        .and_then(|p| p.r#type);
                    protocol_kinds.push(kind);
                }
            }
            other => eprintln!("event: {}", event_name(other)),
        }
    }
    check_history(&history.unwrap());
    use waproto::whatsapp::message::protocol_message::Type;
    assert!(protocol_kinds.contains(&Some(Type::HISTORY_SYNC_NOTIFICATION)));

    // The client keeps the LID↔PN mappings itself.
    let lid: wacore_binary::Jid = CONTACT_LID.parse().unwrap();
    let entry = s
        .client
        .get_lid_pn_entry(&lid)
        .await
        .unwrap()
        .expect("the mapping is known");
    assert_eq!(&*entry.phone_number, "966500000002");
    let pn: wacore_binary::Jid = "966500000004@s.whatsapp.net".parse().unwrap();
    let entry = s
        .client
        .get_lid_pn_entry(&pn)
        .await
        .unwrap()
        .expect("mapped");
    assert_eq!(&*entry.lid, "200000000000004");

    // Once per device: a reconnect brings no second history.
    fake.drop_connections(PHONE).await;
    s.connected(STEP).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(ev) = s.events.try_recv() {
        assert!(history_of(&ev).is_none(), "history sent twice");
    }

    // send_history pushes it again on demand.
    fake.send_history(PHONE, sample_history()).await.unwrap();
    let ev = s
        .wait_for("HistorySync", STEP, |e| matches!(e, Event::HistorySync(_)))
        .await;
    check_history(&ev);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_messages_reach_the_client() {
    init_tracing();
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, sample_history());
    let s = paired(&fake, PHONE, "Shop").await;

    let t0 = wacore::time::now_secs() - 30;
    // A phone-number contact, twice (the second reuses the session), then a
    // LID contact whose number the history mapped.
    let sends = [
        (CONTACT_PN, "Ali P", "salam", t0),
        (CONTACT_PN, "Ali P", "second", t0 + 1),
        (CONTACT_LID, "Sara P", "hello from lid", t0 + 2),
    ];
    for (from, name, text, t) in sends {
        fake.send_message(PHONE, from, name, text, t).await.unwrap();
        let ev = s
            .wait_for("the contact's message", STEP, |e| match e {
                Event::Messages(b) => b
                    .iter()
                    .any(|m| m.message.conversation.as_deref() == Some(text)),
                _ => false,
            })
            .await;
        let Event::Messages(batch) = &*ev else {
            unreachable!()
        };
        let m = batch
            .iter()
            .find(|m| m.message.conversation.as_deref() == Some(text))
            .unwrap();
        let info = &m.info;
        assert_eq!(info.source.chat.to_string(), from);
        assert_eq!(info.source.sender.to_string(), from);
        assert!(!info.source.is_from_me);
        assert!(!info.source.is_group);
        assert_eq!(info.push_name, name);
        assert_eq!(info.timestamp.timestamp(), t);
        let alt = info.source.sender_alt.as_ref().map(|j| j.to_string());
        if from == CONTACT_LID {
            assert_eq!(alt.as_deref(), Some(CONTACT_LID_PN));
        } else {
            assert_eq!(alt, None);
        }
    }
    s.handle.shutdown().await;
}

/// Collects WARN/ERROR events emitted on the current thread (a
/// `current_thread` test runs the client there too).
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={v:?} ", f.name()));
            }
        }
        if *event.metadata().level() <= tracing::Level::WARN {
            let mut fields = Fields(format!("{} ", event.metadata().target()));
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

fn contact(jid: &str, full: &str, first: &str) -> fake_whatsapp::PhoneContact {
    fake_whatsapp::PhoneContact {
        jid: jid.into(),
        full_name: Some(full.into()),
        first_name: Some(first.into()),
        ..Default::default()
    }
}

/// Waits for `Event::ContactUpdate`s until every JID in `want` was seen
/// (and, with `connected`, an `Event::Connected` too: the bootstrap sync
/// runs before it), checking each against its `PhoneContact`.
async fn expect_contacts(s: &Session, want: &[fake_whatsapp::PhoneContact], mut connected: bool) {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < want.len() || connected {
        let ev = s
            .wait_for("ContactUpdate", STEP, |e| {
                matches!(e, Event::ContactUpdate(_) | Event::Connected(_))
            })
            .await;
        let Event::ContactUpdate(u) = &*ev else {
            connected = false;
            continue;
        };
        let jid = u.jid.to_string();
        let c = want
            .iter()
            .find(|c| c.jid == jid)
            .unwrap_or_else(|| panic!("unexpected ContactUpdate for {jid}"));
        assert_eq!(u.action.full_name, c.full_name, "{jid}");
        assert_eq!(u.action.first_name, c.first_name, "{jid}");
        assert_eq!(u.action.pn_jid, c.pn_jid, "{jid}");
        assert_eq!(u.action.lid_jid, c.lid_jid, "{jid}");
        seen.insert(jid);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_phones_contacts_arrive_as_app_state() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use wacore::appstate::patch_decode::WAPatchName;
    use whatsapp_rust::sync_task::MajorSyncTask;

    init_tracing();
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let fake = FakeWhatsApp::new();
    let first = vec![
        fake_whatsapp::PhoneContact {
            lid_jid: Some(CONTACT_LID.into()),
            ..contact(CONTACT_PN, "Ali Hassan", "Ali")
        },
        fake_whatsapp::PhoneContact {
            pn_jid: Some(CONTACT_LID_PN.into()),
            ..contact(CONTACT_LID, "Sara Ahmed", "Sara")
        },
        contact("966500000003@s.whatsapp.net", "Omar Saleh", "Omar"),
    ];
    fake.set_contacts(PHONE, first.clone());
    let s = Session::fresh(&fake).await;
    let qr = s.next_qr().await;
    fake.scan(&qr, PHONE, "Shop").await.expect("scan pairs");
    expect_contacts(&s, &first, true).await;

    // A contact added later reaches the client on its next (full) sync.
    let later = vec![contact("966500000004@s.whatsapp.net", "Huda Ali", "Huda")];
    fake.set_contacts(PHONE, later.clone());
    s.client
        .process_sync_task(MajorSyncTask::AppStateSync {
            name: WAPatchName::CriticalUnblockLow,
            full_sync: true,
        })
        .await;
    expect_contacts(&s, &later, false).await;

    // And on an incremental sync (the client asks from its version): a
    // renamed contact overwrites the earlier entry.
    let renamed = vec![contact(CONTACT_PN, "Ali H.", "Ali")];
    fake.set_contacts(PHONE, renamed.clone());
    s.client
        .process_sync_task(MajorSyncTask::AppStateSync {
            name: WAPatchName::CriticalUnblockLow,
            full_sync: false,
        })
        .await;
    expect_contacts(&s, &renamed, false).await;

    let state = s
        .backend
        .get_version(WAPatchName::CriticalUnblockLow.as_str())
        .await
        .unwrap();
    assert_eq!(state.version, 3);
    assert!(!state.mac_mismatch_fatal, "the client's LT-hash diverged");
    let app_state_warnings: Vec<String> = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|w| {
            let l = w.to_lowercase();
            [
                "appstate",
                "app state",
                "app_state",
                "mac",
                "critical_unblock_low",
                "criticalunblocklow",
                "patch",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .cloned()
        .collect();
    assert!(
        app_state_warnings.is_empty(),
        "app-state warnings: {app_state_warnings:#?}"
    );
    s.handle.shutdown().await;
}
