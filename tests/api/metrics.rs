//! `GET /metrics`: the Prometheus text, parsed by a real parser, after real activity (a
//! linked number, a fetch, a send, a webhook delivery); admin only; no ids in labels.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::messaging::{fast, pair_with_contacts, settled};
use crate::webhooks::receiver;

/// Ids no label may carry: a user and a place unlike any status code or bucket bound.
const USER: i64 = 48_213;
const PLACE: i64 = 90_317;
const TO: &str = "+966551234567";

/// The scrape as text, with the admin key sent the way Prometheus sends it.
async fn scrape_text(app: &TestApp) -> String {
    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.unwrap()
}

/// The reference parser of the exposition format: Python's `prometheus_client` (pinned in
/// .ci/requirements.txt; `scripts/test.sh` installs it and names its Python in
/// `WAM_TEST_PYTHON`). It refuses what Prometheus would refuse, where a lenient parser
/// would skip the line.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                            for s in f.samples]})
print(json.dumps(out))
"#;

#[derive(serde::Deserialize, Debug)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    help: String,
    samples: Vec<Line>,
}

#[derive(serde::Deserialize, Debug)]
struct Line {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

struct Scrape {
    families: Vec<Family>,
}

fn python() -> String {
    let python = std::env::var("WAM_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let has = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has,
        "{python} has no prometheus_client: run the tests through scripts/test.sh (which \
         installs .ci/requirements.txt in a virtual environment and sets WAM_TEST_PYTHON), or \
         point WAM_TEST_PYTHON at a Python with `pip install -r .ci/requirements.txt`"
    );
    python
}

fn parse(text: &str) -> Scrape {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Scrape {
        families: serde_json::from_slice(&out.stdout).unwrap(),
    }
}

impl Scrape {
    fn lines(&self) -> impl Iterator<Item = &Line> {
        self.families.iter().flat_map(|f| &f.samples)
    }

    /// The family of a metric: the parser names a counter's family without `_total`.
    fn family(&self, name: &str) -> &Family {
        let bare = name.strip_suffix("_total").unwrap_or(name);
        self.families
            .iter()
            .find(|f| f.name == name || f.name == bare)
            .unwrap_or_else(|| panic!("no family {name}"))
    }
}

/// The sum of the samples `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.lines()
        .filter(|x| x.name == name)
        .filter(|x| {
            labels
                .iter()
                .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|x| x.value)
        .sum()
}

/// Polls the scrape until `ok` holds (the work's end is recorded a moment after a caller
/// can see it).
async fn scrape_until(app: &TestApp, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = String::new();
    for _ in 0..200 {
        last = scrape_text(app).await;
        let s = parse(&last);
        if ok(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the metrics never showed {what}:\n{last}");
}

#[tokio::test]
async fn metrics_count_real_activity_in_prometheus_text_without_any_id_in_labels() {
    let app = spawn_app_with_admin_key_and(fast).await;
    let before = parse(&scrape_text(&app).await);
    assert_eq!(
        value(&before, "wam_messages_total", &[("outcome", "sent")]),
        0.0
    );

    let (url, got) = receiver().await;
    let (s, v) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": USER, "url": url, "secret": "metrics-test-secret-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    pair_with_contacts(&app, USER, PLACE, 3).await;
    let (s, sent) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": USER, "place_id": PLACE, "phone_number": TO, "text": "hi"}),
        )
        .await;
    assert!(s.is_success(), "{sent}");
    let m = settled(&app, USER, PLACE, sent["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(m["status"], "sent", "{m}");
    let groups = app.groups(USER, PLACE).await;
    let group = groups[0]["id"].as_i64().unwrap();
    let (s, v) = app
        .get(&format!(
            "/api/whatsapp/groups/{group}/contacts?user_id={USER}&place_id={PLACE}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // An unknown route: counted under a fixed label, never its path.
    let (s, _) = app.get(&format!("/api/nope/{USER}/{PLACE}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let s = scrape_until(&app, "a delivered webhook and the sent message", |s| {
        value(
            s,
            "wam_webhook_deliveries_total",
            &[("outcome", "delivered")],
        ) >= 1.0
            && value(s, "wam_messages_total", &[("outcome", "sent")]) >= 1.0
    })
    .await;
    assert!(!got.all().is_empty());

    for (name, kind) in [
        ("wam_http_requests_total", "counter"),
        ("wam_http_request_duration_seconds", "histogram"),
        ("wam_contact_fetches_total", "counter"),
        ("wam_contact_fetch_duration_seconds", "histogram"),
        ("wam_contacts_imported_total", "counter"),
        ("wam_messages_total", "counter"),
        ("wam_outbox_pending", "gauge"),
        ("wam_webhook_deliveries_total", "counter"),
        ("wam_webhook_queue", "gauge"),
        ("wam_engine_connections_total", "counter"),
        ("wam_sessions", "gauge"),
        ("wam_live_clients", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("wam_build_info", "gauge"),
    ] {
        let f = s.family(name);
        assert_eq!(f.kind, kind, "{name}");
        assert!(!f.help.is_empty(), "{name} has no HELP");
    }

    // What the activity moved.
    let init = [
        ("method", "POST"),
        ("route", "/api/whatsapp/init"),
        ("status", "200"),
    ];
    assert!(value(&s, "wam_http_requests_total", &init) >= 1.0);
    assert!(
        value(
            &s,
            "wam_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert_eq!(
        value(&s, "wam_contact_fetches_total", &[("outcome", "completed")]),
        1.0
    );
    assert_eq!(value(&s, "wam_contacts_imported_total", &[]), 3.0);
    assert_eq!(
        value(
            &s,
            "wam_engine_connections_total",
            &[("event", "connected")]
        ),
        1.0
    );
    assert_eq!(value(&s, "wam_sessions", &[("status", "ready")]), 1.0);
    assert_eq!(value(&s, "wam_live_clients", &[]), 1.0);
    assert_eq!(value(&s, "wam_outbox_pending", &[]), 0.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert_eq!(value(&s, "wam_build_info", &[("engine", "sim")]), 1.0);
    // One fetch, in the histogram's last bucket and its count.
    let fetch = "wam_contact_fetch_duration_seconds";
    assert_eq!(
        value(&s, &format!("{fetch}_bucket"), &[("le", "+Inf")]),
        1.0
    );
    assert_eq!(value(&s, &format!("{fetch}_count"), &[]), 1.0);
    let send = [("route", "/api/whatsapp/send-message")];
    assert_eq!(
        value(&s, "wam_http_request_duration_seconds_count", &send),
        1.0
    );
    assert!(value(&s, "wam_http_request_duration_seconds_sum", &send) > 0.0);
    // Route templates, not paths.
    let contacts = [
        ("route", "/api/whatsapp/groups/{group_id}/contacts"),
        ("status", "200"),
    ];
    assert_eq!(value(&s, "wam_http_requests_total", &contacts), 1.0);

    // No user, place, session or phone number in any label.
    let session_id = app.status(USER, PLACE).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forbidden = [
        USER.to_string(),
        PLACE.to_string(),
        session_id,
        "966551234567".to_owned(),
        "966500000009".to_owned(),
    ];
    for x in s.lines() {
        for (k, v) in &x.labels {
            for f in &forbidden {
                assert!(
                    !v.contains(f.as_str()),
                    "{}{{{k}={v:?}}} carries {f}",
                    x.name
                );
            }
        }
    }
}

#[tokio::test]
async fn metrics_are_for_the_admin_key_only() {
    let app = spawn_app_with_admin_key().await;
    let (s, v) = app.post("/api/admin/keys", json!({"user_id": 3})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tenant = v["data"]["key"].as_str().unwrap().to_owned();

    let (s, body) = app
        .request_as(Some(&tenant), reqwest::Method::GET, "/metrics", None)
        .await;
    assert_error(s, &body, 403);
    let (s, body) = app
        .request_as(None, reqwest::Method::GET, "/metrics", None)
        .await;
    assert_error(s, &body, 401);
    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The admin key in either header.
    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
