//! A node leaving (SIGTERM) hands its sessions over at once; started again, it rejoins and
//! takes a share back at the rebalance rate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::helpers::{
    Dice, assert_one_connection_at_a_time, cluster, is_ready, link_all, node_list, one_at_a_time,
    sessions_of, statuses, until, wait_ready_on,
};

const SESSIONS: i64 = 30;
/// The promise for a handover on SIGTERM.
const HANDOVER: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_hands_over_at_once_and_takes_a_share_when_it_comes_back() {
    let _one = one_at_a_time().await;
    let mut nodes = cluster(3).await;
    let mut dice = Dice::new();
    let places: Vec<i64> = (1..=SESSIONS).collect();
    let linked = link_all(&nodes, &mut dice, &places).await;

    let x = dice.below(nodes.len());
    let x_id = nodes.id(x).to_string();
    let survivors: Vec<usize> = (0..nodes.len()).filter(|&i| i != x).collect();
    let moved: Vec<i64> = linked
        .iter()
        .filter(|(_, st)| st["node_id"] == x_id.as_str())
        .map(|(p, _)| *p)
        .collect();
    assert!(!moved.is_empty(), "node {x_id} runs nothing: {linked:?}");

    nodes.terminate(x);
    let asked = Instant::now();
    let seen_qr = std::sync::Mutex::new(Vec::<String>::new());
    let back = wait_ready_on(
        &nodes,
        &survivors,
        &moved,
        Duration::from_secs(90),
        &seen_qr,
    )
    .await;
    let took = asked.elapsed();
    let seen_qr = seen_qr.into_inner().unwrap();
    assert!(
        seen_qr.is_empty(),
        "a moved session showed a QR code: {seen_qr:?}"
    );
    assert!(
        took <= HANDOVER,
        "{} sessions took {took:?} to be ready elsewhere after SIGTERM",
        moved.len()
    );
    for p in &moved {
        assert_eq!(back[p]["session_id"], linked[p]["session_id"], "pair {p}");
    }
    assert_eq!(
        nodes.wait_exit(x, Duration::from_secs(30)).await,
        Some(0),
        "{}",
        nodes.logs(x)
    );

    // Back with the same flags: alive again, and it takes over some sessions.
    nodes.restart(x).await;
    let list = until(
        Duration::from_secs(60),
        "the restarted node running a share",
        || async {
            let list = node_list(&nodes, survivors[0]).await;
            let state = list
                .get(&x_id)
                .map(|n| n["state"].clone())
                .unwrap_or(Value::Null);
            if state == "alive" && sessions_of(&list, &x_id) > 0 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        },
    )
    .await;
    eprintln!("after the rejoin: {list:?}");

    // Still every session ready, each run by one node the list agrees with.
    until(
        Duration::from_secs(60),
        "every session ready once the share moved",
        || async {
            let all = statuses(&nodes, &places, || x).await;
            let mut per_node: HashMap<String, i64> = HashMap::new();
            for st in all.values().filter(|st| is_ready(st)) {
                *per_node
                    .entry(st["node_id"].as_str().unwrap_or("none").to_string())
                    .or_default() += 1;
            }
            let list = node_list(&nodes, x).await;
            let listed: HashMap<String, i64> = (0..nodes.len())
                .map(|i| (nodes.id(i).to_string(), sessions_of(&list, nodes.id(i))))
                .filter(|(_, n)| *n > 0)
                .collect();
            if per_node.values().sum::<i64>() == SESSIONS && per_node == listed {
                Ok(())
            } else {
                Err(format!("statuses {per_node:?}, list {listed:?}"))
            }
        },
    )
    .await;
    for &p in &places {
        assert_one_connection_at_a_time(&nodes, dice.below(nodes.len()), p).await;
    }
}
