//! A cluster of one's own: stopped and started again under its data, durable when asked,
//! TLS when asked, gone when dropped.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::*;

async fn one_value(url: &str, sql: &str) -> String {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let (value,): (String,) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .expect(sql);
    let _ = conn.close().await;
    value
}

#[tokio::test]
async fn a_stopped_cluster_refuses_and_started_again_has_the_same_data_and_port() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.database().await;
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("CREATE TABLE kept (x INT); INSERT INTO kept VALUES (7)")
        .execute(&mut conn)
        .await
        .expect("write");
    let first = cluster.postmaster_pid().expect("running");
    let (port, admin) = (cluster.port(), cluster.admin_url().to_string());

    cluster.stop();
    assert!(!alive(first), "postmaster {first} still runs after stop");
    assert_eq!(cluster.postmaster_pid(), None);
    // The open connection is cut and a new one refused.
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    assert!(PgConnection::connect(&db.url).await.is_err());
    cluster.stop();

    cluster.start_again();
    let again = cluster.postmaster_pid().expect("running again");
    assert_ne!(again, first);
    assert_eq!(
        (cluster.port(), cluster.admin_url()),
        (port, admin.as_str())
    );
    let kept = one_value(&db.url, "SELECT x::text FROM kept").await;
    assert_eq!(kept, "7");
}

#[tokio::test]
async fn a_durable_cluster_syncs_every_commit_and_a_fast_one_does_not() {
    let durable = Cluster::start(ClusterOptions {
        durable: true,
        ssl: false,
    });
    let fast = Cluster::start(ClusterOptions::default());
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let sql = format!("SHOW {setting}");
        assert_eq!(
            one_value(durable.admin_url(), &sql).await,
            "on",
            "{setting}"
        );
        assert_eq!(one_value(fast.admin_url(), &sql).await, "off", "{setting}");
    }
}

#[tokio::test]
async fn an_ssl_cluster_speaks_tls_over_tcp_and_a_plain_one_refuses_it() {
    let tls = Cluster::start(ClusterOptions {
        durable: false,
        ssl: true,
    });
    let db = tls.database().await;
    let url = tls.tcp_url(&db, "require");
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    let ssl = one_value(
        &url,
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, "true", "{url} is not encrypted");
    let same = one_value(&url, "SELECT current_database()::text").await;
    assert!(
        db.url.contains(&format!("/{same}?")),
        "{same} vs {}",
        db.url
    );

    let plain = Cluster::start(ClusterOptions::default());
    let db = plain.database().await;
    let refused = PgConnection::connect(&plain.tcp_url(&db, "require")).await;
    assert!(refused.is_err(), "TLS required of a server without it");
    let ssl = one_value(
        &plain.tcp_url(&db, "disable"),
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, "false");
}

#[tokio::test]
async fn a_dropped_cluster_is_stopped_and_its_directory_removed() {
    let cluster = Cluster::start(ClusterOptions::default());
    let pid = cluster.postmaster_pid().expect("running");
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("data").is_dir());
    let options: PgConnectOptions = cluster.admin_url().parse().expect("url");
    PgConnection::connect_with(&options)
        .await
        .expect("connect")
        .close()
        .await
        .expect("close");
    drop(cluster);
    assert!(!alive(pid), "postmaster {pid} outlived its cluster");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn the_database_a_url_names_is_found() {
    assert_eq!(
        database_name("postgres://u@h:5/wam_t_1_2?host=/tmp/x"),
        "wam_t_1_2"
    );
    assert_eq!(database_name("postgres://u@h/db"), "db");
    assert_eq!(database_name("postgres://u@h"), "");
}
