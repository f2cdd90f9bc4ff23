//! The event stream of any node carries the events of sessions on every node.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::helpers::{USER, cluster, init, one_at_a_time, status, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_of_one_node_carries_a_message_received_by_a_session_on_another() {
    let _one = one_at_a_time().await;
    let nodes = cluster(3).await;
    init(&nodes, 0, 7).await;
    let ready = until(Duration::from_secs(60), "the session ready", || async {
        let st = status(&nodes, 0, 7).await;
        if st["status"] == "ready" && st["node_id"].is_string() {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    })
    .await;
    let a = nodes
        .index_of(ready["node_id"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("run by a node of ours: {ready}"));
    let c = (a + 1) % nodes.len();

    let mut stream = nodes
        .open(c, &format!("/api/whatsapp/events?user_id={USER}"))
        .await;
    let (s, v) = nodes
        .post(
            a,
            "/api/sim/incoming",
            json!({"user_id": USER, "place_id": 7, "from": "+966501234567",
                   "text": "written to a number of node A"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let seen = testkit::read_until(&mut stream, "written to a number of node A").await;
    let event = seen
        .split("\n\n")
        .find(|block| block.contains("written to a number of node A"))
        .unwrap_or_default();
    assert!(event.contains("event: message.received"), "{seen}");
    assert!(event.contains("\"place_id\":7"), "{event}");
}
