//! A node lost (`kill -9`): its sessions are claimed by the others once its leases run out
//! and come back `ready` with their credentials from the database; what it was sending goes
//! out once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{
    Dice, LEASE_SECONDS, USER, assert_one_connection_at_a_time, cluster, link_all, list_of,
    node_list, one_at_a_time, replay, sessions_of, status, status_history, until, wait_ready_on,
};

const SESSIONS: i64 = 90;
const MESSAGES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_sessions_are_ready_on_the_others_without_a_qr_and_its_sends_go_out_under_their_ids()
 {
    let _one = one_at_a_time().await;
    let mut nodes = cluster(3).await;
    let mut dice = Dice::new();
    let places: Vec<i64> = (1..=SESSIONS).collect();
    let linked = link_all(&nodes, &mut dice, &places).await;

    // Each node runs about a third, by the status of each session and by the node list.
    let owner: HashMap<i64, String> = linked
        .iter()
        .map(|(p, st)| {
            let node = st["node_id"].as_str().unwrap_or_default().to_string();
            assert!(nodes.index_of(&node).is_some(), "pair {p}: {st}");
            (*p, node)
        })
        .collect();
    let mut per_node: BTreeMap<String, i64> = BTreeMap::new();
    for node in owner.values() {
        *per_node.entry(node.clone()).or_default() += 1;
    }
    for i in 0..nodes.len() {
        let n = per_node.get(nodes.id(i)).copied().unwrap_or(0);
        assert!(
            (20..=40).contains(&n),
            "node {} runs {n} of {SESSIONS}: {per_node:?}",
            nodes.id(i)
        );
    }
    until(Duration::from_secs(30), "the node list agrees", || async {
        let list = node_list(&nodes, 0).await;
        let listed: BTreeMap<String, i64> = per_node
            .keys()
            .map(|id| (id.clone(), sessions_of(&list, id)))
            .collect();
        if listed == per_node {
            Ok(())
        } else {
            Err(format!("listed {listed:?}, statuses say {per_node:?}"))
        }
    })
    .await;

    let x = dice.below(nodes.len());
    let x_id = nodes.id(x).to_string();
    let survivors: Vec<usize> = (0..nodes.len()).filter(|&i| i != x).collect();
    let mut moved: Vec<i64> = owner
        .iter()
        .filter(|(_, n)| **n == x_id)
        .map(|(p, _)| *p)
        .collect();
    moved.sort_unstable();

    // Messages for the victim's numbers, queued through random nodes just before it dies.
    let mut queued: Vec<(i64, i64)> = Vec::new();
    for k in 0..MESSAGES {
        let place = moved[k % moved.len()];
        let via = dice.below(nodes.len());
        let (s, v) = nodes
            .post(
                via,
                "/api/whatsapp/send-message",
                json!({"user_id": USER, "place_id": place,
                       "phone_number": format!("+96655{:07}", 1_000_000 + k), "text": format!("before the kill {k}")}),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::ACCEPTED,
            "send {k} through {}: {v}",
            nodes.id(via)
        );
        queued.push((place, v["data"]["id"].as_i64().expect("a message id")));
    }
    nodes.kill9(x);
    let killed = Instant::now();

    // Every one of its sessions ready on a survivor, same id, never a QR code on the way.
    let seen_qr = std::sync::Mutex::new(Vec::<String>::new());
    let back = wait_ready_on(
        &nodes,
        &survivors,
        &moved,
        Duration::from_secs(120),
        &seen_qr,
    )
    .await;
    let took = killed.elapsed();
    let seen_qr = seen_qr.into_inner().unwrap();
    assert!(
        seen_qr.is_empty(),
        "a moved session showed a QR code: {seen_qr:?}"
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 10),
        "the lost node's {} sessions took {took:?} to be ready again (lease {LEASE_SECONDS} s)",
        moved.len()
    );
    for p in &moved {
        assert_eq!(
            back[p]["session_id"], linked[p]["session_id"],
            "pair {p} came back as another session"
        );
    }

    // The recorded history of each moved session: no QR code after it was first linked.
    let (reader, nodes_ref) = (survivors[0], &nodes);
    let histories = futures::future::join_all(
        moved
            .iter()
            .map(|&p| async move { (p, replay(nodes_ref, reader, p).await) }),
    )
    .await;
    for (p, events) in &histories {
        let statuses = status_history(events);
        let linked_at = statuses.iter().position(|s| s == "ready");
        assert!(
            linked_at.is_some(),
            "pair {p}: no ready recorded: {statuses:?}"
        );
        let after = &statuses[linked_at.unwrap_or(0)..];
        assert!(
            !after.iter().any(|s| s == "qr_ready"),
            "pair {p} showed a QR code after it was linked: {statuses:?}"
        );
    }

    // Each message queued before the kill is sent. A send the kill cut off between WhatsApp
    // and our log (at most one per session: its sends go one by one) is sent again under the
    // same WhatsApp id, which WhatsApp's dedupe by id makes one message; every other goes once.
    let mut resent: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for &(place, id) in &queued {
        let via = survivors[dice.below(survivors.len())];
        let path = format!("/api/whatsapp/messages?user_id={USER}&place_id={place}&limit=1000");
        let m = until(
            Duration::from_secs(90),
            &format!("message {id} sent"),
            || async {
                let all = list_of(&nodes, via, &path, "messages").await;
                let m = all
                    .into_iter()
                    .find(|m| m["id"] == id)
                    .unwrap_or(Value::Null);
                if m["status"] == "sent" {
                    Ok(m)
                } else {
                    Err(m.to_string())
                }
            },
        )
        .await;
        let wa_id = m["whatsapp_message_id"]
            .as_str()
            .expect("a WhatsApp id")
            .to_string();
        let outbox = list_of(
            &nodes,
            via,
            &format!("/api/sim/outbox?user_id={USER}&place_id={place}"),
            "messages",
        )
        .await;
        let times = outbox.iter().filter(|o| o["id"] == wa_id.as_str()).count();
        assert!(
            (1..=2).contains(&times),
            "message {id} ({wa_id}) reached WhatsApp {times} times: {outbox:?}"
        );
        if times == 2 {
            resent.entry(place).or_default().push(id);
        }
    }
    for (place, ids) in &resent {
        assert_eq!(
            ids.len(),
            1,
            "pair {place}: more than the one send in flight at the kill went twice: {ids:?}"
        );
    }

    // The default groups were made again on each takeover's `ready`, never twice.
    for &p in &places {
        let via = survivors[dice.below(survivors.len())];
        let groups = list_of(
            &nodes,
            via,
            &format!("/api/whatsapp/groups?user_id={USER}&place_id={p}"),
            "groups",
        )
        .await;
        assert_eq!(groups.len(), 2, "pair {p}: {groups:?}");
    }

    // A fetch asked of one survivor, on a session the other runs, completes.
    let p = moved[dice.below(moved.len())];
    let runner = nodes
        .index_of(back[&p]["node_id"].as_str().unwrap_or_default())
        .expect("a survivor runs it");
    let other = survivors
        .iter()
        .copied()
        .find(|&i| i != runner)
        .expect("two survivors");
    let (s, v) = nodes
        .post(
            other,
            "/api/whatsapp/start-contact-fetch",
            json!({"user_id": USER, "place_id": p}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "fetch of {p} (run by {}) through {}: {v}",
        nodes.id(runner),
        nodes.id(other)
    );
    until(
        Duration::from_secs(60),
        "the fetch through a non-owner completed",
        || async {
            let st = status(&nodes, other, p).await;
            if st["contacts_fetch_completed"] == true {
                Ok(())
            } else {
                Err(st.to_string())
            }
        },
    )
    .await;

    // No device ever had two live connections.
    for &p in &places {
        assert_one_connection_at_a_time(&nodes, survivors[dice.below(survivors.len())], p).await;
    }

    // The survivors run everything, and the lost node is listed dead.
    until(
        Duration::from_secs(60),
        "the node list shows the loss",
        || async {
            let list = node_list(&nodes, survivors[0]).await;
            let state = list
                .get(&x_id)
                .map(|n| n["state"].clone())
                .unwrap_or(Value::Null);
            let running: i64 = survivors
                .iter()
                .map(|&i| sessions_of(&list, nodes.id(i)))
                .sum();
            if state == "dead" && sessions_of(&list, &x_id) == 0 && running == SESSIONS {
                Ok(())
            } else {
                Err(format!("{list:?}"))
            }
        },
    )
    .await;
}
