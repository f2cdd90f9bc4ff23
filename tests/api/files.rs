//! Files the server creates are its user's alone: the database with its `-wal` and `-shm`
//! (mode & 0o077 == 0). Everything else lives in the database: the data folder stays empty.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::messaging::pair_with_contacts;
use crate::messaging::{fast, sim_outbox};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private(p: &Path) {
    assert_eq!(mode(p) & 0o077, 0, "{} is {:o}", p.display(), mode(p));
}

/// `p` and everything under it.
fn tree(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        for entry in std::fs::read_dir(p).unwrap() {
            out.extend(tree(&entry.unwrap().path()));
        }
    }
    out
}

fn database(app: &TestApp) -> PathBuf {
    app.dir.path().join("wam.db")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[tokio::test]
async fn the_database_and_everything_under_the_data_dir_are_private() {
    let app = spawn_app_with(fast).await;
    // A linked session's credentials, a phone book, a fetch, and a sent message.
    let ids = pair_with_contacts(&app, 1, 2, 3).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[0], "text": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..400 {
        if !sim_outbox(&app, 1, 2).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !sim_outbox(&app, 1, 2).await.is_empty(),
        "the message went out"
    );

    let db = database(&app);
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_private(&file);
    }
    // The simulated phones' links, books and outboxes are in the database too.
    let data = app.config.data_dir.clone();
    let under: Vec<_> = tree(&data).into_iter().filter(|p| p.is_file()).collect();
    assert!(under.is_empty(), "the data folder holds files: {under:?}");
}

#[tokio::test]
async fn files_an_earlier_version_left_readable_are_tightened_at_start() {
    let mut app = spawn_app().await;
    app.ready_session(1, 2).await;
    app.stop().await;
    let db = database(&app);
    let loosen = |p: &Path, m: u32| {
        if p.exists() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
    };
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        loosen(&file, 0o644);
    }
    assert_eq!(mode(&db), 0o644);

    let app = app.restart_server().await;
    app.wait_status(1, 2, "ready").await;
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_private(&file);
    }
}

/// Files third-party code creates on its own are covered too: the binary runs with umask
/// 077. Read from the kernel's view of the running process.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_process_runs_with_a_private_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wam.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp-manager"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--engine", "sim", "--database"])
        .arg(format!("sqlite://{}", db.display()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("WAM_ENGINE")
        .env("WAM_API_KEY", "files-test-admin-key-2b7e41c9")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the server");
    // The database appears once `main` runs, after the umask is set.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !db.exists() && tokio::time::Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(db.exists(), "the server never created its database");
    let status = status.unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Umask line: {status}"));
    assert_eq!(umask, "0077");
}
