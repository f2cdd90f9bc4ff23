//! URLs a tenant supplies (webhooks, images) reach only public addresses: every spelling of a
//! private or local address is refused at once, before any connection, unless the operator
//! allowed its network; the webhook dispatcher keeps tenants apart and signs with a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

/// A loopback port that counts the connections it accepts, so a test can show that a refused
/// URL was never even tried.
struct Trap {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

async fn trap() -> Trap {
    trap_on("127.0.0.1").await
}

async fn trap_on(ip: &str) -> Trap {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    Trap { port, accepted }
}

/// Every way the review found to write "this machine" or "the private network".
fn local_spellings(port: u16) -> Vec<String> {
    [
        "http://127.0.0.1:{p}/api/admin/keys",
        "http://localhost:{p}/hook",
        "http://LocalHost.:{p}/hook",
        "http://[::1]:{p}/hook",
        "http://0x7f000001:{p}/hook",
        "http://2130706433:{p}/hook",
        "http://127.1:{p}/hook",
        "http://0177.0.0.1:{p}/hook",
        "http://[::ffff:127.0.0.1]:{p}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://192.168.0.10/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0:{p}/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
    ]
    .iter()
    .map(|u| u.replace("{p}", &port.to_string()))
    .collect()
}

#[tokio::test]
async fn webhook_urls_on_private_or_local_addresses_are_refused_without_a_connection() {
    let app = spawn_app().await;
    let trap = trap().await;
    for url in local_spellings(trap.port) {
        let (status, body) = app
            .put(
                "/api/whatsapp/webhook",
                json!({"user_id": 1, "url": url, "secret": "a-long-enough-secret-1"}),
            )
            .await;
        let message = assert_error(status, &body, 400);
        assert!(
            message.starts_with("url ") && message.contains("only public addresses"),
            "{url}: {message}"
        );
    }
    // Credentials in the URL would be sent on as Basic auth: refused, even to a public host.
    for url in [
        "http://user:pass@198.51.99.1/hook".to_string(),
        format!("http://user:pass@127.0.0.1:{}/hook", trap.port),
    ] {
        let (status, body) = app
            .put("/api/whatsapp/webhook", json!({"user_id": 1, "url": url}))
            .await;
        let message = assert_error(status, &body, 400);
        assert!(message.contains("user name or password"), "{message}");
    }
    let (status, body) = app.get("/api/whatsapp/webhook?user_id=1").await;
    assert_error(status, &body, 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        trap.accepted.load(Ordering::SeqCst),
        0,
        "a refused URL was tried"
    );

    // A public address is accepted as before (no event, so nothing is sent to it).
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": "https://198.51.99.1/hook"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn image_urls_on_private_or_local_addresses_are_refused_on_every_route() {
    let app = spawn_app_with(crate::messaging::fast_public_only).await;
    let (user, place) = (3, 4);
    app.ready_session(user, place).await;
    let trap = trap().await;
    for url in local_spellings(trap.port) {
        let send = json!({"user_id": user, "place_id": place, "phone_number": "+966501234567",
                          "text": "hi", "image_url": url});
        for route in [
            "/api/whatsapp/send-message",
            "/api/whatsapp/validate-message",
        ] {
            let (status, body) = app.post(route, send.clone()).await;
            let message = assert_error(status, &body, 400);
            assert!(
                message.starts_with("image_url ") && message.contains("only public addresses"),
                "{route} {url}: {message}"
            );
        }
        let (status, body) = app
            .post("/api/whatsapp/test-image-url", json!({"image_url": url}))
            .await;
        let message = assert_error(status, &body, 400);
        assert!(
            message.contains("only public addresses"),
            "{url}: {message}"
        );
    }
    let (status, body) = app
        .post(
            "/api/whatsapp/test-image-url",
            json!({"image_url": format!("http://u:p@127.0.0.1:{}/a.png", trap.port)}),
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("user name or password"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        trap.accepted.load(Ordering::SeqCst),
        0,
        "a refused URL was tried"
    );
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/messages?user_id={user}&place_id={place}"
        ))
        .await;
    assert_eq!(body["data"]["pagination"]["total"], 0, "nothing was queued");
}

#[tokio::test]
async fn a_redirect_to_a_local_address_is_refused() {
    // The operator allowed one loopback address (the image host); the redirect points at
    // another, which stays refused.
    let app = spawn_app_with(|c| {
        crate::messaging::fast_public_only(c);
        c.outbound_allow = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let trap = trap_on("127.0.0.2").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = format!("http://127.0.0.2:{}/secret.png", trap.port);
    let router = axum::Router::new().route(
        "/go.png",
        axum::routing::get(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(axum::http::header::LOCATION, target)]) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let (status, body) = app
        .post(
            "/api/whatsapp/test-image-url",
            json!({"image_url": format!("http://{addr}/go.png")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], false, "{body}");
    let error = body["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("redirects") && error.contains("loopback"),
        "{error}"
    );
    assert_eq!(trap.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_allow_list_opens_a_private_network_for_webhooks_and_images() {
    let app = spawn_app_with(|c| {
        crate::messaging::fast_public_only(c);
        c.outbound_allow = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let img = crate::message_checks::image_server().await;
    let (status, body) = app
        .post(
            "/api/whatsapp/test-image-url",
            json!({"image_url": format!("{img}/img.png")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], true, "{body}");
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": "http://localhost:9/hook"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Outside the allowed network, still refused.
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": "http://10.1.2.3/hook"}),
        )
        .await;
    assert!(assert_error(status, &body, 400).contains("private network"));
}

#[tokio::test]
async fn a_stored_webhook_url_no_longer_allowed_is_not_tried_and_says_why() {
    // Set while the operator allowed loopback; the server then restarts without it (as an
    // upgrade from a version without the check would).
    let mut app = spawn_app_with(|c| {
        crate::messaging::fast(c);
        c.webhooks.backoff_initial = Duration::from_millis(50);
    })
    .await;
    let trap = trap().await;
    let url = format!("http://127.0.0.1:{}/hook", trap.port);
    let (status, body) = app
        .put("/api/whatsapp/webhook", json!({"user_id": 1, "url": url}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.config.outbound_allow.clear();
    let app = app.restart_server().await;
    app.ready_session(1, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let (_, body) = app
            .get("/api/whatsapp/webhook/deliveries?user_id=1&status=failed")
            .await;
        if let Some(d) = body["data"]["deliveries"].as_array().and_then(|d| d.last()) {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "no failed delivery: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.contains("loopback"), "{error}");
    assert!(!error.contains("connect"), "no port-scan oracle: {error}");
    assert_eq!(
        delivery["attempts"], 1,
        "a refused URL is not retried: {delivery}"
    );
    assert_eq!(trap.accepted.load(Ordering::SeqCst), 0);
}

/// A receiver that records when each event arrived, and never answers when `hang` is set.
async fn timed_receiver(hang: bool) -> (String, Arc<std::sync::Mutex<Vec<(Instant, Value)>>>) {
    let got: Arc<std::sync::Mutex<Vec<(Instant, Value)>>> = Arc::default();
    let seen = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((Instant::now(), serde_json::from_str(&body).unwrap()));
                if hang {
                    std::future::pending::<()>().await;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, got)
}

#[tokio::test]
async fn a_hanging_receiver_delays_only_its_own_tenant() {
    let app = spawn_app_with(|c| {
        crate::messaging::fast(c);
        // Far longer than the test waits for the other tenant.
        c.webhooks.timeout = Duration::from_secs(60);
    })
    .await;
    let (slow_url, slow) = timed_receiver(true).await;
    let (quick_url, quick) = timed_receiver(false).await;
    for (user, url) in [(1, &slow_url), (2, &quick_url)] {
        let (status, body) = app
            .put(
                "/api/whatsapp/webhook",
                json!({"user_id": user, "url": url, "events": ["message.received"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    app.ready_session(1, 1).await;
    app.ready_session(2, 1).await;
    let incoming = |user: i64, i: usize| json!({"user_id": user, "place_id": 1, "from": "+966551234567", "text": format!("m{i}")});
    // The slow tenant's receiver takes its first event and hangs on it.
    let (status, body) = app.post("/api/sim/incoming", incoming(1, 0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the slow receiver got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile the other tenant's events arrive one after the other, each soon after it
    // happened: nothing of theirs waits for the hanging receiver.
    let mut latencies = Vec::new();
    for i in 0..5 {
        let (status, body) = app.post("/api/sim/incoming", incoming(1, i + 1)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sent = Instant::now();
        let (status, body) = app.post("/api/sim/incoming", incoming(2, i)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let arrived = loop {
            if let Some((at, _)) = quick.lock().unwrap().get(i) {
                break *at;
            }
            assert!(
                Instant::now() < deadline,
                "event {i} never reached the quick receiver"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        latencies.push(arrived.saturating_duration_since(sent));
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_secs(10),
        "the quick tenant waited behind the hanging one: {latencies:?}"
    );
    let texts: Vec<String> = quick
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e["data"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"], "in order");
    assert_eq!(
        slow.lock().unwrap().len(),
        1,
        "the slow tenant's next waits its turn"
    );
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn deliveries_carry_a_timestamped_signature_that_cannot_be_replayed_later() {
    let app = spawn_app_with(crate::messaging::fast).await;
    let (url, got) = crate::webhooks::receiver().await;
    let secret = "whsec-test_0123456789!~";
    let (status, body) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": 1, "url": url, "secret": secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["signature_v2_header"],
        "X-Webhook-Signature-V2"
    );
    assert_eq!(body["data"]["timestamp_header"], "X-Webhook-Timestamp");
    app.ready_session(1, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.all().is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = got.all()[0].clone();
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let ts = header("x-webhook-timestamp");
    let v2 = header("x-webhook-signature-v2");
    let (t, v1) = v2.split_once(',').unwrap();
    assert_eq!(t, format!("t={ts}"));
    assert_eq!(
        v1.strip_prefix("v1=").unwrap(),
        hmac_hex(secret, format!("{ts}.{body}").as_bytes()),
        "v1 signs the time and the raw body"
    );
    // The signed time is the server's now: what a receiver compares with its tolerance.
    use whatsapp_manager::clock::Clock;
    let now = app.clock.now().timestamp();
    let ts: i64 = ts.parse().unwrap();
    assert!((now - ts).abs() <= 5, "{ts} vs {now}");
    // The old header stays for receivers that check it.
    assert_eq!(
        header("x-webhook-signature"),
        format!("sha256={}", hmac_hex(secret, body.as_bytes()))
    );
    // The same body under another time does not verify: a replay needs a fresh signature.
    assert_ne!(
        v1.strip_prefix("v1=").unwrap(),
        hmac_hex(secret, format!("{}.{body}", ts + 600).as_bytes())
    );
}

#[tokio::test]
async fn webhook_secrets_are_printable_ascii_without_spaces() {
    let app = spawn_app().await;
    let url = "https://198.51.99.1/hook";
    for bad in [
        "x".repeat(15),
        "x".repeat(201),
        "sixteen chars ok".to_string(),
        "tab\there-0123456789".to_string(),
        "nul\u{0}here-0123456789".to_string(),
        "café-secret-0123456789".to_string(),
        "ключ-0123456789-abcdef".to_string(),
    ] {
        let (status, body) = app
            .put(
                "/api/whatsapp/webhook",
                json!({"user_id": 1, "url": url, "secret": bad}),
            )
            .await;
        assert!(
            assert_error(status, &body, 400).contains("printable ASCII"),
            "{bad:?}: {body}"
        );
    }
    for good in [
        "x".repeat(16),
        "~".repeat(200),
        "!#$%&'()*+,-./:;<=>?@[]^_`{|}~0".into(),
    ] {
        let (status, body) = app
            .put(
                "/api/whatsapp/webhook",
                json!({"user_id": 1, "url": url, "secret": good}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{good:?}: {body}");
        assert_eq!(body["data"]["secret"], Value::String(good));
    }
}
