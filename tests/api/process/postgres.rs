//! `serve --database postgres://… --engine sim` as a back office uses it, black-box: link,
//! fetch, groups, a tenant key, a webhook, a group send; then a restart with the same
//! database and the data folder deleted brings every bit of it back, and writes no file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use super::server::{Server, pair};
use crate::webhooks::{Received, receiver};

const SECRET: &str = "process-webhook-secret-7d2e91";
const BOOK: usize = 3;
/// Fast sends, and the test's own webhook receiver on loopback allowed. No automatic scan:
/// the test scans each QR code itself.
const FLAGS: &[&str] = &[
    "--message-interval",
    "0.05",
    "--message-jitter",
    "0",
    "--outbound-allow",
    "127.0.0.1/32",
];

/// Polls `probe` until it answers `Ok`, 90 s at most.
async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    testkit::poll(Duration::from_secs(90), what, probe).await
}

/// `p` and everything under it that is a file.
fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// What a receiver does with `X-Webhook-Signature-V2`: HMAC of "<t>.<raw body>".
fn signed_v2(headers: &axum::http::HeaderMap, body: &str) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let v2 = header("x-webhook-signature-v2");
    let Some((t, sig)) = v2
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    if t != header("x-webhook-timestamp") {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == sig
}

fn events(got: &Received, kind: &str) -> Vec<Value> {
    got.all()
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).expect("a JSON body"))
        .filter(|e| e["event"] == kind)
        .collect()
}

async fn link(srv: &Server, place: i64) -> String {
    let (s, v) = srv
        .post(
            "/api/whatsapp/init",
            json!({"user_id": 1, "place_id": place}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    srv.wait_status_of(1, place, "qr_ready").await;
    let (s, v) = srv
        .post("/api/sim/scan", json!({"user_id": 1, "place_id": place}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ready = srv.wait_status_of(1, place, "ready").await;
    ready["session_id"]
        .as_str()
        .expect("a session id")
        .to_string()
}

async fn groups(srv: &Server, key: &str) -> Vec<Value> {
    let (s, v) = srv
        .call_as(
            key,
            Method::GET,
            "/api/whatsapp/groups?user_id=1&place_id=2",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["groups"].as_array().expect("groups").clone()
}

async fn messages(srv: &Server) -> Vec<Value> {
    let (s, v) = srv
        .call(
            Method::GET,
            "/api/whatsapp/messages?user_id=1&place_id=2&limit=1000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["messages"].as_array().expect("messages").clone()
}

async fn outbox(srv: &Server) -> Vec<Value> {
    let (s, v) = srv
        .call(Method::GET, "/api/sim/outbox?user_id=1&place_id=2", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["messages"].as_array().expect("outbox").clone()
}

async fn all_sent(srv: &Server, n: usize) -> Vec<Value> {
    eventually(&format!("{n} messages sent"), || async {
        let m = messages(srv).await;
        if m.len() == n && m.iter().all(|m| m["status"] == "sent") {
            Ok(m)
        } else {
            Err(format!("{m:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn on_postgres_everything_comes_back_after_a_restart_with_an_empty_data_dir() {
    let db = testkit::pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (hook, got) = receiver().await;
    let mut srv = Server::start_on(&db.url, &data, FLAGS).await;

    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = (0..BOOK)
        .map(|i| {
            json!({"jid": format!("96651{:07}@s.whatsapp.net", 1_000 + i),
                        "name": format!("Person {i}"), "last_message_at": now - i as i64 * 60})
        })
        .collect();
    let (s, v) = srv
        .call(
            Method::PUT,
            "/api/sim/phonebook",
            Some(
                json!({"user_id": 1, "place_id": 2, "me": "966500000001@s.whatsapp.net",
                        "entries": entries}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let sessions = [link(&srv, 2).await, link(&srv, 3).await];

    let (s, v) = srv
        .call(
            Method::PUT,
            "/api/whatsapp/webhook",
            Some(json!({"user_id": 1, "url": hook, "secret": SECRET})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = srv.post("/api/whatsapp/start-contact-fetch", pair()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    srv.wait_for("fetched", |s| s["contacts_fetch_completed"] == true)
        .await;
    let (s, v) = srv
        .post(
            "/api/admin/keys",
            json!({"user_id": 1, "name": "back office"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["data"]["key"]
        .as_str()
        .expect("the key, once")
        .to_string();
    let before = groups(&srv, &key).await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before[0]["contact_count"], BOOK);

    let (s, v) = srv
        .call_as(
            &key,
            Method::POST,
            &format!("/api/whatsapp/groups/{}/send-message", before[0]["id"]),
            Some(json!({"user_id": 1, "place_id": 2, "text": "hello"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let sent = all_sent(&srv, BOOK).await;
    let out = outbox(&srv).await;
    assert_eq!(out.len(), BOOK, "{out:?}");
    assert!(out.iter().all(|m| m["text"] == "hello"), "{out:?}");
    eventually("three signed message.sent deliveries", || async {
        let n = events(&got, "message.sent").len();
        if n == BOOK {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    for (headers, body) in got.all() {
        assert!(signed_v2(&headers, &body), "a bad signature on {body}");
    }

    srv.signal("-TERM");
    let (code, _) = srv.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", srv.logs());
    if data.exists() {
        std::fs::remove_dir_all(&data).unwrap();
    }

    let srv = Server::start_on(&db.url, &data, FLAGS).await;
    for (place, id) in [2, 3].into_iter().zip(&sessions) {
        let st = srv.wait_status_of(1, place, "ready").await;
        assert_eq!(&st["session_id"], id.as_str(), "{st}");
        assert_eq!(st["qr_code"], Value::Null, "{st}");
    }
    // The tenant key, the groups, the messages and the outbox are the ones made before.
    let after = groups(&srv, &key).await;
    let ids = |g: &[Value]| -> Vec<(Value, Value)> {
        g.iter()
            .map(|g| (g["id"].clone(), g["contact_count"].clone()))
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    let again = messages(&srv).await;
    let keyed = |m: &[Value]| -> Vec<(Value, Value)> {
        let mut v: Vec<_> = m
            .iter()
            .map(|m| (m["id"].clone(), m["whatsapp_message_id"].clone()))
            .collect();
        v.sort_by_key(|(id, _)| id.as_i64());
        v
    };
    assert_eq!(keyed(&again), keyed(&sent));
    assert_eq!(outbox(&srv).await.len(), BOOK);
    let (s, v) = srv
        .call(Method::GET, "/api/admin/keys?user_id=1", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["keys"].as_array().map(Vec::len), Some(1), "{v}");

    // The webhook is still set: a send after the restart reaches it, signed.
    let (s, v) = srv
        .call_as(
            &key,
            Method::POST,
            "/api/whatsapp/send-message",
            Some(
                json!({"user_id": 1, "place_id": 2, "phone_number": "+966511001000",
                        "text": "back"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    all_sent(&srv, BOOK + 1).await;
    eventually("the send after the restart delivered", || async {
        let n = events(&got, "message.sent").len();
        if n == BOOK + 1 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    for (headers, body) in got.all() {
        assert!(signed_v2(&headers, &body), "a bad signature on {body}");
    }

    let written = files_under(&data);
    assert!(
        written.is_empty(),
        "the data folder holds files: {written:?}"
    );
}
