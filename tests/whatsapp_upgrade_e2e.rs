//! Upgrading unlinks nobody: a session linked by an earlier version (its device in the
//! library's own SQLite file `<data-dir>/whatsapp/<id>/device.db`, a `linked` marker beside
//! it, its row in `sessions`) is imported into the database at start and reconnects with its
//! old keys, no QR code. The earlier layout is built here the way that version built it: the
//! library's `SqliteStore` on that path, paired against the fake server. The same body runs
//! with the server on SQLite and on PostgreSQL (`--database postgres://`): the file is SQLite
//! either way, the database it moves into is not.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fake_whatsapp::FakeWhatsApp;
use testkit::wa::{PHONE, Server, TestBackend, WAIT, error_message};
use tokio::sync::mpsc;
use whatsapp_manager::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use whatsapp_manager::store::{Db, SessionRecord};
use whatsapp_rust::bot::Bot;
use whatsapp_rust::types::events::{Event, EventHandler};

struct Events(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Events {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }
}

/// Links `PHONE` the way the earlier version did: the library's file store at
/// `<data>/whatsapp/<id>/device.db`, the `linked` marker, and the session's row.
async fn link_with_file_store(fake: &FakeWhatsApp, data: &Path, db: &Db, pair: Pair) -> SessionId {
    let now = 1_700_000_000_000;
    let id = SessionId::new(pair, now);
    let dir = data.join("whatsapp").join(id.as_str());
    std::fs::create_dir_all(&dir).expect("session folder");
    let file = dir.join("device.db");
    let store = whatsapp_rust::store::SqliteStore::new(file.to_str().expect("utf-8 path"))
        .await
        .expect("the library's file store");
    let (tx, mut events) = mpsc::unbounded_channel();
    let bot = Bot::builder()
        .with_backend(store)
        .with_transport_factory(fake.factory())
        .with_http_client(fake.http_client())
        .with_runtime(whatsapp_rust::TokioRuntime)
        .with_version((2, 3000, 1_000_000_000))
        .with_event_handler(Events(tx))
        .build()
        .await
        .expect("bot builds");
    let client = bot.client();
    let handle = bot.spawn();
    let qr = match &*next(&mut events, |e| matches!(e, Event::PairingQrCode(_))).await {
        Event::PairingQrCode(qr) => qr.code.clone(),
        _ => unreachable!(),
    };
    fake.scan(&qr, PHONE, "Shop").await.expect("scan");
    next(&mut events, |e| matches!(e, Event::Connected(_))).await;
    client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    drop(client);
    std::fs::write(dir.join("linked"), b"linked\n").expect("marker");
    let mut rec = SessionRecord::new(id.clone(), pair, now);
    rec.status = SessionStatus::Ready;
    rec.phone_number = PhoneNumber::parse_international(&format!("+{PHONE}"));
    rec.name = Some("Shop".into());
    rec.connected_at = Some(now);
    db.save_session(&rec).await.expect("the session's row");
    id
}

/// The next library event that `want` picks, skipping the others.
async fn next(
    events: &mut mpsc::UnboundedReceiver<Arc<Event>>,
    want: fn(&Event) -> bool,
) -> Arc<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            _ => panic!("the library client never got there"),
        }
    }
}

fn pair(place: i64) -> Pair {
    Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(place))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_file_of_the_earlier_version_is_imported_into_sqlite_and_reconnects_without_a_qr()
{
    imports_and_reconnects_without_a_qr(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_file_of_the_earlier_version_is_imported_into_postgres_and_reconnects_without_a_qr()
 {
    imports_and_reconnects_without_a_qr(TestBackend::Postgres).await;
}

async fn imports_and_reconnects_without_a_qr(backend: TestBackend) {
    let mut s = Server::start_on(FakeWhatsApp::new(), backend).await;
    let data = s.dir.path().join("data");
    let db = s.database().await;
    let t = std::time::Instant::now();
    let id = link_with_file_store(&s.fake, &data, &db, pair(2)).await;
    eprintln!("linked the earlier way in {:?}", t.elapsed());
    let devices = s.fake.registered_devices(PHONE);
    assert_eq!(devices.len(), 1, "linked once");
    // A file that cannot be read (another number's, on place 3) is kept, never deleted.
    let broken = SessionId::new(pair(3), 1_700_000_000_001);
    let broken_dir = data.join("whatsapp").join(broken.as_str());
    std::fs::create_dir_all(&broken_dir).unwrap();
    std::fs::write(broken_dir.join("device.db"), b"not a database").unwrap();
    std::fs::write(broken_dir.join("linked"), b"linked\n").unwrap();
    let mut rec = SessionRecord::new(broken.clone(), pair(3), 1_700_000_000_001);
    rec.status = SessionStatus::Ready;
    db.save_session(&rec).await.unwrap();
    // A folder that never got linked goes, as it always did.
    let unlinked = data.join("whatsapp").join("session_1_4_1700000000002");
    std::fs::create_dir_all(&unlinked).unwrap();
    std::fs::write(unlinked.join("device.db"), b"").unwrap();
    assert!(!s.is_linked(id.as_str()).await, "not in the database yet");

    let ik = s.fake.ik_handshakes();
    let logins = s.fake.login_count(PHONE);
    let started = std::time::Instant::now();
    s.restart().await;
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], id.as_str(), "the same session");
    eprintln!("imported and ready in {:?}", started.elapsed());
    assert_eq!(st["phone_number"], format!("+{PHONE}"));
    assert!(
        s.fake.ik_handshakes() > ik,
        "logged in with its old keys (IK)"
    );
    assert!(s.fake.login_count(PHONE) > logins);
    assert_eq!(
        s.fake.registered_devices(PHONE),
        devices,
        "no new pairing: the phone lists the same device"
    );

    let folder = s.credentials_dir(id.as_str());
    assert!(!folder.join("device.db").exists(), "renamed");
    assert!(folder.join("device.db.imported").exists());
    assert!(s.is_linked(id.as_str()).await);
    let rows = s.device_rows(id.as_str()).await.expect("imported rows");
    assert!(rows.device.is_some());
    assert!(
        !rows.signal_sessions.is_empty() || !rows.prekeys.is_empty(),
        "{rows:?}"
    );
    assert_eq!(
        rows.imported_from.as_deref(),
        folder.join("device.db").to_str(),
        "where it came from is noted"
    );

    assert!(
        broken_dir.join("device.db").exists(),
        "an unreadable file is kept"
    );
    assert!(!s.is_linked(broken.as_str()).await);
    let (_, body) = s.get("/api/whatsapp/status?user_id=1&place_id=3").await;
    assert_eq!(body["data"]["status"], "error", "{body}");
    assert!(
        error_message(&body["data"]).contains("before this session was linked"),
        "{body}"
    );
    assert!(!unlinked.exists(), "a never-linked folder is removed");

    // The next start uses the database copy: nothing is imported twice, still no QR.
    let ik = s.fake.ik_handshakes();
    s.restart().await;
    let st = s.wait_status("ready").await;
    assert_eq!(st["session_id"], id.as_str());
    assert!(s.fake.ik_handshakes() > ik);
    assert_eq!(s.fake.registered_devices(PHONE), devices);
    assert!(!folder.join("device.db").exists(), "no file came back");
    let again = s.device_rows(id.as_str()).await.expect("rows");
    assert_eq!(again.imported_from, rows.imported_from);
    assert!(again.device.is_some());
}
