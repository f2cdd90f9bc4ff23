//! Start-up refusals of a would-be node: a node id a live node holds elsewhere, and the
//! cluster flags on a SQLite database. Both end with exit code 2 and say why.

use std::time::Duration;

use testkit::cluster::{NodeOptions, Nodes, free_port};

use super::helpers::BIN;

fn serve(database: &str, data_dir: &std::path::Path, node_id: &str) -> Vec<String> {
    [
        "serve",
        "--engine",
        "sim",
        "--database",
        database,
        "--data-dir",
        &data_dir.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--node-id",
        node_id,
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[tokio::test]
async fn a_node_id_held_by_a_live_node_elsewhere_is_refused_naming_its_address() {
    let nodes = Nodes::start(BIN, 1, NodeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (code, logs) = Nodes::run_to_exit(
        BIN,
        &serve(&nodes.db.url, dir.path(), nodes.id(0)),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, Some(2), "{logs}");
    assert!(
        logs.contains(nodes.base(0)),
        "the holder's address is not named: {logs}"
    );
    assert!(!logs.contains("listening on"), "{logs}");
}

#[tokio::test]
async fn a_node_id_with_a_sqlite_database_is_refused_with_a_readable_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("wam.db").display());
    let (code, logs) = Nodes::run_to_exit(
        BIN,
        &serve(&db, &dir.path().join("data"), "a"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, Some(2), "{logs}");
    assert!(
        logs.contains("--node-id need a PostgreSQL database"),
        "{logs}"
    );
    assert!(!logs.contains("listening on"), "{logs}");
}
