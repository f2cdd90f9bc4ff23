//! The throwaway cluster's own checks: fresh databases, the named server, and no
//! postmaster or descriptor outliving the test process.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::postmaster::{DIR_PREFIX, START_WAIT, remove_stale};
use super::*;

#[tokio::test]
async fn two_calls_give_two_empty_databases_both_reachable() {
    let a = database().await;
    let b = database().await;
    assert_ne!(a.url, b.url);
    let pa = sqlx::PgPool::connect(&a.url).await.expect("connect a");
    let pb = sqlx::PgPool::connect(&b.url).await.expect("connect b");
    sqlx::query("CREATE TABLE only_in_a (x INT)")
        .execute(&pa)
        .await
        .expect("create in a");
    let seen: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pb)
            .await
            .expect("list b");
    assert!(seen.is_empty(), "b is not empty: {seen:?}");
    let (db,): (String,) = sqlx::query_as("SELECT current_database()::text")
        .fetch_one(&pa)
        .await
        .expect("name of a");
    assert!(a.url.contains(&format!("/{db}")), "{db} vs {}", a.url);
    pa.close().await;
    drop(a);
    // A released database is dropped by the next call, whatever connections it had.
    let _c = database().await;
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&db)
        .fetch_one(&pb)
        .await
        .expect("look for a");
    assert_eq!(left, 0, "{db} was not dropped");
}

/// Run by the test below with `WAM_TEST_POSTGRES` set: prints the database it got and
/// whether it started a cluster of its own.
#[tokio::test]
#[ignore = "run by a_named_server_is_used_instead_of_a_cluster in a process of its own"]
async fn database_of_a_child_process() {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "only as a child");
    let db = database().await;
    println!("URL={}", db.url);
    println!("CLUSTER={}", CLUSTER.get().is_some());
    // Kept, so the parent finds it.
    std::mem::forget(db);
}

#[tokio::test]
async fn a_named_server_is_used_instead_of_a_cluster() {
    // Our own cluster stands in for a shared server.
    let ours = database().await;
    let admin = with_database(&ours.url, "postgres");
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "pg::tests::database_of_a_child_process",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env(SERVER_ENV, &admin)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CLUSTER=false"), "{stdout}");
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("URL="))
        .expect("a URL");
    let child = url;
    assert_eq!(
        with_database(child, "postgres"),
        admin,
        "on the named server"
    );
    assert!(child.contains("/wam_t_"), "{child}");
    let conn = PgConnection::connect(child).await.expect("connect");
    conn.close().await.expect("close");
}

const CHILD_ENV: &str = "WAM_PG_CHILD";

/// Run by the test below in a process of its own; it starts a cluster and prints its
/// postmaster's pid.
#[tokio::test]
#[ignore = "run by the_cluster_ends_with_the_test_process in a process of its own"]
async fn cluster_of_a_child_process() {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "only as a child");
    // A descriptor without close-on-exec, as cargo's build lock is: the cluster must not
    // hold it (it would outlive the build as long as the cluster lives).
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let file = std::fs::File::open(marker.path()).expect("open marker");
    // SAFETY: dup of a descriptor we own; the copy is left open on purpose.
    let leaked = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&file)) };
    assert!(leaked > 2);
    let db = database().await;
    let _conn = PgConnection::connect(&db.url).await.expect("connect");
    let Some(Ok(cluster)) = CLUSTER.get() else {
        panic!("no throwaway cluster started");
    };
    let postmaster = cluster.postmaster_pid().expect("running");
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{postmaster}/fd"))
        .expect("the postmaster's descriptors")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect();
    assert!(
        !held.iter().any(|p| p == marker.path()),
        "the postmaster inherited {}",
        marker.path().display()
    );
    println!("POSTMASTER={postmaster}");
    println!("DIR={}", cluster.dir().display());
}

#[test]
fn the_cluster_ends_with_the_test_process() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "pg::tests::cluster_of_a_child_process",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env_remove(SERVER_ENV)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_string()
    };
    let postmaster: i32 = value("POSTMASTER=").parse().expect("pid");
    let dir = PathBuf::from(value("DIR="));
    let deadline = Instant::now() + START_WAIT;
    while alive(postmaster) {
        assert!(
            Instant::now() < deadline,
            "postmaster {postmaster} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The dead process's directory goes with the next start.
    remove_stale(dir.parent().expect("temp dir"));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn the_directory_of_a_dead_process_is_removed() {
    let mut gone = Command::new("true").spawn().expect("spawn true");
    gone.wait().expect("wait");
    let pid = gone.id() as i32;
    let temp = tempfile::tempdir().expect("temp");
    let stale = temp.path().join(format!("{DIR_PREFIX}{pid}"));
    // A private cluster of that dead process.
    let stale_own = temp.path().join(format!("{DIR_PREFIX}{pid}-3"));
    let live = temp
        .path()
        .join(format!("{DIR_PREFIX}{}", std::process::id()));
    let live_own = temp
        .path()
        .join(format!("{DIR_PREFIX}{}-0", std::process::id()));
    for dir in [&stale, &stale_own, &live, &live_own] {
        std::fs::create_dir_all(dir.join("data")).expect("dir");
    }
    remove_stale(temp.path());
    assert!(!stale.exists());
    assert!(!stale_own.exists());
    assert!(live.exists());
    assert!(live_own.exists());
}

#[test]
fn the_database_of_a_url_is_replaced_and_its_query_kept() {
    assert_eq!(
        with_database("postgres://u:p@h:5/postgres?sslmode=require", "x"),
        "postgres://u:p@h:5/x?sslmode=require"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    assert_eq!(
        with_database("postgresql:///postgres?host=/tmp/s", "x"),
        "postgresql:///x?host=/tmp/s"
    );
    assert_eq!(
        redact("postgres://u:secret@h/db?x=1"),
        "postgres://u:***@h/db?x=1"
    );
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
}
