//! cluster: several sim-engine nodes on one PostgreSQL database, 1,000 sessions initialised
//! through them (each `init` sent to the nodes in turn, wherever the cluster then runs it);
//! one node killed with SIGKILL; the seconds until every session is `ready` again on the
//! nodes left, and the status route's throughput through a node for sessions another runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;

use crate::Opts;
use crate::backend::{Backend, Target};
use crate::density::{AUTO_SCAN, pair};
use crate::load;
use crate::report::Row;
use crate::server::{Api, ServerProcess};

/// Requests in flight while sessions are created and polled: enough to keep two cores busy.
const CONCURRENCY: usize = 64;
/// Linking 1,000 sessions on a loaded box, and waiting for them after the kill: generous,
/// since the number measured is printed either way.
const LINK_LIMIT: Duration = Duration::from_secs(300);
const TAKEOVER_LIMIT: Duration = Duration::from_secs(180);

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.cluster_sessions;
    let count = opts.cluster_nodes;
    ensure!(n > 0, "--cluster-sessions must be at least 1");
    ensure!(count >= 2, "--cluster-nodes must be at least 2");
    ensure!(
        target.backend == Backend::Postgres,
        "nodes share a PostgreSQL database; SQLite is a single node"
    );
    let lease = opts.cluster_lease_seconds;
    let dir = tempfile::tempdir()?;
    let database = target.fresh(dir.path(), "wam.db").await?;
    let ids: Vec<String> = (1..=count).map(|i| format!("node-{i}")).collect();
    let mut nodes = Vec::with_capacity(count);
    for id in &ids {
        let home = dir.path().join(id);
        std::fs::create_dir_all(&home)?;
        let mut args = AUTO_SCAN.to_vec();
        let lease = lease.to_string();
        args.extend(["--node-id", id, "--lease-seconds", &lease]);
        nodes.push(ServerProcess::serve_sim(&home, &database, &args)?);
    }
    let logs = |nodes: &[ServerProcess]| {
        nodes
            .iter()
            .zip(&ids)
            .map(|(s, id)| format!("--- {id}, last lines:\n{}", s.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let t = Instant::now();
    init_through(&nodes, n)
        .await
        .with_context(|| logs(&nodes))?;
    let owners = wait_ready(&nodes[0].api, n, None, LINK_LIMIT)
        .await
        .with_context(|| logs(&nodes))?;
    let link = t.elapsed();
    let mut share: BTreeMap<&str, u64> = ids.iter().map(|id| (id.as_str(), 0)).collect();
    for owner in owners.values() {
        *share.entry(owner.as_str()).or_default() += 1;
    }
    println!("cluster: {n} sessions ready on {count} nodes in {link:.1?}: {share:?}");

    // The node with the most sessions dies: the worst case of this run.
    let (dead_id, moved) = share
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, n)| (id.to_string(), *n))
        .context("no node")?;
    let dead = ids
        .iter()
        .position(|id| *id == dead_id)
        .context("no node")?;
    nodes.remove(dead).kill();
    let killed = Instant::now();
    let owners = wait_ready(&nodes[0].api, n, Some(&dead_id), TAKEOVER_LIMIT)
        .await
        .with_context(|| logs(&nodes))?;
    let back = killed.elapsed();
    println!(
        "cluster: {dead_id} killed, its {moved} sessions ready elsewhere after {:.1} s",
        back.as_secs_f64()
    );

    // Asked of a node that does not run them: each answer is for a session owned elsewhere.
    let asked = &nodes[0];
    let asked_id = &ids[if dead == 0 { 1 } else { 0 }];
    let paths: Vec<String> = owners
        .iter()
        .filter(|(_, owner)| *owner != asked_id)
        .map(|(i, _)| {
            let (u, p) = pair(*i);
            format!("/api/whatsapp/status?user_id={u}&place_id={p}")
        })
        .collect();
    ensure!(
        !paths.is_empty(),
        "{asked_id} runs every session: no status to ask it for another node's"
    );
    let r = load::run(
        asked.port,
        Arc::new(paths),
        opts.connections,
        Duration::from_secs(1),
        Duration::from_secs_f64(opts.cluster_api_seconds),
    )
    .await?;
    if r.errors > 0 {
        bail!(
            "{} of {} status requests did not answer 200",
            r.errors,
            r.requests
        );
    }
    for node in nodes {
        node.stop()?;
    }

    let mut row = Row::new("cluster", target);
    row.metric("nodes", count as f64, "")
        .metric("sessions", n as f64, "")
        .metric("lease_seconds", lease as f64, "s")
        .metric("link_seconds", link.as_secs_f64(), "s")
        .metric("sessions_on_killed_node", moved as f64, "")
        .metric("all_ready_after_kill_seconds", back.as_secs_f64(), "s")
        .metric("status_requests_per_second", r.per_second(), "/s")
        .metric("status_p50_ms", r.p50_ms, "ms")
        .metric("status_p99_ms", r.p99_ms, "ms")
        .target(
            "all_ready_after_kill_seconds",
            true,
            lease as f64 + 5.0,
            "s",
        )
        .note(format!(
            "each init sent to the {count} nodes in turn (the sim phone scans at once); the node \
             running the most sessions is then killed with SIGKILL, and the time runs until the \
             status of every session, asked of a node left, says ready on a live node: the \
             lease running out, the claim, the reconnect"
        ))
        .note(format!(
            "throughput: {} keep-alive connections to one node left, closed loop, each request \
             for a session another node runs",
            opts.connections
        ));
    Ok(row)
}

/// `init` of pairs `0..n`, the i-th sent to node `i % nodes`.
async fn init_through(nodes: &[ServerProcess], n: u64) -> anyhow::Result<()> {
    let apis: Vec<Api> = nodes.iter().map(|s| s.api.clone()).collect();
    let mut inits = futures::stream::iter(0..n)
        .map(|i| {
            let api = apis[i as usize % apis.len()].clone();
            async move {
                let (u, p) = pair(i);
                api.init(u, p).await.with_context(|| format!("init {i}"))
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = inits.next().await {
        r?;
    }
    Ok(())
}

/// Polls, through `api`, every session not yet `ready` on a live node (one other than
/// `dead`) until none is left; the node each one is ready on. Once a node is dead, a QR
/// code or an error ends the wait: a moved session must come back linked.
async fn wait_ready(
    api: &Api,
    n: u64,
    dead: Option<&str>,
    limit: Duration,
) -> anyhow::Result<BTreeMap<u64, String>> {
    let t = Instant::now();
    let mut owners = BTreeMap::new();
    let mut waiting: Vec<u64> = (0..n).collect();
    while !waiting.is_empty() {
        if t.elapsed() > limit {
            bail!(
                "{} of {n} sessions not ready after {limit:?}, the first: {}",
                waiting.len(),
                api.status(pair(waiting[0]).0, pair(waiting[0]).1).await?
            );
        }
        let checked: Vec<(u64, Option<String>)> = futures::stream::iter(waiting.iter().copied())
            .map(|i| async move {
                let (u, p) = pair(i);
                let body = api.status(u, p).await?;
                let st = &body["data"];
                let status = st["status"].as_str().unwrap_or_default();
                if dead.is_some() && matches!(status, "qr_ready" | "error" | "failed") {
                    bail!("session {i} came back {status}, not ready: {st}");
                }
                let Some(node) = st.get("node_id") else {
                    bail!("the status does not say which node runs the session: {st}");
                };
                // `null` while no live node runs it: the dead one's lease has not run out.
                Ok(match node.as_str() {
                    Some(node) if status == "ready" && Some(node) != dead => {
                        (i, Some(node.to_string()))
                    }
                    _ => (i, None),
                })
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        waiting.clear();
        for (i, owner) in checked {
            match owner {
                Some(node) => {
                    owners.insert(i, node);
                }
                None => waiting.push(i),
            }
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(owners)
}
