//! What the cluster tests share: the executable, a lock that runs the heavy tests one at a
//! time, and typed reads of the API (status, nodes, messages, connections).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::cluster::{NodeOptions, Nodes};

pub const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-manager");
/// The `--lease-seconds` of every node here.
pub const LEASE_SECONDS: u64 = 5;
/// The user every session of a test belongs to (one tenant: one event stream sees them all).
pub const USER: i64 = 1;

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a test that runs a cluster.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// `n` nodes on a new database: the sim scans each QR code 0.2 s after it shows, phone books
/// are small (a fetch is quick) and sends are not paced.
pub async fn cluster(n: usize) -> Nodes {
    let extra = [
        "--sim-auto-scan",
        "0.2",
        "--sim-contacts",
        "20",
        "--message-interval",
        "0.05",
        "--message-jitter",
        "0",
    ];
    Nodes::start(
        BIN,
        n,
        NodeOptions {
            lease_seconds: LEASE_SECONDS,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        },
    )
    .await
}

/// A small generator of "random" node choices, seeded from the clock and printed, so a
/// failing run can be told apart from the next.
pub struct Dice(u64);

impl Dice {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("node choices seeded with {seed}");
        Self(seed)
    }

    /// 0..n
    pub fn below(&mut self, n: usize) -> usize {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Polls `probe` every 100 ms until it answers `Ok`, `within` at most; panics with what it
/// saw last.
pub async fn until<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() > deadline => panic!("never {what}: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn init(nodes: &Nodes, via: usize, place: i64) {
    let (s, v) = nodes
        .post(
            via,
            "/api/whatsapp/init",
            json!({"user_id": USER, "place_id": place}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "init of {place} through {}: {v}",
        nodes.id(via)
    );
}

/// The pair's status through node `via`; `Null` when the node cannot be reached or answers
/// something else than 200.
pub async fn status(nodes: &Nodes, via: usize, place: i64) -> Value {
    let path = format!("/api/whatsapp/status?user_id={USER}&place_id={place}");
    match nodes.try_call(via, reqwest::Method::GET, &path, None).await {
        Ok((StatusCode::OK, v)) => v["data"].clone(),
        Ok((s, v)) => json!({"http": s.as_u16(), "body": v}),
        Err(e) => json!({"unreachable": e.to_string()}),
    }
}

/// Every pair's status at once, each through the node `via` picks for it.
pub async fn statuses(
    nodes: &Nodes,
    places: &[i64],
    mut via: impl FnMut() -> usize,
) -> HashMap<i64, Value> {
    let asks = places.iter().map(|&p| {
        let node = via();
        async move { (p, status(nodes, node, p).await) }
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

pub fn is_ready(st: &Value) -> bool {
    st["status"] == "ready"
}

/// `GET /api/admin/nodes` through node `via`: `node_id` → the node's entry.
pub async fn node_list(nodes: &Nodes, via: usize) -> HashMap<String, Value> {
    let (s, v) = nodes.get(via, "/api/admin/nodes").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no data.nodes: {v}"))
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap_or_default().to_string(),
                n.clone(),
            )
        })
        .collect()
}

/// The `sessions` count `GET /api/admin/nodes` gives for a node (0 when it is not listed).
pub fn sessions_of(list: &HashMap<String, Value>, node_id: &str) -> i64 {
    list.get(node_id)
        .and_then(|n| n["sessions"].as_i64())
        .unwrap_or(0)
}

/// Every pair's rows of a list route (`data.<field>`), through node `via`.
pub async fn list_of(nodes: &Nodes, via: usize, path: &str, field: &str) -> Vec<Value> {
    let (s, v) = nodes.get(via, path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v["data"][field]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no data.{field}: {v}"))
        .clone()
}

/// The pair's simulated connections (`GET /api/sim/connections`), oldest first.
pub async fn connections(nodes: &Nodes, via: usize, place: i64) -> Vec<Value> {
    list_of(
        nodes,
        via,
        &format!("/api/sim/connections?user_id={USER}&place_id={place}"),
        "connections",
    )
    .await
}

/// No connection of the pair was ever `replaced` (two live connections of one device), and
/// at most one is open now.
pub async fn assert_one_connection_at_a_time(nodes: &Nodes, via: usize, place: i64) {
    let conns = connections(nodes, via, place).await;
    assert!(!conns.is_empty(), "pair {place}: no connection recorded");
    let replaced: Vec<&Value> = conns.iter().filter(|c| c["reason"] == "replaced").collect();
    assert!(
        replaced.is_empty(),
        "pair {place}: a device had two live connections: {conns:?}"
    );
    let open = conns.iter().filter(|c| c["closed_at"].is_null()).count();
    assert!(
        open <= 1,
        "pair {place}: {open} connections open: {conns:?}"
    );
}

/// Inits `places` through random nodes and waits until every one is `ready`; their
/// statuses.
pub async fn link_all(nodes: &Nodes, dice: &mut Dice, places: &[i64]) -> HashMap<i64, Value> {
    for &p in places {
        init(nodes, dice.below(nodes.len()), p).await;
    }
    let n = nodes.len();
    let mut round = 0u64;
    until(Duration::from_secs(120), "every session ready", || {
        round += 1;
        async move {
            let all = statuses(nodes, places, || (round as usize) % n).await;
            let waiting: Vec<(&i64, &Value)> = all.iter().filter(|(_, s)| !is_ready(s)).collect();
            if waiting.is_empty() {
                Ok(all)
            } else {
                Err(format!(
                    "{} not ready, e.g. {:?}",
                    waiting.len(),
                    waiting.first()
                ))
            }
        }
    })
    .await
}

/// The pair's recorded events, oldest first, as `GET /api/whatsapp/events` replays them
/// from the table to a listener that says it saw nothing (`last_event_id=0`): `(event,
/// data)`. The stream stays open for live events, so the replay is taken as what arrives
/// before the stream falls quiet.
pub async fn replay(nodes: &Nodes, via: usize, place: i64) -> Vec<(String, Value)> {
    let mut res = nodes
        .open(
            via,
            &format!("/api/whatsapp/events?user_id={USER}&place_id={place}&last_event_id=0"),
        )
        .await;
    let mut raw = String::new();
    let mut wait = Duration::from_secs(20);
    while let Ok(chunk) = tokio::time::timeout(wait, res.chunk()).await {
        match chunk {
            Ok(Some(bytes)) => raw.push_str(&String::from_utf8_lossy(&bytes)),
            _ => break,
        }
        wait = Duration::from_secs(2);
    }
    raw.split("\n\n")
        .filter_map(|block| {
            let mut kind = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = Some(k.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((kind?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

/// The `session.status` values of a replay, in order.
pub fn status_history(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(k, _)| k == "session.status")
        .map(|(_, e)| e["data"]["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The pair's status as the node running it tells it, when one of `candidates` runs it with
/// a connected client (`ready` read from the database alone could be the dead owner's last
/// word); else what was seen, for the failure message.
pub async fn ready_on_owner(
    nodes: &Nodes,
    candidates: &[usize],
    place: i64,
) -> Result<Value, Value> {
    let mut seen = Vec::new();
    for &i in candidates {
        let st = status(nodes, i, place).await;
        if st["node_id"] == nodes.id(i) && is_ready(&st) && st["client_ready"] == true {
            return Ok(st);
        }
        seen.push(st);
    }
    Err(Value::Array(seen))
}

/// Waits until every pair is [`ready_on_owner`] on one of `candidates`; their statuses.
/// Every status seen on the way that shows a QR code is added to `qr_seen`.
pub async fn wait_ready_on(
    nodes: &Nodes,
    candidates: &[usize],
    places: &[i64],
    within: Duration,
    qr_seen: &std::sync::Mutex<Vec<String>>,
) -> HashMap<i64, Value> {
    until(within, "the sessions ready on the other nodes", || async {
        let asks = places
            .iter()
            .map(|&p| async move { (p, ready_on_owner(nodes, candidates, p).await) });
        let answers = futures::future::join_all(asks).await;
        let mut ready = HashMap::new();
        let mut waiting = Vec::new();
        for (p, answer) in answers {
            match answer {
                Ok(st) => {
                    ready.insert(p, st);
                }
                Err(seen) => {
                    for st in seen.as_array().into_iter().flatten() {
                        if st["status"] == "qr_ready" || !st["qr_code"].is_null() {
                            qr_seen.lock().unwrap().push(format!("{p}: {st}"));
                        }
                    }
                    waiting.push((p, seen));
                }
            }
        }
        if waiting.is_empty() {
            Ok(ready)
        } else {
            Err(format!(
                "{} waiting, e.g. {:?}",
                waiting.len(),
                waiting.first()
            ))
        }
    })
    .await
}
