//! The simulated phone network drives every tenant's phones: only the admin key may use it,
//! and its phone-book uploads are bounded.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn tenant_keys_cannot_use_the_simulated_network() {
    let app = spawn_app_with_admin_key().await;
    let (status, body) = app
        .post("/api/admin/keys", json!({"user_id": 1, "name": "shop"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_string();
    let pair = json!({"user_id": 1, "place_id": 1});
    let calls = [
        (
            Method::PUT,
            "/api/sim/phonebook",
            Some(json!({"user_id": 1, "place_id": 1, "entries": []})),
        ),
        (Method::POST, "/api/sim/scan", Some(pair.clone())),
        (
            Method::POST,
            "/api/sim/fault",
            Some(json!({"user_id": 1, "place_id": 1, "kind": "disconnect"})),
        ),
        (Method::GET, "/api/sim/outbox?user_id=1&place_id=1", None),
        (
            Method::POST,
            "/api/sim/incoming",
            Some(json!({"user_id": 1, "place_id": 1, "from": "+966501234567", "text": "x"})),
        ),
    ];
    for (method, path, body) in calls {
        let (status, resp) = app.request_as(Some(&key), method.clone(), path, body).await;
        let message = assert_error(status, &resp, 403);
        assert!(message.contains("admin"), "{method} {path}: {message}");
    }
    // Its own user's phone book is untouched; the admin key still drives the network.
    let (status, body) = app.get("/api/sim/outbox?user_id=1&place_id=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.ready_session(1, 1).await;
}

#[tokio::test]
async fn phone_books_larger_than_the_limit_are_refused_whole() {
    let app = spawn_app_with(|c| c.sim.max_phonebook_bytes = 4096).await;
    let entries: Vec<_> = (0..100)
        .map(|i| person(&format!("9665010{i:05}"), Some("A name"), None))
        .collect();
    let big = json!({"user_id": 1, "place_id": 1, "entries": entries});
    assert!(big.to_string().len() > 4096);
    let (status, body) = app.put("/api/sim/phonebook", big.clone()).await;
    assert!(assert_error(status, &body, 413).contains("4096"), "{body}");
    // Without a declared length (chunked), the limit holds while reading.
    let (status, body) = put_chunked(&app, "/api/sim/phonebook", big.to_string().as_bytes()).await;
    assert_error(status, &body, 413);

    let small: Vec<_> = entries_of(3);
    let (status, body) = app
        .put(
            "/api/sim/phonebook",
            json!({"user_id": 1, "place_id": 1, "entries": small}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["entries"], 3);
    // Malformed bodies are still told apart from wrong ones.
    let (status, body) = app
        .send_raw(
            Method::PUT,
            "/api/sim/phonebook",
            "application/json",
            "{\"user_id\":",
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("Malformed JSON"));
    let (status, body) = app
        .send_raw(
            Method::PUT,
            "/api/sim/phonebook",
            "application/json",
            "[1, 2]",
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("JSON object"));
}

fn entries_of(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| person(&format!("96650200{i:04}"), None, None))
        .collect()
}

/// A request with `Transfer-Encoding: chunked`, written by hand: no length is declared.
async fn put_chunked(app: &TestApp, path: &str, body: &[u8]) -> (StatusCode, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading it all.
    let _ = socket.write_all(&req).await;
    let mut raw = Vec::new();
    let _ = socket.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let code: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked answer wraps the JSON in chunk sizes: take the object itself.
    let start = json.find('{').unwrap_or(0);
    let end = json.rfind('}').map_or(json.len(), |e| e + 1);
    (
        StatusCode::from_u16(code).unwrap(),
        serde_json::from_str(&json[start..end]).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Everything a back office posts as a form (`asForm()`, `$.post`): PHP brackets for the
/// entries, every value text, yes/no and numbers included.
#[tokio::test]
async fn the_sim_routes_take_form_bodies_by_the_same_rules() {
    let app = spawn_app_with_admin_key().await;
    let recent = days_ago(&app, 2);
    let old = days_ago(&app, 200);
    let book = format!(
        "user_id=1&place_id=2&me=966500000001%40s.whatsapp.net&push_name=Shop\
         &entries[0][jid]=966512345678%40s.whatsapp.net&entries[0][name]=Ali\
         &entries[0][is_business]=true&entries[0][last_message_at]={recent}\
         &entries[1][jid]=966512345679%40s.whatsapp.net&entries[1][name]=Sara\
         &entries[1][is_business]=0&entries[1][last_message_at]={old}"
    );
    let (status, body) = app
        .send_raw(Method::PUT, "/api/sim/phonebook", FORM, book)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["entries"], 2, "{body}");
    assert_eq!(body["data"]["user_id"], 1, "{body}");

    for (bad, field) in [
        ("entries[0][is_business]=maybe", "is_business"),
        ("entries[0][last_message_at]=yesterday", "last_message_at"),
    ] {
        let form = format!("user_id=1&place_id=2&entries[0][jid]=1%40s.whatsapp.net&{bad}");
        let (status, body) = app
            .send_raw(Method::PUT, "/api/sim/phonebook", FORM, form)
            .await;
        assert!(
            assert_error(status, &body, 400).contains(field),
            "{bad}: {body}"
        );
    }

    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (status, body) = app
        .send_raw(Method::POST, "/api/sim/scan", FORM, "user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.wait_status(1, 2, "ready").await;
    app.fetch_and_wait(1, 2).await;
    assert_eq!(
        app.group_numbers(1, 2, ALL_GROUP).await,
        ["+966512345678", "+966512345679"]
    );
    // The activity given as digits counts: only Ali wrote within 90 days.
    assert_eq!(
        app.group_numbers(1, 2, RECENT_GROUP).await,
        ["+966512345678"]
    );
    let all = app.group_id(1, 2, ALL_GROUP).await;
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{all}/contacts?user_id=1&place_id=2"
        ))
        .await;
    let business: Vec<(String, bool)> = body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["is_business"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(business.contains(&("Ali".into(), true)), "{body}");
    assert!(business.contains(&("Sara".into(), false)), "{body}");

    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/sim/incoming",
            FORM,
            "user_id=1&place_id=2&from=%2B966512345678&text=hi&push_name=Ali",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["from"], "+966512345678", "{body}");
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/api/sim/fault",
            FORM,
            "user_id=1&place_id=2&kind=disconnect",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["kind"], "disconnect", "{body}");
}
