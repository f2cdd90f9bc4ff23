//! A fetch that does not run to its end: it fails, the server stops, the connection drops, or
//! it waits for a slot when a restart comes; what is saved stays and the next fetch completes.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fetch::numbered_book;
use crate::helpers::*;

const ME: &str = "966500000001@s.whatsapp.net";

#[tokio::test]
async fn a_failed_fetch_ends_ready_with_the_error_and_a_rerun_clears_it() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    app.fault(1, 2, "fail_fetch").await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["status"], "ready");
    assert_eq!(p["contacts_fetch_completed"], false);
    assert!(
        p["contacts_fetch_error"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{p}"
    );
    assert_eq!(
        app.status(1, 2).await["contacts_fetch_error"],
        p["contacts_fetch_error"]
    );
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["contacts_fetch_completed"], true);
    assert_eq!(p["contacts_fetch_error"], json!(null));
}

#[tokio::test]
async fn a_fetch_cut_short_by_a_stop_is_completed_by_the_next_one() {
    let app = spawn_app_with(|c| c.sim.fetch_delay = Duration::from_millis(100)).await;
    app.set_phonebook(1, 2, ME, numbered_book(20_000, Some(1)))
        .await;
    app.ready_session(1, 2).await;
    app.start_fetch(1, 2).await;
    // Let a few batches land, then stop the server mid-fetch.
    app.wait_fetched(1, 2, 2_000).await;
    let mut app = app.restart_server().await;
    app.config.sim.fetch_delay = Duration::ZERO;
    let st = app.wait_status(1, 2, "ready").await;
    assert!(
        st["contacts_fetch_error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{st}"
    );
    let partial = st["total_contacts"].as_i64().unwrap();
    assert!(partial > 0 && partial < 20_000, "{st}");
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["contacts_fetch_completed"], true, "{p}");
    assert_eq!(p["total_contacts"], 20_000);
    let all = app.group_numbers(1, 2, ALL_GROUP).await;
    assert_eq!(all.len(), 20_000);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 20_000);
}

#[tokio::test]
async fn a_dropped_connection_mid_fetch_ends_the_fetch_with_an_error_not_a_stuck_status() {
    let app = spawn_app_with(|c| c.sim.fetch_delay = Duration::from_millis(300)).await;
    app.set_phonebook(1, 2, ME, numbered_book(10_000, Some(1)))
        .await;
    app.ready_session(1, 2).await;
    let mut stream = app.event_stream(1).await;
    app.start_fetch(1, 2).await;
    // Mid-read: a drop before the read began would only delay it until the reconnect.
    app.wait_fetched(1, 2, 1_000).await;
    app.fault(1, 2, "disconnect").await;
    let p = app.wait_fetch_end(1, 2).await;
    assert!(p["contacts_fetch_error"].is_string(), "{p}");
    app.wait_status(1, 2, "ready").await;
    // The fetch fails on the drop, so `ready` must not be told before `disconnected`: a
    // client starting a fetch on that `ready` would find no connection.
    let seen = read_until(&mut stream, "\"previous_status\":\"disconnected\"").await;
    let moves: Vec<(String, String)> = seen
        .split("\n\n")
        .filter(|e| e.contains("event: session.status"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data:")))
        .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap())
        .map(|v| {
            let status = |k: &str| v["data"][k].as_str().unwrap_or_default().to_owned();
            (status("previous_status"), status("status"))
        })
        .collect();
    let after_fetch = moves
        .iter()
        .find(|(from, _)| from == "fetching_contacts")
        .map(|(_, to)| to.as_str());
    assert_eq!(after_fetch, Some("disconnected"), "{seen}");
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["total_contacts"], 10_000, "{p}");
}

#[tokio::test]
async fn after_a_drop_as_a_fetch_starts_the_next_ready_can_fetch() {
    let app = spawn_app().await;
    app.set_phonebook(1, 2, ME, numbered_book(3_000, Some(1)))
        .await;
    app.ready_session(1, 2).await;
    // The drop lands before, during or after the read, each round as it falls; whichever,
    // the `ready` that follows the fetch's end has a connection a new fetch can use.
    for round in 0..8 {
        let (s, v) = app.start_fetch(1, 2).await;
        assert_eq!(s, StatusCode::OK, "round {round}: {v}");
        app.fault(1, 2, "disconnect").await;
        app.wait_fetch_end(1, 2).await;
        app.wait_status(1, 2, "ready").await;
        let p = app.fetch_and_wait(1, 2).await;
        assert_eq!(p["contacts_fetch_completed"], true, "round {round}: {p}");
        assert_eq!(p["total_contacts"], 3_000, "round {round}: {p}");
    }
}

#[tokio::test]
async fn a_queued_fetch_is_let_go_cleanly_by_a_restart() {
    let app = spawn_app_with(|c| c.max_concurrent_fetches = 1).await;
    app.ready_session(1, 1).await;
    app.ready_session(2, 1).await;
    app.fault(1, 1, "slow_fetch").await;
    app.start_fetch(1, 1).await;
    let (s, _) = app.start_fetch(2, 1).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .post(
            "/api/whatsapp/restart",
            json!({"user_id": 2, "place_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = app.wait_status(2, 1, "ready").await;
    assert!(
        st["contacts_fetch_error"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{st}"
    );
    // The slot it never got is not lost: the next fetch runs once the first ends.
    app.wait_fetch_end(1, 1).await;
    let done = app.fetch_and_wait(2, 1).await;
    assert_eq!(done["contacts_fetch_completed"], true, "{done}");
}
