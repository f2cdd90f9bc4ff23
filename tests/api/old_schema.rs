//! Databases as earlier servers left them: their migrations, applied by hand, so an upgrade
//! test can write the rows those servers wrote and start today's server on them.

/// A copy of one backend's migrations up to version `last`.
fn migrations_until(backend: &str, last: u32) -> tempfile::TempDir {
    let old = tempfile::tempdir().unwrap();
    let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let version: u32 = name[..4].parse().unwrap();
        if version <= last {
            std::fs::copy(entry.path(), old.path().join(&name)).unwrap();
        }
    }
    old
}

/// A SQLite database at `path` with the migrations up to version `last`, and a pool on it.
pub async fn sqlite_until(path: &std::path::Path, last: u32) -> sqlx::SqlitePool {
    let old = migrations_until("sqlite", last);
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// A PostgreSQL database at `url` with the migrations up to version `last`, and a pool on it.
pub async fn postgres_until(url: &str, last: u32) -> sqlx::PgPool {
    let old = migrations_until("postgres", last);
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}
