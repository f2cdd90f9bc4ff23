//! Contacts over the real protocol: the fake phone sends its history after pairing and its
//! contacts send live messages; our server caches what arrives and a fetch turns it into
//! the two groups. `cargo test --test whatsapp_contacts_e2e` runs exactly these.

use std::time::Duration;

use fake_whatsapp::{FakeWhatsApp, History, HistoryChat};
use reqwest::StatusCode;
use serde_json::Value;
use testkit::wa::*;

const DAY: u64 = 86_400;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn chat(jid: &str, name: Option<&str>, last: Option<u64>) -> HistoryChat {
    HistoryChat {
        jid: jid.into(),
        name: name.map(str::to_string),
        last_msg_timestamp: last,
        ..Default::default()
    }
}

/// Persons with numbers (recent and old), a LID chat WhatsApp mapped to a number, one it
/// did not, a group, broadcasts, the account itself, and a chat known only by its
/// conversation time.
fn history() -> History {
    let t = now();
    History {
        chats: vec![
            chat(
                "966500000001@s.whatsapp.net",
                Some("Ali"),
                Some(t - 5 * DAY),
            ),
            chat("966500000002@s.whatsapp.net", None, Some(t - 200 * DAY)),
            chat("111111111111111@lid", Some("Sara"), Some(t - 10 * DAY)),
            chat("222222222222222@lid", Some("Nobody"), Some(t - 3 * DAY)),
            chat("120363000000000001@g.us", Some("Family"), Some(t - DAY)),
            chat("status@broadcast", None, Some(t - DAY)),
            chat("1600000000@broadcast", Some("List"), Some(t - DAY)),
            chat(&format!("{PHONE}@s.whatsapp.net"), None, Some(t - DAY)),
            HistoryChat {
                jid: "447911123456@s.whatsapp.net".into(),
                name: Some("London".into()),
                conversation_timestamp: Some(t - 100 * DAY),
                ..Default::default()
            },
        ],
        pushnames: vec![("966500000002@s.whatsapp.net".into(), "Badr".into())],
        lid_pn: vec![(
            "111111111111111@lid".into(),
            "966500000003@s.whatsapp.net".into(),
        )],
    }
}

const ALL: [&str; 4] = [
    "+447911123456",
    "+966500000001",
    "+966500000002",
    "+966500000003",
];
const RECENT: [&str; 2] = ["+966500000001", "+966500000003"];

async fn fetch(s: &Server) -> Value {
    let (code, body) = s.session_post("start-contact-fetch").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, p) = s
            .get("/api/whatsapp/contacts/progress?user_id=1&place_id=2")
            .await;
        let d = p["data"].clone();
        if d["is_fetching"] == false && d["status"] == "ready" {
            assert_eq!(d["contacts_fetch_error"], Value::Null, "{d}");
            assert_eq!(d["contacts_fetch_completed"], true, "{d}");
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fetch never ended: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The numbers of a group, by name, sorted.
async fn members(s: &Server, group: &str) -> Vec<String> {
    let (_, body) = s.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
    let id = body["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("no group {group}: {body}"))["id"]
        .clone();
    let (code, body) = s
        .get(&format!(
            "/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2&limit=1000"
        ))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut v: Vec<String> = body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phone_number"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn contact(s: &Server, phone: &str) -> Value {
    let (_, body) = s
        .get(&format!(
            "/api/whatsapp/groups/1/contacts?user_id=1&place_id=2&limit=1000&search={}&search_type=phone",
            phone.trim_start_matches('+')
        ))
        .await;
    body["data"]["contacts"]
        .as_array()
        .and_then(|a| a.first().cloned())
        .unwrap_or(Value::Null)
}

/// History arrives right after linking, asynchronously: fetch until it is in (the first
/// fetch may run before the phone's message lands), bounded.
async fn fetch_until_all(s: &Server) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = fetch(s).await;
        if d["total_contacts"] == ALL.len() {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never complete: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_fills_both_groups_with_exactly_the_right_numbers() {
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, history());
    let s = Server::start(fake).await;
    s.link().await;
    let d = fetch_until_all(&s).await;

    assert_eq!(members(&s, "جميع الارقام").await, ALL);
    assert_eq!(members(&s, "اخر الارقام (90 يوم)").await, RECENT);

    // What was left out is counted, not silently dropped.
    let summary = &d["fetch_summary"];
    assert_eq!(summary["skipped_unresolved_lids"], 1, "{d}");
    assert_eq!(summary["skipped_groups"], 1, "{d}");
    assert_eq!(summary["skipped_broadcasts"], 2, "{d}");
    assert_eq!(summary["skipped_self"], 1, "{d}");

    // Names: saved names, the push name, the LID chat's name under its number.
    assert_eq!(contact(&s, "+966500000001").await["name"], "Ali");
    assert_eq!(contact(&s, "+966500000002").await["push_name"], "Badr");
    assert_eq!(contact(&s, "+966500000003").await["name"], "Sara");
    assert_eq!(contact(&s, "+447911123456").await["name"], "London");

    // A second fetch changes nothing and duplicates nothing.
    let again = fetch(&s).await;
    assert_eq!(again["total_contacts"], ALL.len());
    assert_eq!(members(&s, "جميع الارقام").await, ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_message_moves_an_old_contact_into_the_90_day_group() {
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, history());
    let s = Server::start(fake).await;
    s.link().await;
    fetch_until_all(&s).await;
    assert_eq!(members(&s, "اخر الارقام (90 يوم)").await, RECENT);

    // Badr (last chat 200 days ago) writes now; a new contact writes too.
    s.fake
        .send_message(
            PHONE,
            "966500000002@s.whatsapp.net",
            "Badr",
            "hello",
            now() as i64,
        )
        .await
        .expect("message delivered");
    s.fake
        .send_message(
            PHONE,
            "966500000009@s.whatsapp.net",
            "Newcomer",
            "hi",
            now() as i64,
        )
        .await
        .expect("message delivered");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        fetch(&s).await;
        let recent = members(&s, "اخر الارقام (90 يوم)").await;
        if recent.len() == 4 {
            assert_eq!(
                recent,
                [
                    "+966500000001",
                    "+966500000002",
                    "+966500000003",
                    "+966500000009"
                ]
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{recent:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(contact(&s, "+966500000009").await["push_name"], "Newcomer");
    assert_eq!(members(&s, "جميع الارقام").await.len(), ALL.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_between_history_and_fetch_loses_nothing() {
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, history());
    let mut s = Server::start(fake).await;
    s.link().await;
    // The history is delivered once, at linking; give it time to land, then restart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.restart().await;
    s.wait_status("ready").await;
    let d = fetch(&s).await;
    assert_eq!(d["total_contacts"], ALL.len(), "{d}");
    assert_eq!(members(&s, "جميع الارقام").await, ALL);
    assert_eq!(members(&s, "اخر الارقام (90 يوم)").await, RECENT);
}

/// Names saved on the phone come as app state; a fetch asks for a fresh snapshot, so a
/// contact saved after linking is there at the next fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_saved_on_the_phone_name_the_numbers_and_a_fetch_refreshes_them() {
    use fake_whatsapp::PhoneContact;
    let fake = FakeWhatsApp::new();
    fake.set_history(PHONE, history());
    fake.set_contacts(
        PHONE,
        vec![
            PhoneContact {
                jid: "966500000002@s.whatsapp.net".into(),
                full_name: Some("Badr Saved".into()),
                ..Default::default()
            },
            // Known only as a LID in app state, with its number: a new contact.
            PhoneContact {
                jid: "444444444444444@lid".into(),
                full_name: Some("Huda".into()),
                pn_jid: Some("966500000004@s.whatsapp.net".into()),
                ..Default::default()
            },
        ],
    );
    let s = Server::start(fake).await;
    s.link().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = fetch(&s).await;
        if d["total_contacts"] == ALL.len() + 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(contact(&s, "+966500000002").await["name"], "Badr Saved");
    assert_eq!(contact(&s, "+966500000004").await["name"], "Huda");

    // Saved on the phone after linking: the next fetch's snapshot brings it.
    s.fake.set_contacts(
        PHONE,
        vec![PhoneContact {
            jid: "966500000005@s.whatsapp.net".into(),
            full_name: Some("Late".into()),
            ..Default::default()
        }],
    );
    let d = fetch(&s).await;
    assert_eq!(d["total_contacts"], ALL.len() + 2, "{d}");
    assert_eq!(contact(&s, "+966500000005").await["name"], "Late");
}

/// Names from the phone are kept as they come, minus control characters (the account's
/// name, a chat's saved name, push names from history and from a live message); the
/// session's credentials and the database are the server user's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_names_lose_their_control_characters_and_credentials_stay_private() {
    let fake = FakeWhatsApp::new();
    fake.set_history(
        PHONE,
        History {
            chats: vec![chat(
                "966500000001@s.whatsapp.net",
                Some("Al\u{0}i\n"),
                Some(now() - DAY),
            )],
            pushnames: vec![("966500000001@s.whatsapp.net".into(), "Ali\u{7} P".into())],
            ..Default::default()
        },
    );
    let s = Server::start(fake).await;
    let first = s.init().await;
    let session_id = first["data"]["session_id"].as_str().unwrap().to_string();
    s.wait_status("qr_ready").await;
    let qr = s.qr_raw().await;
    s.fake.scan(&qr, PHONE, "Sh\u{1B}op\n").await.expect("scan");
    assert_eq!(s.wait_status("ready").await["name"], "Shop");

    s.fake
        .send_message(
            PHONE,
            "966500000002@s.whatsapp.net",
            "Ba\u{0}dr\r\n",
            "hello",
            now() as i64,
        )
        .await
        .expect("message delivered");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = fetch(&s).await;
        if d["total_contacts"] == 2 && contact(&s, "+966500000001").await["name"] != Value::Null {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ali = contact(&s, "+966500000001").await;
    assert_eq!(ali["name"], "Ali", "{ali}");
    assert_eq!(ali["push_name"], "Ali P", "{ali}");
    assert_eq!(contact(&s, "+966500000002").await["push_name"], "Badr");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The credentials live in the database file now: it alone must be private, and
        // nothing of the device is left under --data-dir.
        s.assert_credentials_in_database(&session_id).await;
        let db = s.sqlite_file().expect("on SQLite");
        let mut private = vec![db.clone()];
        for suffix in ["-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let p = std::path::PathBuf::from(p);
            if p.exists() {
                private.push(p);
            }
        }
        for p in private {
            let mode = std::fs::metadata(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{} is {:o}", p.display(), mode & 0o777);
        }
    }
}
