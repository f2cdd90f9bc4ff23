//! A node cut off from the database (network gone, process alive): it stops its clients
//! within half a lease, before its leases run out, and only then does another node take its
//! numbers over: same session id, no new QR, never two live clients of one device.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::proxy::Proxy;
use testkit::{Running, poll};
use whatsapp_manager::{Application, Config};

const LEASE: Duration = Duration::from_secs(4);

fn node(dir: &tempfile::TempDir, url: &str, id: &str) -> Config {
    let mut c = testkit::api::test_config(dir);
    c.database_url = url.to_owned();
    c.cluster.node_id = Some(id.to_owned());
    c.cluster.lease = LEASE;
    c.sim.auto_scan = Some(Duration::from_millis(200));
    c
}

async fn status(client: &reqwest::Client, base: &str) -> Option<Value> {
    let r = client
        .get(format!("{base}/api/whatsapp/status?user_id=7&place_id=1"))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()
}

async fn owner(db: &sqlx::PgPool) -> Option<String> {
    sqlx::query_scalar(
        "SELECT owner FROM session_leases WHERE user_id = 7 AND place_id = 1 AND expires_at > \
         (extract(epoch from clock_timestamp()) * 1000)::bigint",
    )
    .fetch_optional(db)
    .await
    .expect("read the lease")
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_the_database_stops_its_clients_before_another_takes_them_over() {
    // TCP, which the proxy can cut; the shared test cluster listens on a socket only.
    let pg = testkit::pg::Cluster::start(testkit::pg::ClusterOptions {
        durable: false,
        ssl: false,
    });
    let db = pg.database().await;
    let direct = pg.tcp_url(&db, "disable");
    let parsed = url::Url::parse(&direct).expect("database URL");
    let target = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(target).await;
    let mut through_proxy = parsed.clone();
    through_proxy.set_port(Some(proxy.port)).expect("port");

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Application::build(node(&dir_a, through_proxy.as_str(), "a"))
        .await
        .expect("node a");
    let a_sessions = a.sessions();
    let a = Running::start(a);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r: Value = client
        .post(format!("{}/api/whatsapp/init", a.base))
        .json(&json!({"user_id": 7, "place_id": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session_id = r["data"]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    poll(Duration::from_secs(30), "ready on a", || async {
        let s = status(&client, &a.base).await;
        match &s {
            Some(s) if s["data"]["status"] == "ready" => Ok(()),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    let b = Running::start(
        Application::build(node(&dir_b, &direct, "b"))
            .await
            .expect("node b"),
    );
    let pool = sqlx::PgPool::connect(&direct).await.expect("connect");
    assert_eq!(owner(&pool).await.as_deref(), Some("a"));
    assert_eq!(a_sessions.live_count(), 1);

    proxy.cut();
    // Half a lease and a round later, a runs nothing, and its lease is still its own: the
    // device is never connected twice.
    poll(Duration::from_secs(10), "a stopping its client", || async {
        match a_sessions.live_count() {
            0 => Ok(()),
            n => Err(format!("{n} live")),
        }
    })
    .await;
    assert_eq!(
        owner(&pool).await.as_deref(),
        Some("a"),
        "a stopped its client only after its lease ran out"
    );
    poll(Duration::from_secs(20), "b running the session", || async {
        let holder = owner(&pool).await;
        let s = status(&client, &b.base).await;
        let ready = s.as_ref().is_some_and(|s| {
            s["data"]["status"] == "ready" && s["data"]["session_id"] == session_id.as_str()
        });
        if holder.as_deref() == Some("b") && ready {
            Ok(())
        } else {
            Err(format!("holder {holder:?}, status {s:?}"))
        }
    })
    .await;

    // The network comes back: a finds the session is b's and leaves it there.
    proxy.restore();
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(a_sessions.live_count(), 0, "a started the session again");
    assert_eq!(owner(&pool).await.as_deref(), Some("b"));
    drop(b);
    drop(a);
}
