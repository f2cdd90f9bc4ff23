//! A request one node forwards to the session's owner keeps its `X-Request-Id`: both
//! nodes' log lines of it carry the same id.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use testkit::cluster::ADMIN_KEY;

use crate::helpers::*;

#[tokio::test]
async fn a_forwarded_request_keeps_its_id_on_both_nodes() {
    let _one = one_at_a_time().await;
    let nodes = cluster(2).await;
    init(&nodes, 0, 1).await;
    let st = until(Duration::from_secs(60), "the session ready", || async {
        let st = status(&nodes, 0, 1).await;
        if is_ready(&st) {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    })
    .await;
    let owner = nodes
        .index_of(st["node_id"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("no owner in {st}"));
    let other = 1 - owner;

    // A scan with no QR code showing: the owner answers 400, at a level the nodes log.
    let id = "fwd-req-5d2c";
    let res = reqwest::Client::new()
        .post(format!("{}/api/sim/scan", nodes.base(other)))
        .header("x-api-key", ADMIN_KEY)
        .header("x-request-id", id)
        .json(&json!({"user_id": USER, "place_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["x-request-id"], id);

    for node in [owner, other] {
        until(
            Duration::from_secs(10),
            "the request's line in both logs",
            || async {
                let logs = nodes.logs(node);
                let seen = logs
                    .lines()
                    .any(|l| l.contains(&format!("request_id={id}")) && l.contains("answered 400"));
                if seen {
                    Ok(())
                } else {
                    Err(format!("node {}:\n{logs}", nodes.id(node)))
                }
            },
        )
        .await;
    }
}
