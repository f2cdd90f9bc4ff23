//! A fresh, empty database of either backend for one test; gone (or queued for removal) when
//! the test drops it.

use crate::pg;

/// Which of the server's backends a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

impl TestBackend {
    /// A database nobody else uses, named by [`TestDb::url`].
    pub async fn database(self) -> TestDb {
        match self {
            Self::Sqlite => sqlite().await,
            Self::Postgres => postgres().await,
        }
    }
}

/// A database URL the server's `--database` accepts, and what keeps that database alive.
pub struct TestDb {
    pub url: String,
    _guard: Guard,
}

enum Guard {
    /// The directory of the SQLite file (and its `-wal`/`-shm`); removed on drop.
    Sqlite { _dir: tempfile::TempDir },
    /// Queues the PostgreSQL database for dropping on drop.
    Postgres { _release: pg::Release },
}

impl TestDb {
    pub(crate) fn postgres(url: String, release: pg::Release) -> Self {
        Self {
            url,
            _guard: Guard::Postgres { _release: release },
        }
    }
}

/// A SQLite file in a temporary directory of its own.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir for a SQLite database");
    let url = format!("sqlite://{}", dir.path().join("wam.db").display());
    TestDb {
        url,
        _guard: Guard::Sqlite { _dir: dir },
    }
}

/// A new database on the tests' PostgreSQL ([`pg::database`]); panics with the install hint
/// when there is none.
pub async fn postgres() -> TestDb {
    pg::database().await
}

/// Everything the database at `url` holds, as bytes a leaked secret would show up in: on
/// SQLite the file and its write-ahead log as they are on disk; on PostgreSQL every row of
/// every table of the schema as text, followed by the raw value of every `bytea` cell (whose
/// text form is hex, where a secret would hide).
pub async fn stored_bytes(url: &str) -> Vec<u8> {
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "postgres" || s == "postgresql" => postgres_bytes(url).await,
        _ => {
            let path = url
                .split_once("://")
                .map_or(url, |(_, p)| p)
                .split('?')
                .next()
                .unwrap_or_default();
            let mut out = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
            out.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            out
        }
    }
}

async fn postgres_bytes(url: &str) -> Vec<u8> {
    use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the schema's columns");
    let mut tables: Vec<&str> = columns.iter().map(|(t, _, _)| t.as_str()).collect();
    tables.dedup();
    let mut out = Vec::new();
    // The names come from the catalogue and are quoted as identifiers.
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    for table in tables {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT t::text FROM {} t",
            quote(table)
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
        for row in rows {
            out.extend(row.get::<String, _>(0).into_bytes());
            out.push(b'\n');
        }
    }
    for (table, column, _) in columns.iter().filter(|(_, _, ty)| ty == "bytea") {
        let cells: Vec<Option<Vec<u8>>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {} FROM {}",
            quote(column),
            quote(table)
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("read {table}.{column}: {e}"));
        for cell in cells.into_iter().flatten() {
            out.extend(cell);
            out.push(b'\n');
        }
    }
    let _ = conn.close().await;
    out
}
