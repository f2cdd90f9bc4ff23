//! What an earlier version kept under `--data-dir` moves into the database at start, on
//! either backend.

use crate::helpers::*;

/// A simulated link an earlier version kept in `<data-dir>/sim/sessions/<id>.json` moves
/// into the database at start: the session comes back `ready` without a new scan, and the
/// folder is renamed so it is imported once.
#[tokio::test]
async fn simulated_links_an_earlier_version_kept_in_files_are_imported() {
    use whatsapp_manager::domain::SessionId;
    let mut app = spawn_app().await;
    let linked = app.ready_session(1, 2).await;
    let id = SessionId::from_db(linked["session_id"].as_str().unwrap().to_owned());
    app.stop().await;
    // Put the link back where an earlier version kept it.
    let db = whatsapp_manager::store::open(&app.config.database_url, &Default::default())
        .await
        .unwrap();
    let device = db
        .sim_device(&id)
        .await
        .unwrap()
        .expect("linked in the database");
    assert!(db.forget_sim_device(&id).await.unwrap());
    db.close().await;
    let sessions = app.config.data_dir.join("sim/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(sessions.join(format!("{id}.json")), &device).unwrap();

    let app = app.restart_server().await;
    app.wait_status(1, 2, "ready").await;
    let st = app.status(1, 2).await;
    assert_eq!(st["session_id"], linked["session_id"], "{st}");
    assert!(!app.config.data_dir.join("sim").exists());
    assert!(app.config.data_dir.join("sim.imported/sessions").exists());
}
