//! Contention never reaches a caller: many writers of every kind at once, beside a
//! 100,000-contact fetch and webhook deliveries, get no 5xx, and nothing they were told was
//! done is missing afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The pair whose 100,000 contacts are fetched while everything else writes.
const BIG: (i64, i64) = (1, 1);
/// The pair the writers work on; same user, so its events go to the same webhook.
const SMALL: (i64, i64) = (1, 2);
const BIG_BOOK: usize = 100_000;
const SMALL_BOOK: usize = 400;
/// Tasks per kind of writer, each one request after the other.
const WRITERS_PER_KIND: usize = 2;
/// The writers go on at least this long, and until the big fetch has ended.
const LEAST_LOAD: Duration = Duration::from_secs(6);
/// Generous for a loaded 2-core CI machine running a debug build.
const SETTLE: Duration = Duration::from_secs(120);
pub(crate) const SECRET: &str = "contention-webhook-secret";

/// How many answers of each status every kind of request got.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<BTreeMap<&'static str, BTreeMap<u16, usize>>>>);

/// How long each request took, by kind.
#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>>);

impl Latencies {
    /// p50 / p99 / max per kind of request, for the log (not asserted: speed is measured by
    /// benchmarks, not tests).
    fn summary(&self) -> String {
        let mut all = self.0.lock().unwrap();
        let mut out = String::new();
        for (kind, took) in all.iter_mut() {
            took.sort();
            let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
            out.push_str(&format!(
                "\n  {kind}: n={} p50={:?} p99={:?} max={:?}",
                took.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            ));
        }
        out
    }
}

impl Answers {
    fn note(&self, kind: &'static str, status: u16) {
        let mut all = self.0.lock().unwrap();
        *all.entry(kind).or_default().entry(status).or_default() += 1;
    }

    fn summary(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }

    /// (5xx answers, requests that got no answer at all).
    fn failures(&self) -> (usize, usize) {
        let all = self.0.lock().unwrap();
        let count = |pred: &dyn Fn(u16) -> bool| {
            all.values()
                .flat_map(|by| by.iter())
                .filter(|(s, _)| pred(**s))
                .map(|(_, n)| n)
                .sum()
        };
        (count(&|s| s >= 500), count(&|s| s == 0))
    }
}

/// What the writers were told was done, to look for afterwards.
#[derive(Default)]
struct Done {
    /// Group id → its members after the last change that answered success.
    groups: HashMap<i64, BTreeSet<i64>>,
    /// Contact id → the tags of its last successful patch.
    tags: HashMap<i64, Vec<String>>,
    messages: BTreeSet<i64>,
    keys: BTreeSet<i64>,
    incoming: usize,
}

/// A request of a writer, noted with its answer and time.
async fn timed(
    l: &Load,
    kind: &'static str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let started = Instant::now();
    let (s, v) = call(&l.app, method, path, body).await;
    l.answers.note(kind, s);
    l.latencies
        .0
        .lock()
        .unwrap()
        .entry(kind)
        .or_default()
        .push(started.elapsed());
    (s, v)
}

/// One request; status 0 when no answer came (a dropped connection, a client timeout).
pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(key) = &app.api_key {
        req = req.header("x-api-key", key);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let value = res.json().await.unwrap_or(Value::Null);
            (status, value)
        }
        Err(_) => (0, Value::Null),
    }
}

/// A receiver that records the event id of every body and answers 200.
pub(crate) async fn receiver() -> (String, Arc<Mutex<BTreeSet<i64>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                if let Some(id) = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_i64())
                {
                    seen.lock().unwrap().insert(id);
                }
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

pub(crate) fn book(n: usize, base: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"jid": format!("9665{:08}@s.whatsapp.net", base + i as i64),
                       "name": format!("Person {i}"), "is_business": false,
                       "last_message_at": now - (i as i64 % 200) * 86_400})
            })
            .collect(),
    )
}

/// Every item of a paginated list under `data[field]`, all pages.
pub(crate) async fn all_pages(app: &TestApp, path: &str, field: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    for page in 1.. {
        let (s, v) = call(
            app,
            Method::GET,
            &format!("{path}{sep}limit=1000&page={page}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{path}: {v}");
        let items = v["data"][field].as_array().expect(field).clone();
        if items.is_empty() {
            break;
        }
        out.extend(items);
    }
    out
}

pub(crate) async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The contacts of a pair, by id.
async fn contact_ids(app: &TestApp, (user, place): (i64, i64)) -> Vec<i64> {
    all_pages(
        app,
        &format!("/api/whatsapp/contacts/search?user_id={user}&place_id={place}"),
        "contacts",
    )
    .await
    .iter()
    .map(|c| c["id"].as_i64().unwrap())
    .collect()
}

/// A deterministic pick of `n` of `ids`, different for each `seed`.
fn pick(ids: &[i64], seed: usize, n: usize) -> BTreeSet<i64> {
    (0..n)
        .map(|k| ids[(seed * 7919 + k * 104_729) % ids.len()])
        .collect()
}

/// What every writer shares.
#[derive(Clone)]
struct Load {
    app: Arc<TestApp>,
    answers: Answers,
    latencies: Latencies,
    done: Arc<Mutex<Done>>,
    stop: Arc<AtomicBool>,
    /// The contacts of `SMALL`.
    ids: Arc<Vec<i64>>,
}

impl Load {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// Manual groups of `SMALL`: created, then their members replaced.
async fn groups_writer(l: Load, w: usize) {
    let (user, place) = SMALL;
    let mut i = 0;
    while l.running() {
        i += 1;
        let first = pick(&l.ids, w * 100_000 + i, 25);
        let (s, v) = timed(
            &l,
            "create group",
            Method::POST,
            "/api/whatsapp/groups",
            Some(json!({"user_id": user, "place_id": place,
                        "name": format!("group {w}-{i}"), "contact_ids": first})),
        )
        .await;
        if s != 201 {
            continue;
        }
        let id = v["data"]["id"].as_i64().unwrap();
        l.done.lock().unwrap().groups.insert(id, first);
        let second = pick(&l.ids, w * 100_000 + i + 50_000, 30);
        let (s, _) = timed(
            &l,
            "replace members",
            Method::PUT,
            &format!("/api/whatsapp/groups/{id}/contacts"),
            Some(json!({"user_id": user, "place_id": place, "contact_ids": second})),
        )
        .await;
        if s == 200 {
            l.done.lock().unwrap().groups.insert(id, second);
        }
    }
}

/// Tag patches, each writer on contacts of its own so the last patch is known.
async fn patch_writer(l: Load, w: usize) {
    let (user, place) = SMALL;
    let mine: Vec<i64> = l
        .ids
        .iter()
        .copied()
        .skip(w)
        .step_by(WRITERS_PER_KIND)
        .collect();
    let mut i = 0;
    while l.running() {
        let id = mine[i % mine.len()];
        let tags = vec![format!("tag-{w}-{i}"), "busy".to_string()];
        let (s, _) = timed(
            &l,
            "patch contact",
            Method::PATCH,
            &format!("/api/whatsapp/contacts/{id}"),
            Some(json!({"user_id": user, "place_id": place, "tags": tags})),
        )
        .await;
        if s == 200 {
            l.done.lock().unwrap().tags.insert(id, tags);
        }
        i += 1;
    }
}

async fn send_writer(l: Load, w: usize) {
    let (user, place) = SMALL;
    let mut i = 0;
    while l.running() {
        let (s, v) = timed(
            &l,
            "send message",
            Method::POST,
            "/api/whatsapp/send-message",
            Some(json!({"user_id": user, "place_id": place,
                        "contact_id": l.ids[(w * 1_000 + i) % l.ids.len()],
                        "text": format!("message {w}-{i}")})),
        )
        .await;
        if s == 202 {
            let id = v["data"]["id"].as_i64().unwrap();
            l.done.lock().unwrap().messages.insert(id);
        }
        i += 1;
    }
}

async fn key_writer(l: Load, w: usize) {
    let mut i = 0;
    while l.running() {
        let (s, v) = timed(
            &l,
            "create key",
            Method::POST,
            "/api/admin/keys",
            Some(json!({"user_id": 100 + w, "name": format!("key {w}-{i}")})),
        )
        .await;
        if s == 201 {
            let id = v["data"]["id"].as_i64().unwrap();
            l.done.lock().unwrap().keys.insert(id);
        }
        i += 1;
    }
}

/// Reads beside the writes: the groups of `SMALL` with their counts, and the big fetch's
/// progress. They must not starve while writers queue.
async fn reader(l: Load) {
    let (user, place) = SMALL;
    while l.running() {
        timed(
            &l,
            "list groups",
            Method::GET,
            &format!("/api/whatsapp/groups?user_id={user}&place_id={place}"),
            None,
        )
        .await;
        timed(
            &l,
            "fetch progress",
            Method::GET,
            &format!(
                "/api/whatsapp/contacts/progress?user_id={}&place_id={}",
                BIG.0, BIG.1
            ),
            None,
        )
        .await;
    }
}

/// Messages people write to `SMALL`: each one an event, recorded and delivered.
async fn incoming_writer(l: Load, w: usize) {
    let (user, place) = SMALL;
    let mut i = 0;
    while l.running() {
        let (s, _) = timed(
            &l,
            "incoming message",
            Method::POST,
            "/api/sim/incoming",
            Some(json!({"user_id": user, "place_id": place,
                        "from": format!("+9665{:08}", 30_000_000 + (w * 1_000 + i) % 5_000),
                        "text": format!("hello {w}-{i}")})),
        )
        .await;
        if s == 200 {
            l.done.lock().unwrap().incoming += 1;
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_every_kind_get_no_5xx_and_lose_nothing() {
    let mut app = spawn_app_with(|c| {
        c.admin_key = Some(whatsapp_manager::auth::AdminKeyHash::of(ADMIN_KEY));
        crate::messaging::fast(c);
        // The writers queue as many sends as the machine's speed allows, on one number; past
        // the daily cap the rest would wait a day.
        c.pacing.daily_cap = 1_000_000;
        c.webhooks.backoff_initial = Duration::from_millis(100);
        c.webhooks.backoff_max = Duration::from_millis(500);
        c.webhooks.max_attempts = 1_000;
    })
    .await;
    app.api_key = Some(ADMIN_KEY.to_string());
    let app = Arc::new(app);

    let (url, received) = receiver().await;
    let (s, v) = app
        .put(
            "/api/whatsapp/webhook",
            json!({"user_id": BIG.0, "url": url, "secret": SECRET}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let me = "966500000001@s.whatsapp.net";
    app.set_phonebook(SMALL.0, SMALL.1, me, book(SMALL_BOOK, 50_000_000))
        .await;
    app.ready_session(SMALL.0, SMALL.1).await;
    let p = app.fetch_and_wait(SMALL.0, SMALL.1).await;
    assert_eq!(p["total_contacts"], SMALL_BOOK, "{p}");

    app.set_phonebook(BIG.0, BIG.1, me, book(BIG_BOOK, 40_000_000))
        .await;
    app.ready_session(BIG.0, BIG.1).await;
    let (s, v) = app.start_fetch(BIG.0, BIG.1).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let answers = Answers::default();
    let load = Load {
        app: app.clone(),
        answers: answers.clone(),
        latencies: Latencies::default(),
        done: Arc::new(Mutex::new(Done::default())),
        stop: Arc::new(AtomicBool::new(false)),
        ids: Arc::new(contact_ids(&app, SMALL).await),
    };
    assert_eq!(load.ids.len(), SMALL_BOOK);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS_PER_KIND {
        writers.spawn(groups_writer(load.clone(), w));
        writers.spawn(patch_writer(load.clone(), w));
        writers.spawn(send_writer(load.clone(), w));
        writers.spawn(key_writer(load.clone(), w));
        writers.spawn(incoming_writer(load.clone(), w));
    }
    writers.spawn(reader(load.clone()));

    let started = Instant::now();
    let mut fetch_took = None;
    let fetched = poll("the big fetch ended", async || {
        let (s, p) = call(
            &app,
            Method::GET,
            &format!(
                "/api/whatsapp/contacts/progress?user_id={}&place_id={}",
                BIG.0, BIG.1
            ),
            None,
        )
        .await;
        let ended = s == 200 && p["data"]["is_fetching"] == false;
        if ended && fetch_took.is_none() {
            fetch_took = Some(started.elapsed());
        }
        (ended && started.elapsed() >= LEAST_LOAD).then(|| p["data"].clone())
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let took = started.elapsed();
    eprintln!(
        "contention: {took:?} of load, the fetch took {fetch_took:?}; answers {}{}",
        answers.summary(),
        load.latencies.summary()
    );
    let (server_errors, unanswered) = answers.failures();
    assert_eq!(
        (server_errors, unanswered),
        (0, 0),
        "5xx answers and requests without an answer: {}",
        answers.summary()
    );
    assert_eq!(fetched["contacts_fetch_completed"], true, "{fetched}");
    assert_eq!(fetched["contacts_fetch_error"], Value::Null, "{fetched}");
    assert_eq!(fetched["total_contacts"], BIG_BOOK, "{fetched}");

    let done = std::mem::take(&mut *load.done.lock().unwrap());
    let (user, place) = SMALL;
    for (kind, n) in [
        ("groups", done.groups.len()),
        ("tag patches", done.tags.len()),
        ("messages", done.messages.len()),
        ("keys", done.keys.len()),
        ("incoming messages", done.incoming),
    ] {
        assert!(n > 0, "no {kind} got through: {}", answers.summary());
    }

    // Every group that answered 201 exists, with the members of its last change.
    for (id, members) in &done.groups {
        let got: BTreeSet<i64> = all_pages(
            &app,
            &format!("/api/whatsapp/groups/{id}/contacts?user_id={user}&place_id={place}"),
            "contacts",
        )
        .await
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
        assert_eq!(&got, members, "group {id}");
    }
    for (id, tags) in &done.tags {
        let (s, v) = call(
            &app,
            Method::GET,
            &format!("/api/whatsapp/contacts/{id}?user_id={user}&place_id={place}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["tags"], json!(tags), "contact {id}");
    }
    let listed: BTreeSet<i64> = all_pages(&app, "/api/admin/keys", "keys")
        .await
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert!(done.keys.is_subset(&listed), "a created key is not listed");

    // Every send is in the log, and goes out (its `message.sent` event is part of the count
    // below). The incoming messages are in the log too, as `in`.
    let log = format!("/api/whatsapp/messages?user_id={user}&place_id={place}&direction=out");
    poll("every message sent", async || {
        let all = all_pages(&app, &log, "messages").await;
        let sent: BTreeSet<i64> = all
            .iter()
            .filter(|m| m["status"] == "sent")
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        let logged: BTreeSet<i64> = all.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert!(
            done.messages.is_subset(&logged),
            "a queued message is not logged"
        );
        assert!(
            all.iter().all(|m| m["status"] != "failed"),
            "a message failed"
        );
        (sent == logged).then_some(())
    })
    .await;

    // Every event got its delivery, and the receiver has them all.
    let deliveries = format!("/api/whatsapp/webhook/deliveries?user_id={}", BIG.0);
    let all = poll("every delivery made", async || {
        let all = all_pages(&app, &deliveries, "deliveries").await;
        all.iter().all(|d| d["status"] != "pending").then_some(all)
    })
    .await;
    let failed: Vec<&Value> = all.iter().filter(|d| d["status"] != "delivered").collect();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    let of_kind = |kind: &str| all.iter().filter(|d| d["event"] == kind).count();
    assert_eq!(of_kind("message.received"), done.incoming);
    assert_eq!(of_kind("message.sent"), done.messages.len());
    assert_eq!(of_kind("contacts.fetch.completed"), 2);
    let delivered: BTreeSet<i64> = all
        .iter()
        .map(|d| d["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(delivered.len(), all.len(), "one delivery per event");
    let got = received.lock().unwrap().clone();
    assert_eq!(got, delivered, "the receiver got every event");
}
